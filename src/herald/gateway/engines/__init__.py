"""Brokers and presence managers: the seams (broker.py), one node in memory, several nodes on Redis."""

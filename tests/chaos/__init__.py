"""Chaos tests: real Redis topologies broken on purpose while every message is counted.

They are the slowest tests (a failover takes seconds) and share nothing with the rest of the
suite, so they can run as a group of their own: ``python -m pytest tests/chaos``."""

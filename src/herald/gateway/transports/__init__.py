"""Adapters from bytes on a socket to the session core; the only package importing a web server library."""

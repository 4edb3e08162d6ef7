"""A Redis key prefix per test, removed afterwards, so tests sharing the machine's Redis never meet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

REDIS_URL = "redis://127.0.0.1:6379/0"


def delete_keys(url: str, pattern: str) -> int:
    """Delete every key matching the glob ``pattern``; how many there were.

    Keys are found with SCAN and deleted by name, never FLUSHDB: the machine's Redis is shared.
    """
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


@contextmanager
def redis_prefix(url: str = REDIS_URL) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted on exit."""
    prefix = f"herald-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        delete_keys(url, f"{prefix}.*")

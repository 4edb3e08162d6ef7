"""A Redis key prefix per test, removed afterwards, so tests sharing the machine's Redis never meet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@contextmanager
def redis_prefix() -> Iterator[str]:
    prefix = f"herald-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}.*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

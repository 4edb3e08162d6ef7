"""Which shard a channel lives on: Jump consistent hash of the channel's 64-bit FNV-1a hash.

The same choice as Centrifugo's sharded Redis engine (spec §9.2), so a channel keeps its shard
for as long as the list of shards is the same, and adding a shard at the end moves only about
1/N of the channels (Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm").
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

_FNV64_OFFSET: Final = 0xCBF29CE484222325
_FNV64_PRIME: Final = 0x100000001B3
_MASK64: Final = 0xFFFFFFFFFFFFFFFF
_JUMP_MULTIPLIER: Final = 2862933555777941757


def fnv1a_64(data: bytes) -> int:
    value = _FNV64_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV64_PRIME) & _MASK64
    return value


def jump_hash(key: int, buckets: int) -> int:
    """A bucket in ``[0, buckets)`` for a 64-bit key."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


@lru_cache(maxsize=65_536)
def shard_index(channel: str, shards: int) -> int:
    """The shard of ``channel`` among ``shards`` (cached: a hot channel is hashed once)."""
    return jump_hash(fnv1a_64(channel.encode()), shards)

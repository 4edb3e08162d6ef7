"""Fossil deltas (the format of Fossil SCM's ``delta.c``, which the SDKs decode; spec §2.2 ``delta``).

A delta is text: the target length as a base-64 integer and ``\\n``, then commands, each an
integer followed by an operator: ``N@O,`` copies N bytes from offset O of the source,
``N:`` inserts the N bytes that follow, ``C;`` ends with a checksum of the target. Integers
use the digits ``0-9A-Z_a-z~``, most significant first.

:func:`create` finds copies the way ``delta.c`` does: the source is cut into 16-byte blocks,
indexed by content; every position of the target is looked up, a hit is extended forwards and
backwards, and used when the copy command is shorter than the bytes it stands for. Extending a
match compares slices (C speed), so a target much like its source is mostly skipped over.
:func:`apply` is the decoder, for tests and tools; the SDKs bring their own.
"""

from __future__ import annotations

from typing import Final

NHASH: Final = 16
_CANDIDATES: Final = 4  # source blocks tried per target position (delta.c tries up to 250)
_DIGITS: Final = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_VALUES: Final = {c: i for i, c in enumerate(_DIGITS)}


class DeltaError(ValueError):
    """A delta that does not decode against its source."""


def _int(n: int) -> bytes:
    if n == 0:
        return b"0"
    out = bytearray()
    while n > 0:
        out.append(_DIGITS[n & 0x3F])
        n >>= 6
    out.reverse()
    return bytes(out)


def checksum(data: bytes) -> int:
    """delta.c's checksum: the sum of the data as big-endian 32-bit words, the tail zero-padded."""
    n = len(data)
    whole = n - n % 4
    total = sum(int.from_bytes(data[i : i + 4], "big") for i in range(0, whole, 4))
    if n % 4:
        total += int.from_bytes(data[whole:].ljust(4, b"\0"), "big")
    return total & 0xFFFFFFFF


def _forward(a: bytes, i: int, b: bytes, j: int) -> int:
    """Length of the common run of ``a[i:]`` and ``b[j:]``."""
    n = min(len(a) - i, len(b) - j)
    if n <= 0 or a[i] != b[j]:
        return 0
    if a[i : i + n] == b[j : j + n]:
        return n
    lo, hi = 1, n  # a[i:i+lo] matches, a[i:i+hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[i : i + mid] == b[j : j + mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _backward(a: bytes, i: int, b: bytes, j: int, limit: int) -> int:
    """Length (at most ``limit``) of the common run ending just before ``a[i]`` and ``b[j]``."""
    n = min(i, j, limit)
    if n <= 0 or a[i - 1] != b[j - 1]:
        return 0
    if a[i - n : i] == b[j - n : j]:
        return n
    lo, hi = 1, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[i - mid : i] == b[j - mid : j]:
            lo = mid
        else:
            hi = mid
    return lo


def create(source: bytes, target: bytes) -> bytes:
    """A delta that turns ``source`` into ``target``."""
    out = [_int(len(target)), b"\n"]
    base = 0
    n_target = len(target)
    if len(source) > NHASH:
        index: dict[bytes, list[int]] = {}
        for offset in range(0, len(source) - NHASH + 1, NHASH):
            found = index.setdefault(source[offset : offset + NHASH], [])
            if len(found) < _CANDIDATES:
                found.append(offset)
        pos = 0
        while pos + NHASH <= n_target:
            candidates = index.get(target[pos : pos + NHASH])
            if candidates is None:
                pos += 1
                continue
            best_count = best_source = best_start = 0
            for offset in candidates:
                back = _backward(source, offset, target, pos, pos - base)
                count = back + NHASH + _forward(source, offset + NHASH, target, pos + NHASH)
                if count > best_count:
                    best_count, best_source, best_start = count, offset - back, pos - back
            literal = best_start - base
            cost = len(_int(literal)) + len(_int(best_count)) + len(_int(best_source)) + 3
            if best_count < cost:
                pos += 1  # the copy command would be longer than the bytes it copies
                continue
            if literal:
                out += (_int(literal), b":", target[base:best_start])
            out += (_int(best_count), b"@", _int(best_source), b",")
            base = pos = best_start + best_count
    if base < n_target:
        out += (_int(n_target - base), b":", target[base:])
    out += (_int(checksum(target)), b";")
    return b"".join(out)


def apply(source: bytes, delta: bytes) -> bytes:
    """The target a delta describes; DeltaError when it is malformed or does not match."""
    pos = 0

    def read_int() -> int:
        nonlocal pos
        value = 0
        start = pos
        while pos < len(delta) and delta[pos] in _VALUES:
            value = (value << 6) + _VALUES[delta[pos]]
            pos += 1
        if pos == start:
            raise DeltaError("integer expected")
        return value

    def read_op() -> int:
        nonlocal pos
        if pos >= len(delta):
            raise DeltaError("unterminated delta")
        pos += 1
        return delta[pos - 1]

    size = read_int()
    if read_op() != ord("\n"):
        raise DeltaError("size not terminated by a newline")
    out = bytearray()
    while pos < len(delta):
        count = read_int()
        op = read_op()
        if op == ord("@"):
            offset = read_int()
            if read_op() != ord(","):
                raise DeltaError("copy not terminated by ','")
            if offset + count > len(source):
                raise DeltaError("copy past the end of the source")
            out += source[offset : offset + count]
        elif op == ord(":"):
            if pos + count > len(delta):
                raise DeltaError("insert past the end of the delta")
            out += delta[pos : pos + count]
            pos += count
        elif op == ord(";"):
            if len(out) != size:
                raise DeltaError("output size differs from the announced size")
            if count != checksum(bytes(out)):
                raise DeltaError("bad checksum")
            return bytes(out)
        else:
            raise DeltaError(f"unknown operator {chr(op)!r}")
        if len(out) > size:
            raise DeltaError("output larger than announced")
    raise DeltaError("unterminated delta")

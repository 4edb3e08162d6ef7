"""Pure recovery decisions (spec §6.3): was a stream recovered, and what to deliver after a reply.

Theory of operation: a recovering subscription is indexed in the hub *before* the stream is
read, and publications that arrive meanwhile are buffered on it. The subscribe reply carries
the publications read from history; afterwards the buffered ones are delivered, minus those
the client already has (offset at or before the reply's position), in offset order. A hole
between the position and the first buffered publication, or inside the buffer, means
something was lost: the subscription must be re-established (insufficient state).
"""

from __future__ import annotations

from collections.abc import Sequence

from herald.protocol import Publication


def is_stream_recovered(requested_offset: int, publications: Sequence[Publication], top_offset: int) -> bool:
    """Stream mode: history filled the gap from the client's offset to the stream top."""
    if not publications:
        return top_offset == requested_offset
    return publications[0].offset == requested_offset + 1 and publications[-1].offset == top_offset


def is_cache_recovered(latest: Publication | None, top_offset: int) -> bool:
    """Cache mode: only the latest publication matters, and it must be the stream top."""
    if latest is None:
        return top_offset == 0
    return latest.offset == top_offset


def merge_buffered(position: int, buffered: Sequence[Publication]) -> tuple[list[Publication], bool]:
    """Publications to deliver after a reply at stream ``position``, and whether they are gapless.

    Sorted by offset; duplicates and publications at or before ``position`` dropped. The second
    value is False when an offset is missing between ``position`` and the last buffered one.
    """
    by_offset: dict[int, Publication] = {}
    for pub in buffered:
        if pub.offset > position:
            by_offset.setdefault(pub.offset, pub)
    merged = [by_offset[offset] for offset in sorted(by_offset)]
    expected = position + 1
    for pub in merged:
        if pub.offset != expected:
            return merged, False
        expected += 1
    return merged, True

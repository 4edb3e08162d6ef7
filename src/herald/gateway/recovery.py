"""Pure recovery decisions (spec §6.3): was a stream recovered, and what to deliver after a reply.

Theory of operation: a recovering subscription is indexed in the hub *before* the stream is
read, and publications that arrive meanwhile are buffered on it. The subscribe reply carries
the publications read from history; afterwards the buffered ones are delivered, minus those
the client already has (offset at or before the reply's position), in offset order. A hole
between the position and the first buffered publication, or inside the buffer, means
something was lost: the subscription must be re-established (insufficient state).

Publications with offset 0 were published with ``skip_history`` (or to a channel without
history): they are not part of the stream, carry no position and are never "missing".

Nothing here does I/O or keeps state, so every rule is unit-tested on plain values.
"""

from __future__ import annotations

from collections.abc import Sequence

from herald.gateway.codecs.messages import Publication, StreamPosition


def is_stream_recovered(requested_offset: int, publications: Sequence[Publication], top_offset: int) -> bool:
    """Stream mode: history filled the gap from the client's offset to the stream top.

    ``publications`` were read forward from ``requested_offset`` with the recovery limit
    (spec §6.3 step 3), so more missed than the limit, or trimmed/expired data, is a miss.
    The caller has already compared epochs.
    """
    if not publications:
        return top_offset == requested_offset
    return publications[0].offset == requested_offset + 1 and publications[-1].offset == top_offset


def cache_recovery(
    latest: Publication | None, top: StreamPosition, requested: StreamPosition
) -> tuple[list[Publication], bool]:
    """Cache mode (spec §6.3): only the latest publication matters; it is the whole state.

    Recovered when the latest retained publication is the stream top (whatever the client had,
    it gets the current state), or when nothing is retained but the client already holds the
    top. The publication is returned unless the client already has exactly that position.
    """
    has_top = requested.offset > 0 and requested.offset == top.offset and requested.epoch == top.epoch
    if latest is None:
        return [], has_top
    if latest.offset != top.offset:
        return [], False
    return ([] if has_top else [latest]), True


def merge_buffered(position: int, buffered: Sequence[Publication]) -> tuple[list[Publication], bool]:
    """Publications to deliver after a reply at stream ``position``, and whether they are gapless.

    Stream publications are de-duplicated, those at or before ``position`` dropped, and the rest
    put in offset order; unstreamed ones (offset 0) keep their place. The second value is False
    when an offset is missing between ``position`` and the last buffered one (spec §6.3 step 4).
    """
    seen: set[int] = set()
    fresh: list[Publication] = []
    for pub in buffered:
        if pub.offset == 0:
            fresh.append(pub)
        elif pub.offset > position and pub.offset not in seen:
            seen.add(pub.offset)
            fresh.append(pub)
    slots = [i for i, pub in enumerate(fresh) if pub.offset]
    ordered = sorted((fresh[i] for i in slots), key=_offset)
    for i, pub in zip(slots, ordered, strict=True):
        fresh[i] = pub
    expected = position + 1
    for pub in ordered:
        if pub.offset != expected:
            return fresh, False
        expected += 1
    return fresh, True


def _offset(pub: Publication) -> int:
    return pub.offset

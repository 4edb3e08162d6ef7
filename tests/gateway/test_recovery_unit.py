"""The pure recovery rules of ``recovery.py`` (spec §6.3), on plain values."""

from __future__ import annotations

import pytest
from msgspec import Raw

from herald.gateway.codecs.messages import Publication, StreamPosition
from herald.gateway.recovery import cache_recovery, is_stream_recovered, merge_buffered


def pub(offset: int, n: int | None = None) -> Publication:
    return Publication(data=Raw(b'{"n":%d}' % (offset if n is None else n)), offset=offset)


def offsets(pubs: list[Publication]) -> list[int]:
    return [p.offset for p in pubs]


# --- stream mode


@pytest.mark.parametrize(
    ("requested", "history", "top", "recovered"),
    [
        (5, [], 5, True),  # nothing missed
        (4, [], 5, False),  # missed one, but history returned nothing (expired or removed)
        (5, [6, 7, 8], 8, True),  # exactly the gap
        (5, [7, 8], 8, False),  # the first missed one was trimmed
        (5, [6, 7], 8, False),  # the read stopped short of the top (recovery limit)
        (0, [1, 2], 2, True),  # from the very beginning
        (0, [3, 4], 4, False),  # from the beginning, but 1 and 2 are gone
    ],
)
def test_stream_recovered_only_when_history_fills_the_whole_gap(
    requested: int, history: list[int], top: int, recovered: bool
) -> None:
    assert is_stream_recovered(requested, [pub(o) for o in history], top) is recovered


def test_more_than_the_recovery_limit_is_not_recovered() -> None:
    # 301 missed, read with the 300 limit: the last one read is not the top.
    assert is_stream_recovered(0, [pub(o) for o in range(1, 301)], 301) is False
    # Exactly 300 missed fits.
    assert is_stream_recovered(1, [pub(o) for o in range(2, 302)], 301) is True


# --- cache mode


def test_cache_mode_returns_the_latest_publication_as_the_whole_state() -> None:
    latest = pub(9)
    top = StreamPosition(9, "abcd")
    assert cache_recovery(latest, top, StreamPosition(3, "abcd")) == ([latest], True)
    # Another epoch does not matter: the latest publication is the complete state.
    assert cache_recovery(latest, top, StreamPosition(3, "zzzz")) == ([latest], True)
    # The client already has exactly the top: recovered, nothing to send.
    assert cache_recovery(latest, top, StreamPosition(9, "abcd")) == ([], True)


def test_cache_mode_without_the_top_publication_is_not_recovered() -> None:
    top = StreamPosition(9, "abcd")
    assert cache_recovery(pub(8), top, StreamPosition(3, "abcd")) == ([], False)
    # Data expired: only a client that already has the top is recovered.
    assert cache_recovery(None, top, StreamPosition(9, "abcd")) == ([], True)
    assert cache_recovery(None, top, StreamPosition(8, "abcd")) == ([], False)
    assert cache_recovery(None, top, StreamPosition(9, "other")) == ([], False)
    # Empty stream, client with no position: nothing to recover from.
    assert cache_recovery(None, StreamPosition(0, "abcd"), StreamPosition(0, "")) == ([], False)


# --- publications buffered while subscribing


def test_merge_drops_what_the_reply_covered_and_sorts_by_offset() -> None:
    merged, gapless = merge_buffered(5, [pub(4), pub(5), pub(7), pub(6), pub(8)])
    assert offsets(merged) == [6, 7, 8] and gapless


def test_merge_removes_duplicates_keeping_the_first() -> None:
    first, again = pub(6, n=1), pub(6, n=2)
    merged, gapless = merge_buffered(5, [first, again, pub(7)])
    assert merged[0] is first and offsets(merged) == [6, 7] and gapless


@pytest.mark.parametrize(
    ("position", "buffered"),
    [
        (5, [7, 8]),  # the first one after the position is missing
        (5, [6, 8]),  # a hole inside the buffer
        (0, [2]),
    ],
)
def test_merge_reports_a_gap(position: int, buffered: list[int]) -> None:
    merged, gapless = merge_buffered(position, [pub(o) for o in buffered])
    assert not gapless
    assert offsets(merged) == sorted(o for o in buffered if o > position)


def test_merge_of_nothing_new_is_gapless() -> None:
    assert merge_buffered(5, []) == ([], True)
    assert merge_buffered(5, [pub(3), pub(5)]) == ([], True)


def test_unstreamed_publications_pass_through_in_arrival_order() -> None:
    a, b = pub(0, n=100), pub(0, n=200)
    merged, gapless = merge_buffered(5, [a, pub(7), pub(6), b])
    assert gapless
    assert merged == [a, pub(6), pub(7), b]
    # They never count as missing, even before the position.
    assert merge_buffered(5, [a]) == ([a], True)

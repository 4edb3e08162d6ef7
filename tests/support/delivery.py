"""Did a subscriber get what was published exactly once each, in order? One check for every test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any


def delivery_problems(seen: Sequence[int], expected: Iterable[int]) -> dict[str, Any]:
    """What keeps ``seen`` (sequence numbers in delivery order) from being ``expected`` exactly
    once each, in order; empty when nothing does.

    Keys, present only when non-empty: ``missing``, ``duplicates``, ``unexpected`` (never
    published, or not expected here), ``out_of_order`` (how many deliveries were not above
    the previous one).
    """
    want = list(expected)
    wanted = set(want)
    counts = Counter(seen)
    found: dict[str, Any] = {
        "missing": sorted(wanted - set(counts)),
        "duplicates": sorted(seq for seq, n in counts.items() if n > 1),
        "unexpected": sorted(set(counts) - wanted),
        "out_of_order": sum(1 for a, b in pairwise(seen) if b <= a),
    }
    problems = {key: value for key, value in found.items() if value}
    if not problems and list(seen) != want:  # e.g. ``expected`` itself was not ascending
        problems["order"] = {"seen": list(seen), "expected": want}
    return problems


def assert_exactly_once_in_order(seen: Sequence[int], expected: Iterable[int]) -> None:
    want = list(expected)
    problems = delivery_problems(seen, want)
    assert not problems, f"{problems}; seen {list(seen)}, expected {want}"

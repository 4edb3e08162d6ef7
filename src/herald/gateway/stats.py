"""Plain-number statistics the metrics endpoint reads at scrape time (``metrics.py``).

The delivery path and the engine seam only add to ints and floats here: no lock, no call into
the metrics library, nothing allocated per event. A histogram is a list of bucket counts; a
transport's traffic is two ints shared by all its connections.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Final

# Latency buckets (seconds, "le" bounds): an in-memory engine answers in microseconds, Redis in
# a millisecond or so, an API call that waits on a slow engine or a large batch in seconds.
BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Observations counted per bucket (the last one is +Inf) with their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds: "le"
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (upper bound, observations at or below it), +Inf last."""
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*(repr(b) for b in BUCKETS), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


class Timings:
    """One histogram per label value; callers pass labels from a fixed set (method names,
    engine operations), never a channel or a user."""

    __slots__ = ("by_label",)

    def __init__(self) -> None:
        self.by_label: dict[str, Histogram] = {}

    def observe(self, label: str, seconds: float) -> None:
        histogram = self.by_label.get(label)
        if histogram is None:
            histogram = self.by_label[label] = Histogram()
        histogram.observe(seconds)


class Traffic:
    """Messages and bytes one transport wrote to its sockets (wire bytes: framing included,
    after compression)."""

    __slots__ = ("bytes", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


@dataclass(slots=True)
class Counters:
    """Event counts read by the metrics endpoint; plain ints so hot paths stay cheap."""

    publications: int = 0
    connections: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # upgrade and connect refusals by reason
    disconnects: dict[int, int] = field(default_factory=dict)  # by close code
    api_requests: dict[str, int] = field(default_factory=dict)  # by method
    # Operators' metrics (docs/operations.md, "Metrics"): labels from fixed sets only.
    recoveries: dict[bool, int] = field(default_factory=dict)  # recovery outcomes: recovered or not
    slow: dict[str, int] = field(default_factory=dict)  # slow-client disconnects (3008) by transport
    api_latency: Timings = field(default_factory=Timings)  # server API calls by method
    traffic: dict[str, Traffic] = field(default_factory=dict)  # what each transport wrote

    @staticmethod
    def bump(counts: dict[Any, int], key: object) -> None:
        counts[key] = counts.get(key, 0) + 1

    def traffic_for(self, transport: str) -> Traffic:
        """The counts a connection of ``transport`` adds to (one object per transport)."""
        traffic = self.traffic.get(transport)
        if traffic is None:
            traffic = self.traffic[transport] = Traffic()
        return traffic

"""Prometheus metrics at ``GET /metrics`` (enabled with ``prometheus: true``).

Read at scrape time from the node's counters and hub, so nothing on the delivery path ever
touches the metrics library: hot paths add to plain ints (``stats.Counters``, ``stats.Traffic``) and
this collector turns them into metric families when Prometheus asks. Every label comes from a
fixed set (close codes, refusal reasons, API methods, engine operations, transport names):
never a channel or a user, so the number of series stays bounded whatever clients do.
Every metric is listed in docs/operations.md ("Metrics").
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from herald.gateway.engines.timed import TimedBroker
from herald.gateway.node import Node
from herald.gateway.stats import Timings


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node, hub, counters = self._node, self._node.hub, self._node.counters
        for name, value, doc in (
            ("herald_clients", hub.num_clients, "Connected clients on this node"),
            ("herald_users", hub.num_users, "Distinct users connected to this node"),
            ("herald_channels", hub.num_channels, "Channels with subscribers on this node"),
            ("herald_subscriptions", hub.num_subs, "Subscriptions on this node"),
            ("herald_nodes", len(node.nodes()), "Nodes this node knows in its cluster, itself included"),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily("herald_publications", "Publications accepted", value=counters.publications)
        yield CounterMetricFamily("herald_deliveries", "Publications queued to subscribers", value=hub.deliveries)
        yield CounterMetricFamily(
            "herald_connections", "Connections accepted (upgrades and streams)", value=counters.connections
        )
        refused = CounterMetricFamily(
            "herald_connections_refused",
            "Connections refused, at the upgrade (origin, rate, shutdown) or at connect (token, limits...)",
            labels=["reason"],
        )
        for reason, count in sorted(counters.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        disconnects = CounterMetricFamily("herald_disconnects", "Connections closed by the server", labels=["code"])
        for code, count in sorted(counters.disconnects.items()):
            disconnects.add_metric([str(code)], count)
        yield disconnects
        slow = CounterMetricFamily(
            "herald_slow_disconnects", "Clients disconnected for not reading fast enough (3008)", labels=["transport"]
        )
        for transport, count in sorted(counters.slow.items()):
            slow.add_metric([transport], count)
        yield slow
        requests = CounterMetricFamily("herald_api_requests", "Server API requests", labels=["method"])
        for method, count in sorted(counters.api_requests.items()):
            requests.add_metric([method], count)
        yield requests
        yield _histograms(
            "herald_api_request_duration_seconds", "Server API call latency", "method", counters.api_latency
        )
        if isinstance(node.broker, TimedBroker):
            yield _histograms(
                "herald_engine_duration_seconds",
                "Engine round trips (memory: the call itself; Redis: the network round trip)",
                "operation",
                node.broker.timings,
            )
        messages = CounterMetricFamily(
            "herald_messages_sent", "Messages written to client connections", labels=["transport"]
        )
        sent = CounterMetricFamily(
            "herald_bytes_sent", "Bytes written to client connections (framing included)", labels=["transport"]
        )
        for transport, traffic in sorted(counters.traffic.items()):
            messages.add_metric([transport], traffic.messages)
            sent.add_metric([transport], traffic.bytes)
        yield messages
        yield sent
        recoveries = CounterMetricFamily(
            "herald_recoveries", "Subscriptions that asked to recover, by outcome", labels=["recovered"]
        )
        for recovered in (True, False):
            recoveries.add_metric([str(recovered).lower()], counters.recoveries.get(recovered, 0))
        yield recoveries
        if node.proxy is not None:
            # kind: connect, refresh, subscribe, publish, sub_refresh, rpc; outcome: ok, failure, busy.
            calls = CounterMetricFamily(
                "herald_proxy_calls", "Calls to the application backend", labels=["kind", "outcome"]
            )
            for (kind, outcome), count in sorted(node.proxy.calls.items()):
                calls.add_metric([kind, outcome], count)
            yield calls
            yield GaugeMetricFamily("herald_proxy_in_flight", "Proxy calls in flight", value=node.proxy.in_flight)


def _histograms(name: str, doc: str, label: str, timings: Timings) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, histogram in sorted(timings.by_label.items()):
        family.add_metric([value], histogram.cumulative(), sum_value=histogram.sum)
    return family


class Metrics:
    def __init__(self, node: Node) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(_NodeCollector(node))
        # The usual process_* (CPU, memory, open files), python_gc_* and python_info series,
        # read at scrape time like the rest.
        ProcessCollector(registry=self._registry)
        GCCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

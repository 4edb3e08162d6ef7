"""Prometheus metrics at ``GET /metrics`` (enabled with ``prometheus: true``).

Read at scrape time from the node's counters and hub, so nothing on the delivery path ever
touches the metrics library.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from herald.gateway.node import Node


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
        yield CounterMetricFamily("herald_connections", "WebSocket upgrades accepted", value=counters.connections)
        refused = CounterMetricFamily("herald_connections_refused", "WebSocket upgrades refused", labels=["reason"])
        for reason, count in sorted(counters.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        disconnects = CounterMetricFamily("herald_disconnects", "Connections closed by the server", labels=["code"])
        for code, count in sorted(counters.disconnects.items()):
            disconnects.add_metric([str(code)], count)
        yield disconnects
        requests = CounterMetricFamily("herald_api_requests", "Server API requests", labels=["method"])
        for method, count in sorted(counters.api_requests.items()):
            requests.add_metric([method], count)
        yield requests
        if node.proxy is not None:
            # kind: connect, refresh, subscribe, publish, sub_refresh, rpc; outcome: ok, failure, busy.
            calls = CounterMetricFamily(
                "herald_proxy_calls", "Calls to the application backend", labels=["kind", "outcome"]
            )
            for (kind, outcome), count in sorted(node.proxy.calls.items()):
                calls.add_metric([kind, outcome], count)
            yield calls
            yield GaugeMetricFamily("herald_proxy_in_flight", "Proxy calls in flight", value=node.proxy.in_flight)


class Metrics:
    def __init__(self, node: Node) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(_NodeCollector(node))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

"""``GET /metrics`` in the Prometheus text format, when enabled."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.support.api import publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.tokens import token


def scrape(gw: GatewayProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"{gw.http_url}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_metrics_count_what_the_node_did() -> None:
    with running_gateway(base_config(prometheus=True)) as gw:
        clients = [await RawClient.open(gw.ws_url) for _ in range(3)]
        for c in clients:
            await c.connect(token())
            await c.subscribe("tenant_42")
        publish(gw.api_url, "tenant_42", {"n": 1})
        for c in clients:
            await c.push()
        await clients[0].send("not json")
        await clients[0].closed()
        samples = scrape(gw)
        assert samples["herald_clients"] == 2 and samples["herald_subscriptions"] == 2
        assert samples["herald_publications_total"] == 1 and samples["herald_deliveries_total"] == 3
        assert samples["herald_connections_total"] == 3
        assert samples['herald_disconnects_total{code="3501"}'] == 1
        assert samples['herald_api_requests_total{method="publish"}'] == 1
        for c in clients[1:]:
            await c.close()


def test_metrics_are_off_by_default(gateway: GatewayProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{gateway.http_url}/metrics", timeout=5)
    assert exc.value.code == 404
    exc.value.close()

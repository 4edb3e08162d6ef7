"""``/metrics`` moves by what the node did: a scripted scenario against a real gateway, run with
the memory engine and with Redis.

Each test scrapes, does one kind of thing (server API calls, deliveries over WebSocket, a
recovery that succeeds and one that cannot, refused connections, a slow client cut off),
scrapes again and checks that each metric moved by exactly (or, where the gateway's own
background work also counts, at least) the expected amount. The scrapes are parsed with
prometheus-client's own parser, so the exposition must be valid. Label values never name a
channel or a user: the last test looks at every series after the scenario.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.timing import seconds, wait_until
from tests.support.tokens import token

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ORIGIN = "https://app.example"
# Every channel and user the scenario uses: none may show up in a label value.
RUN = uuid.uuid4().hex[:8]
USERS = [f"metrics-user-{RUN}-{i}" for i in range(8)]
NAMESPACES = [
    {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
    {"name": "room", "presence": True, "allow_subscribe_for_client": True},
]
CHANNELS = {
    "api": f"critical:api-{RUN}",
    "feed": f"feed-{RUN}",
    "recover": f"critical:recover-{RUN}",
    "slow": f"slow-{RUN}",
    "room": f"room:lobby-{RUN}",
}
QUEUE_LIMIT = 128 * 1024


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    cfg = base_config(
        prometheus=True,
        namespaces=NAMESPACES,
        allowed_origins=[ORIGIN],
        client_queue_max_size=QUEUE_LIMIT,
        ping_interval="600s",  # no pings in the message counts
    )
    if request.param == "memory":
        with running_gateway(cfg) as gateway:
            yield gateway
    else:
        with (
            redis_prefix() as prefix,
            running_gateway({**cfg, "engine": "redis", "redis_address": REDIS_URL, "redis_prefix": prefix}) as gateway,
        ):
            yield gateway


def scrape(gw: GatewayProcess) -> Samples:
    with urllib.request.urlopen(f"{gw.http_url}/metrics", timeout=seconds(5)) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Delta:
    """Metric changes between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


def user_token(i: int, channels: list[str] | None = None) -> str:
    return token(user=USERS[i], channels=channels if channels is not None else list(CHANNELS.values()))


async def connected(gw: GatewayProcess, i: int, **open_kwargs: Any) -> RawClient:
    client = await RawClient.open(gw.ws_url, **open_kwargs)
    await client.connect(user_token(i))
    return client


def histogram_count(delta: Delta, name: str, label: str, value_: str) -> float:
    count = delta(f"{name}_count", **{label: value_})
    assert delta(f"{name}_bucket", le="+Inf", **{label: value_}) == count  # +Inf holds every observation
    return count


async def test_server_api_calls_are_counted_and_timed_by_method(gw: GatewayProcess) -> None:
    before = scrape(gw)
    for n in range(3):
        publish(gw.api_url, CHANNELS["api"], {"n": n})
    assert len(api(gw.api_url, "history", {"channel": CHANNELS["api"], "limit": 10})["result"]["publications"]) == 3
    delta = Delta(before, scrape(gw))
    assert delta("herald_api_requests_total", method="publish") == 3
    assert delta("herald_api_requests_total", method="history") == 1
    assert histogram_count(delta, "herald_api_request_duration_seconds", "method", "publish") == 3
    assert histogram_count(delta, "herald_api_request_duration_seconds", "method", "history") == 1
    assert delta("herald_api_request_duration_seconds_sum", method="publish") > 0
    assert delta("herald_publications_total") == 3
    # One engine round trip per publish; at least one history read (Redis may read the top too).
    assert histogram_count(delta, "herald_engine_duration_seconds", "operation", "publish") == 3
    assert histogram_count(delta, "herald_engine_duration_seconds", "operation", "history") >= 1


async def test_presence_and_subscribe_round_trips_are_timed(gw: GatewayProcess) -> None:
    client = await connected(gw, 0)
    before = scrape(gw)
    assert "subscribe" in await client.subscribe(CHANNELS["room"])
    api(gw.api_url, "presence", {"channel": CHANNELS["room"]})
    delta = Delta(before, scrape(gw))
    assert histogram_count(delta, "herald_engine_duration_seconds", "operation", "subscribe") == 1
    assert histogram_count(delta, "herald_engine_duration_seconds", "operation", "add_presence") == 1
    assert histogram_count(delta, "herald_engine_duration_seconds", "operation", "presence") == 1
    assert histogram_count(delta, "herald_api_request_duration_seconds", "method", "presence") == 1
    await client.close()


async def test_messages_and_bytes_sent_count_every_delivery(gw: GatewayProcess) -> None:
    n, pad = 20, "x" * 300
    client = await connected(gw, 1)
    assert "subscribe" in await client.subscribe(CHANNELS["feed"])
    before = scrape(gw)
    for seq in range(n):
        publish(gw.api_url, CHANNELS["feed"], {"seq": seq, "pad": pad})
    for seq in range(n):
        assert (await client.push())["pub"]["data"]["seq"] == seq
    delta = Delta(before, scrape(gw))
    assert delta("herald_messages_sent_total", transport="websocket") == n
    pushed = delta("herald_bytes_sent_total", transport="websocket")
    assert n * len(pad) < pushed < n * (len(pad) + 200), pushed  # payloads plus push and frame headers
    assert delta("herald_deliveries_total") == n
    await client.close()


async def test_recovery_outcomes_are_counted(gw: GatewayProcess) -> None:
    channel = CHANNELS["recover"]
    first = await connected(gw, 2)
    position = (await first.subscribe(channel))["subscribe"]
    await first.close()
    for n in range(2):
        publish(gw.api_url, channel, {"n": n})
    before = scrape(gw)
    back = await connected(gw, 2)
    reply = await back.subscribe(channel, recover=True, offset=position.get("offset", 0), epoch=position["epoch"])
    assert reply["subscribe"]["recovered"] is True and len(reply["subscribe"]["publications"]) == 2, reply
    lost = await connected(gw, 3)
    reply = (await lost.subscribe(channel, recover=True, offset=1, epoch="not-the-epoch"))["subscribe"]
    assert reply["was_recovering"] is True and "recovered" not in reply  # false: omitted on the wire
    fresh = await connected(gw, 4)
    assert "was_recovering" not in (await fresh.subscribe(channel))["subscribe"]  # no recovery asked: not counted
    delta = Delta(before, scrape(gw))
    assert delta("herald_recoveries_total", recovered="true") == 1
    assert delta("herald_recoveries_total", recovered="false") == 1
    for client in (back, lost, fresh):
        await client.close()


async def test_refused_connections_are_counted_by_reason(gw: GatewayProcess) -> None:
    before = scrape(gw)
    bad = await RawClient.open(gw.ws_url)
    await bad.send(json.dumps({"id": 1, "connect": {"token": "not-a-token"}}))
    assert await bad.closed() == (3500, "invalid token")
    late = await RawClient.open(gw.ws_url)
    await late.send(json.dumps({"id": 1, "connect": {"token": token(user=USERS[5], ttl=-60)}}))
    assert (await late.reply(1))["error"]["code"] == 109
    await late.close()
    with pytest.raises(InvalidStatus):
        await RawClient.open(gw.ws_url, origin="https://elsewhere.example")
    delta = Delta(before, scrape(gw))
    assert delta("herald_connections_refused_total", reason="invalid_token") == 1
    assert delta("herald_connections_refused_total", reason="token_expired") == 1
    assert delta("herald_connections_refused_total", reason="origin") == 1
    assert delta("herald_connections_total") == 2  # the two that were upgraded


async def test_a_slow_client_cut_off_is_counted(gw: GatewayProcess) -> None:
    # max_queue=1: the client library stops reading the socket after one unread frame.
    slow = await RawClient.open(gw.ws_url, max_queue=1)
    await slow.connect(user_token(6))
    await slow.subscribe(CHANNELS["slow"])
    before = scrape(gw)
    pad = "x" * 60_000

    def cut_off() -> bool:
        publish(gw.api_url, CHANNELS["slow"], {"pad": pad})
        return not api(gw.api_url, "channels", {})["result"]["channels"].get(CHANNELS["slow"])

    await wait_until(cut_off, "the slow client to be disconnected", within=20)
    assert await slow.closed(timeout=seconds(5)) == (3008, "slow")
    delta = Delta(before, scrape(gw))
    assert delta("herald_slow_disconnects_total", transport="websocket") == 1
    assert delta("herald_disconnects_total", code="3008") == 1
    assert delta("herald_bytes_sent_total", transport="websocket") > QUEUE_LIMIT  # what it was sent first


def test_process_and_runtime_collectors_are_there(gw: GatewayProcess) -> None:
    samples = scrape(gw)
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    assert any(name == "python_gc_collections_total" for name, _ in samples)
    assert any(name == "python_info" for name, _ in samples)


def test_no_label_names_a_channel_or_a_user(gw: GatewayProcess) -> None:
    """After the scenario (every test above used these channels and users)."""
    samples = scrape(gw)
    labels = {label for _, pairs in samples for label in pairs}
    assert not {name for name, _ in labels} & {"channel", "user", "client"}
    forbidden = [*USERS, *CHANNELS.values(), RUN]
    leaks = [(name, val) for name, val in labels if any(word in val for word in forbidden)]
    assert not leaks, leaks
    # Every herald label value comes from a small fixed set.
    transports = {val for name, val in labels if name == "transport"}
    assert transports <= {"websocket", "uni_websocket", "http_stream", "sse", "uni_sse", "uni_http_stream"}

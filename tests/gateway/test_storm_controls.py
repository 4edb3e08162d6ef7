"""Reconnect-storm controls (decisions §5): admission rate limit and a draining shutdown."""

from __future__ import annotations

import asyncio
import signal

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.gateway import base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.timing import seconds
from tests.support.tokens import token


async def test_admission_limit_answers_503_and_recovers() -> None:
    cfg = base_config(client_connection_rate_limit=5, client_connection_rate_burst=5)
    with running_gateway(cfg) as gw:
        accepted: list[RawClient] = []
        refused = 0
        for _ in range(15):
            try:
                accepted.append(await RawClient.open(gw.ws_url))
            except InvalidStatus as exc:
                assert exc.response.status_code == 503
                refused += 1
        assert refused >= 5 and 5 <= len(accepted) <= 10
        await asyncio.sleep(1.2)  # the bucket refills at 5 per second
        later = await RawClient.open(gw.ws_url)
        assert "connect" in await later.connect(token())
        for c in [*accepted, later]:
            await c.close()


async def test_shutdown_drains_connections_with_3001_over_the_window() -> None:
    with running_gateway(base_config(shutdown_drain_window="1s")) as gw:
        clients = [await RawClient.open(gw.ws_url) for _ in range(20)]
        for c in clients:
            await c.connect(token())
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()

        async def closed_at(c: RawClient) -> tuple[tuple[int, str], float]:
            outcome = await c.closed(timeout=seconds(10))
            return outcome, loop.time()

        results = await asyncio.gather(*(closed_at(c) for c in clients))
        assert {outcome for outcome, _ in results} == {(3001, "shutdown")}
        times = sorted(t for _, t in results)
        assert times[-1] - times[0] >= 0.5, "closes were not spread over the drain window"
        gw.proc.wait(timeout=seconds(15))
        assert gw.proc.returncode == 0


async def test_no_new_connections_while_draining() -> None:
    with running_gateway(base_config(shutdown_drain_window="2s")) as gw:
        holders = [await RawClient.open(gw.ws_url) for _ in range(5)]
        for c in holders:
            await c.connect(token())
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises((InvalidStatus, OSError)):
            await RawClient.open(gw.ws_url)
        for c in holders:
            await c.closed(timeout=seconds(10))

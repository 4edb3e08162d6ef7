"""Reconnect-storm controls (decisions §5): admission rate limit and a draining shutdown."""

from __future__ import annotations

import asyncio
import http.client
import math
import signal

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds, wait_until
from tests.support.tokens import token


async def admitted(gw: GatewayProcess) -> RawClient | None:
    """A new WebSocket, or None when the gateway refused the upgrade with 503."""
    try:
        return await RawClient.open(gw.ws_url)
    except InvalidStatus as exc:
        assert exc.response.status_code == 503, exc
        return None


async def test_admission_limit_answers_503_and_recovers() -> None:
    rate = burst = 5
    attempts = 30  # refusals are certain unless opening these takes longer than 5 s
    cfg = base_config(client_connection_rate_limit=rate, client_connection_rate_burst=burst)
    with running_gateway(cfg) as gw:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes = await asyncio.gather(*(admitted(gw) for _ in range(attempts)))
        elapsed = loop.time() - started
        accepted = [c for c in outcomes if c is not None]
        # The bucket starts full and refills at `rate` per second while the attempts are under
        # way: a slow machine gets more in, never fewer, and never more than this (the rest
        # were refused with 503, see admitted()).
        most = burst + math.floor(rate * elapsed)
        assert burst <= len(accepted) <= min(most, attempts - 1), f"{len(accepted)} accepted in {elapsed:.2f}s"
        later = await wait_until(lambda: admitted(gw), "the bucket to refill and admit a connection", interval=0.2)
        assert later is not None and "connect" in await later.connect(token())
        for c in [*accepted, later]:
            await c.close()


async def test_shutdown_drains_connections_with_3001_over_the_window() -> None:
    window = seconds(1)
    with running_gateway(base_config(shutdown_drain_window=duration(1))) as gw:
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
        assert times[-1] - times[0] >= window / 2, "closes were not spread over the drain window"
        gw.proc.wait(timeout=seconds(15))
        assert gw.proc.returncode == 0


async def test_no_new_connections_while_draining() -> None:
    with running_gateway(base_config(shutdown_drain_window=duration(2))) as gw:
        holders = [await RawClient.open(gw.ws_url) for _ in range(5)]
        for c in holders:
            await c.connect(token())
        # A keep-alive HTTP connection opened before the drain: once draining, the listening
        # socket is closed, so only a connection that is already open can still ask /health.
        health = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=seconds(5))

        def health_status() -> int:
            health.request("GET", "/health")
            response = health.getresponse()
            response.read()
            return response.status

        async def draining() -> bool:
            try:
                return await asyncio.to_thread(health_status) == 503
            except (OSError, http.client.HTTPException):  # the node is gone: not draining (any more)
                return False

        try:
            assert await asyncio.to_thread(health_status) == 200
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            await wait_until(draining, "/health to answer 503")
            with pytest.raises((InvalidStatus, OSError)):  # a 503, or refused by the closed listener
                await RawClient.open(gw.ws_url)
            assert await draining(), "the node stopped before the refused connection: not during the drain"
        finally:
            health.close()
        outcomes = await asyncio.gather(*(c.closed(timeout=seconds(10)) for c in holders))
        assert set(outcomes) == {(3001, "shutdown")}

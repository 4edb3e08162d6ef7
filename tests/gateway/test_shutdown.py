"""``shutdown_timeout`` bounds a graceful shutdown: what the drain has not closed by then is closed
at once, and the process exits."""

from __future__ import annotations

import asyncio
import http.client
import signal
import time

from tests.support.gateway import GatewayProcess, base_config
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds, wait_until_sync
from tests.support.tokens import token


def get_status(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


async def connected_clients(gw: GatewayProcess, count: int) -> list[RawClient]:
    clients = []
    for n in range(count):
        client = await RawClient.open(gw.ws_url)
        await client.connect(token(user=str(n)))
        clients.append(client)
    return clients


async def test_a_drain_cut_short_by_shutdown_timeout_closes_everyone_and_exits() -> None:
    # A drain window far longer than the timeout: spread over 60 s, the 20 closes would take
    # three seconds each; the timeout ends the drain after two.
    gw = GatewayProcess(base_config(shutdown_drain_window="60s", shutdown_timeout="2s"))
    try:
        gw.start()
        clients = await connected_clients(gw, 20)
        # A load balancer's probe connection, kept alive across the signal (the listener closes).
        probe = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=seconds(5))
        assert get_status(probe, "/ready") == 200
        assert gw.proc is not None
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(wait_until_sync, lambda: get_status(probe, "/ready") == 503, "/ready to answer 503")
        assert get_status(probe, "/health") == 503
        probe.close()
        codes = await asyncio.gather(*(c.closed(timeout=seconds(20)) for c in clients))
        assert codes == [(3001, "shutdown")] * 20
        exit_code = await asyncio.to_thread(gw.proc.wait, seconds(20))
        elapsed = time.monotonic() - started
        assert exit_code == 0
        assert elapsed < 30, f"exited after {elapsed:.1f}s: the 60 s drain window was not cut short"
        assert "shutdown_timeout reached with 19 connections still open" in gw.log()
    finally:
        gw.close()


async def test_a_drain_that_fits_inside_shutdown_timeout_is_not_cut() -> None:
    gw = GatewayProcess(base_config(shutdown_drain_window="1s", shutdown_timeout="30s"))
    try:
        gw.start()
        clients = await connected_clients(gw, 5)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.closed(timeout=seconds(20)) for c in clients))
        assert codes == [(3001, "shutdown")] * 5
        assert await asyncio.to_thread(gw.proc.wait, seconds(20)) == 0
        assert "shutdown_timeout reached" not in gw.log()
    finally:
        gw.close()


async def test_ready_answers_503_as_soon_as_a_drain_starts_while_clients_are_still_connected() -> None:
    # Readiness must flip at the start of the drain, not at its end: the load balancer has to
    # stop sending new clients while the node is still closing the ones it has.
    gw = GatewayProcess(base_config(shutdown_drain_window=duration(12), shutdown_timeout=duration(40)))
    try:
        gw.start()
        clients = await connected_clients(gw, 20)
        probe = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=seconds(5))
        assert get_status(probe, "/ready") == 200
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(wait_until_sync, lambda: get_status(probe, "/ready") == 503, "/ready to answer 503")
        probe.close()
        still_open = sum(c.ws.close_code is None for c in clients)
        assert still_open >= 15, f"only {still_open} of 20 clients were still connected when /ready said 503"
        codes = await asyncio.gather(*(c.closed(timeout=seconds(40)) for c in clients))
        assert codes == [(3001, "shutdown")] * 20
        assert await asyncio.to_thread(gw.proc.wait, seconds(40)) == 0
    finally:
        gw.close()

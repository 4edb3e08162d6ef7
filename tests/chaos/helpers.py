"""What the chaos tests share: configs for each topology and waits that keep the loop running."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.support.chaos import CRITICAL_NAMESPACE
from tests.support.gateway import GatewayProcess, base_config
from tests.support.timing import seconds


def redis_config(**topology: Any) -> dict[str, Any]:
    return base_config(engine="redis", namespaces=[CRITICAL_NAMESPACE], **topology)


def ready(node: GatewayProcess) -> int:
    try:
        with urllib.request.urlopen(f"{node.http_url}/ready", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    """Poll until ``predicate`` holds; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > seconds(timeout):
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)
    return loop.time() - start


@contextlib.asynccontextmanager
async def gateways(*configs: dict[str, Any]) -> AsyncIterator[list[GatewayProcess]]:
    """Gateway processes started off the loop: one that reaches Redis through a test's proxy
    needs the loop (the proxy's) running while it starts."""
    nodes = [GatewayProcess(config) for config in configs]
    try:
        for node in nodes:
            await asyncio.to_thread(node.start)
        yield nodes
    finally:
        for node in nodes:
            await asyncio.to_thread(node.close)


async def blocking(call: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking process operation (start, stop, a wait) off the loop the clients live on."""
    return await asyncio.to_thread(call, *args)

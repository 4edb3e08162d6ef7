"""A ``centrifuge-python`` client on an event loop of its own thread, for blocking tests.

Playwright's sync API takes the test's thread (its loop counts as running there), so an SDK
client beside a browser page runs here: calls are handed to its loop and waited for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from centrifuge import Client

from tests.support.pyclient import Event, Recorder, close_client
from tests.support.timing import seconds

T = TypeVar("T")


class ThreadedSdkClient:
    """Connects with ``token`` and subscribes to ``channels``; every event goes to ``recorder``."""

    def __init__(self, url: str, token: str, channels: list[str]) -> None:
        self._url = url
        self._token = token
        self._channels = channels
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sdk-client", daemon=True)
        self.recorder: Recorder | None = None
        self.client: Any = None

    def _run(self, coro: Coroutine[Any, Any, T], within: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(seconds(within) + 1)

    def start(self) -> ThreadedSdkClient:
        self._thread.start()
        self._run(self._connect())
        return self

    async def _connect(self) -> None:
        recorder = self.recorder = Recorder()
        client = self.client = Client(self._url, token=self._token, events=recorder.client_handler())
        await client.connect()
        for channel in self._channels:
            sub = client.new_subscription(channel, events=recorder.sub_handler(channel))
            await sub.subscribe()
            await recorder.wait_for("sub:subscribed", channel)

    def wait_for(
        self, kind: str, channel: str = "", where: Callable[[Any], bool] | None = None, within: float = 10.0
    ) -> Event:
        assert self.recorder is not None
        return self._run(self.recorder.wait_for(kind, channel, where, within=within), within)

    def close(self) -> None:
        try:
            if self.client is not None:
                self._run(close_client(self.client))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(seconds(5))
            self._loop.close()

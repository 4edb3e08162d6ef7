"""AsyncApiClient behind blocking methods, so one test body checks both clients."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from herald.aioapiclient import AsyncApiClient
from tests.support.timing import seconds


class BlockingAsyncClient:
    def __init__(self, api_url: str, api_key: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="async-client", daemon=True)
        self._thread.start()
        self.client = AsyncApiClient(api_url, api_key, **options)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(seconds(30))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        return call

    def close(self) -> None:
        try:
            self._run(self.client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(seconds(10))
            self._loop.close()

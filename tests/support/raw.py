"""A raw WebSocket client speaking the JSON protocol by hand, for edge cases the SDKs never produce."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.timing import seconds

T = TypeVar("T")


class RawClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self.pings = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._next_id = 0

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        kwargs.setdefault("max_size", None)
        return cls(await connect(url, **kwargs))

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def read_frame(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """One server frame, split into its messages; pushes and pings are also recorded."""
        frame = await asyncio.wait_for(self.ws.recv(), timeout or seconds(5))
        text = frame.decode() if isinstance(frame, bytes) else frame
        assert "\n\n" not in text and not text.endswith("\n"), f"blank line in frame {text!r}"
        messages = [json.loads(line) for line in text.split("\n")]
        for msg in messages:
            if "id" in msg:
                self._replies[msg["id"]] = msg
            elif "push" in msg:
                self.pushes.append(msg["push"])
            elif msg == {}:
                self.pings += 1
        return messages

    async def _read_until(self, found: Callable[[], T | None], timeout: float | None) -> T:
        """Read frames until ``found()`` gives something (``TimeoutError`` after ``timeout`` s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or seconds(5))
        while (value := found()) is None:
            await self.read_frame(max(0.01, deadline - loop.time()))
        return value

    async def reply(self, cmd_id: int, timeout: float | None = None) -> dict[str, Any]:
        return await self._read_until(lambda: self._replies.pop(cmd_id, None), timeout)

    async def command(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        cmd_id = self.next_id()
        await self.send(json.dumps({"id": cmd_id, method: params or {}}))
        return await self.reply(cmd_id)

    async def connect(self, token: str = "", **params: Any) -> dict[str, Any]:
        if token:
            params["token"] = token
        return await self.command("connect", params)

    async def subscribe(self, channel: str, **params: Any) -> dict[str, Any]:
        return await self.command("subscribe", {"channel": channel, **params})

    async def push(self, predicate: Any = None, timeout: float | None = None) -> dict[str, Any]:
        """The next recorded push matching ``predicate`` (consumed)."""

        def first() -> dict[str, Any] | None:
            for i, push in enumerate(self.pushes):
                if predicate is None or predicate(push):
                    return self.pushes.pop(i)
            return None

        return await self._read_until(first, timeout)

    async def closed(self, timeout: float | None = None) -> tuple[int, str]:
        """Read until the server closes; return its close code and reason."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or seconds(5))
        try:
            while True:
                await self.read_frame(max(0.01, deadline - loop.time()))
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, f"connection ended without a close frame: {exc!r}"
            return exc.rcvd.code, exc.rcvd.reason

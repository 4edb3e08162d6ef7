"""A blocking raw client of the JSON protocol, a bystander thread and a log watch.

For property-based tests: hypothesis runs each example as a plain function call, so a session
here runs from open to close in the calling thread, while the bystander (a subscriber that must
keep receiving whatever the others do) reads its socket in a thread of its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.api import publish
from tests.support.gateway import GatewayProcess
from tests.support.timing import seconds


@dataclass
class Outcome:
    """What the server answered to one session's frames (after the connect reply)."""

    replies: list[dict[str, Any]] = field(default_factory=list)
    pushes: list[dict[str, Any]] = field(default_factory=list)
    close: tuple[int, str] | None = None  # the server's close frame; None while it kept the connection
    connect_reply: dict[str, Any] | None = None


def _messages(frame: str | bytes) -> list[dict[str, Any]]:
    text = frame.decode() if isinstance(frame, bytes) else frame
    assert "\n\n" not in text and not text.endswith("\n"), f"blank line in frame {text!r}"
    return [json.loads(line) for line in text.split("\n")]


def session(
    url: str,
    frames: Sequence[bytes | str | Iterable[bytes]],
    *,
    token: str | None = None,
    binary: bool = False,
    replies: int = 0,
    pushes: int = 0,
    timeout: float = 5.0,
) -> Outcome:
    """Open a connection, send ``connect{token}`` first when a token is given, then ``frames``
    in order (bytes as text frames unless ``binary``; an iterable of chunks as one fragmented
    message). Read until the server closes, or until ``replies`` replies (and ``pushes``
    pushes) came and the connection is still open. Raises TimeoutError when neither happens in ``timeout`` units."""
    out = Outcome()
    deadline = time.monotonic() + seconds(timeout)
    with connect(url, max_size=None, open_timeout=seconds(timeout)) as ws:
        try:
            if token is not None:
                ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
                out.connect_reply = _messages(ws.recv(timeout=seconds(timeout)))[0]
                assert "connect" in out.connect_reply, out.connect_reply
            for frame in frames:
                if isinstance(frame, str):
                    ws.send(frame)
                elif isinstance(frame, bytes):
                    ws.send(frame, text=not binary)
                else:
                    ws.send(frame)  # chunks: a fragmented message
            while not replies or len(out.replies) < replies or len(out.pushes) < pushes:
                for msg in _messages(ws.recv(timeout=max(0.01, deadline - time.monotonic()))):
                    if "id" in msg:
                        out.replies.append(msg)
                    elif "push" in msg:
                        out.pushes.append(msg["push"])
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                out.close = (exc.rcvd.code, exc.rcvd.reason)
            else:
                out.close = (-1, f"no close frame: {exc!r}")
    return out


class Bystander:
    """A connected client subscribed to its own channel, reading in a thread: it must see every
    publication of a steady stream, in order, whatever other connections do."""

    def __init__(self, gw: GatewayProcess, token: str, channel: str) -> None:
        self._gw = gw
        self._token = token
        self.channel = channel
        self.received: list[int] = []
        self.close: tuple[int, str] | None = None
        self._sent = 0
        self._ws: ClientConnection | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def start(self) -> Bystander:
        self._thread.start()
        with self._changed:
            assert self._changed.wait_for(lambda: self._ws is not None or self.close, seconds(5)), "no subscribe"
        assert self.close is None, self.close
        return self

    def _run(self) -> None:
        try:
            with connect(self._gw.ws_url, max_size=None) as ws:
                connect_cmd = {"id": 1, "connect": {"token": self._token}}
                ws.send(json.dumps(connect_cmd) + "\n" + json.dumps({"id": 2, "subscribe": {"channel": self.channel}}))
                for frame in ws:
                    for msg in _messages(frame):
                        self._handle(ws, msg)
        except ConnectionClosed as exc:
            with self._changed:
                self.close = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (-1, repr(exc))
                self._changed.notify_all()
        except Exception as exc:  # reported by still_receives(), not lost in this thread
            with self._changed:
                self.close = (-2, repr(exc))
                self._changed.notify_all()
        with self._changed:
            self.close = self.close or (0, "closed by the test")
            self._changed.notify_all()

    def _handle(self, ws: ClientConnection, msg: dict[str, Any]) -> None:
        if msg == {}:
            ws.send("{}")  # the pong the connect reply asked for
        elif msg.get("id") == 2:
            assert "subscribe" in msg, msg
            with self._changed:
                self._ws = ws
                self._changed.notify_all()
        elif "pub" in msg.get("push", {}):
            with self._changed:
                self.received.append(msg["push"]["pub"]["data"]["seq"])
                self._changed.notify_all()

    def still_receives(self) -> None:
        """Publish the next number of the stream and wait for it: all of them, in order, once."""
        self._sent += 1
        publish(self._gw.api_url, self.channel, {"seq": self._sent})
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= self._sent or self.close, seconds(5))
        assert self.close is None, f"the bystander was disconnected: {self.close}"
        assert self.received == list(range(1, self._sent + 1)), self.received[-5:]

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
        self._thread.join(seconds(5))


class LogWatch:
    """The gateway log since the last look: no traceback, no ERROR line."""

    def __init__(self, gw: GatewayProcess) -> None:
        self._gw = gw
        self._seen = len(gw.log())

    def new_lines(self) -> str:
        text = self._gw.log()
        new, self._seen = text[self._seen :], len(text)
        return new

    def assert_clean(self) -> str:
        new = self.new_lines()
        assert "Traceback" not in new and " ERROR " not in new, new[-3000:]
        return new

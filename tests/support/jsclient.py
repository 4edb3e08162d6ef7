"""Drive the official npm ``centrifuge`` SDK from asyncio tests, through ``tests/js/driver.mjs``.

The driver is one Node process that runs any number of SDK clients. Commands go to it as JSON
lines on stdin; it answers with JSON lines on stdout: ``event`` lines for every client and
subscription event of the SDK, ``reply`` lines for commands that carry a ``req`` id, ``frame``
lines for traced WebSocket frames, ``fault`` lines for errors outside any command.

    async with JsDriver() as js:
        await js.call({"op": "client", "id": "c1", "url": gw.ws_url, "token": token, "connect": True})
        await js.call({"op": "subscribe", "client": "c1", "channel": "news"})
        ev = await js.wait_for(on("c1", "publication", channel="news"))

The process is always killed on exit; a missing ``node_modules`` or a dying driver fails with
a message that says what to do and shows the driver's stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.timing import seconds

JS_DIR = Path(__file__).resolve().parent.parent / "js"
DRIVER = JS_DIR / "driver.mjs"

Event = dict[str, Any]
Predicate = Callable[[Event], bool]
TokenFactory = Callable[[Event], str | None]

_MISSING = object()
_STDERR_LIMIT = 64 * 1024
_LINE_LIMIT = 16 * 1024 * 1024


class JsDriverError(RuntimeError):
    """The driver could not start, died, or broke its own protocol."""


class JsCommandError(JsDriverError):
    """A command answered ``ok: false``; ``code``/``message`` are the SDK's (or the driver's) error."""

    def __init__(self, op: str, error: Mapping[str, Any]) -> None:
        self.op = op
        self.code: int = int(error.get("code", 0))
        self.error_message: str = str(error.get("message", ""))
        super().__init__(f"{op} failed: code {self.code}: {self.error_message}")


def on(
    client: str | None = None,
    event: str | None = None,
    *,
    channel: Any = _MISSING,
    source: str | None = None,
    **ctx: Any,
) -> Predicate:
    """A predicate on event lines: every given field must match; ``ctx`` keys match ``ev["ctx"]``.

    ``channel=None`` matches only events without a channel (client-level ones such as
    ``connected``); leave it out to match any channel.
    """

    def match(ev: Event) -> bool:
        if client is not None and ev.get("client") != client:
            return False
        if event is not None and ev.get("event") != event:
            return False
        if source is not None and ev.get("source") != source:
            return False
        if channel is not _MISSING and ev.get("channel") != channel:
            return False
        got = ev.get("ctx") or {}
        return all(got.get(key, _MISSING) == value for key, value in ctx.items())

    fields = {"client": client, "event": event, "source": source}
    shown = [f"{k}={v!r}" for k, v in fields.items() if v is not None]
    if channel is not _MISSING:
        shown.append(f"channel={channel!r}")
    shown += [f"ctx.{k}={v!r}" for k, v in ctx.items()]
    match.__qualname__ = f"on({', '.join(shown)})"
    return match


def format_event(ev: Mapping[str, Any]) -> str:
    """One compact line per driver line, for failure messages."""
    kind = ev.get("kind")
    if kind == "event":
        where = ev["client"] + (f"[{ev['channel']}]" if ev.get("channel") else "")
        return f"{ev['t']:10.1f}ms {where} {ev['source']}.{ev['event']} {json.dumps(ev.get('ctx'), sort_keys=True)}"
    if kind == "frame":
        arrow = "->" if ev["dir"] == "out" else "<-"
        return f"{ev['t']:10.1f}ms {ev['client']} {arrow} {ev['data']}"
    return json.dumps(ev, sort_keys=True)


class JsDriver:
    """One ``node driver.mjs`` process; see the module docstring.

    Waiting methods take a ``timeout`` (default a few :func:`seconds`) rather than leaving it to
    the caller's cancel scope, because running out turns into an ``AssertionError`` that carries
    the driver's event log, its stderr and any attached diagnostics.
    """

    def __init__(self, *, node: str = "node", startup_timeout: float | None = None) -> None:
        self._node = node
        self._startup_timeout = seconds(15) if startup_timeout is None else startup_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr_reader: asyncio.Task[None] | None = None
        self._stderr = bytearray()
        self._changed = asyncio.Condition()
        self._replies: dict[int, asyncio.Future[Event]] = {}
        self._next_req = 0
        self._token_factories: dict[tuple[str, str | None], TokenFactory] = {}
        self._token_tasks: set[asyncio.Task[None]] = set()
        self._diagnostics: dict[str, Callable[[], str]] = {}
        self._exit_note = ""
        self.hello: Event = {}
        #: Every line received, in order.
        self.lines: list[Event] = []
        #: Only the ``event`` lines, in order.
        self.events: list[Event] = []
        #: Only the ``frame`` lines (clients created with ``"trace": true``).
        self.frames: list[Event] = []
        #: ``fault`` lines: a command without ``req`` failed, or an error escaped the SDK.
        self.faults: list[Event] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> JsDriver:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if shutil.which(self._node) is None:
            raise JsDriverError(f"{self._node!r} (Node.js) is not on PATH; the JS interop tests need Node.js 18+")
        if not (JS_DIR / "node_modules" / "centrifuge").is_dir() or not (JS_DIR / "node_modules" / "ws").is_dir():
            raise JsDriverError("tests/js/node_modules is missing: run `npm ci --prefix tests/js`")
        self._proc = await asyncio.create_subprocess_exec(
            self._node,
            # Node 20 has EventSource (the SDK's SSE transport) behind this flag.
            "--experimental-eventsource",
            "--no-warnings",
            str(DRIVER),
            cwd=str(JS_DIR),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        self._reader = asyncio.create_task(self._read_stdout())
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        try:
            self.hello = await self._wait_line(lambda line: line.get("kind") == "hello", self._startup_timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Ask the driver to disconnect every client and exit; kill it if it does not."""
        tasks = list(self._token_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._token_tasks.clear()
        proc = self._proc
        if proc is not None:
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    proc.stdin.close()  # the driver exits when stdin closes
            try:
                await asyncio.wait_for(proc.wait(), seconds(5))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for reader in (self._reader, self._stderr_reader):
            if reader is not None:
                with contextlib.suppress(TimeoutError):  # wait_for has then cancelled it
                    await asyncio.wait_for(reader, seconds(5))
        self._fail_pending("driver closed")

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")

    def add_diagnostics(self, name: str, source: Callable[[], str]) -> None:
        """Text appended to failure messages, e.g. ``js.add_diagnostics("gateway log", gw.log)``."""
        self._diagnostics[name] = source

    # -- commands ------------------------------------------------------------------------

    async def send(self, cmd: Mapping[str, Any]) -> None:
        """Write one command; do not wait for anything."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise JsDriverError(self._explain("the driver is not running"))
        try:
            proc.stdin.write(json.dumps(cmd, separators=(",", ":")).encode() + b"\n")
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise JsDriverError(self._explain(f"cannot write to the driver: {exc}")) from None

    async def request(self, cmd: Mapping[str, Any], timeout: float | None = None) -> Event:
        """Send a command with a fresh ``req`` id and return its reply line (``ok`` true or false)."""
        self._next_req += 1
        req = self._next_req
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._replies[req] = fut
        try:
            await self.send({**cmd, "req": req})
            async with asyncio.timeout(seconds(10) if timeout is None else timeout):
                return await fut
        except TimeoutError:
            raise AssertionError(self._explain(f"no reply to {dict(cmd)!r}")) from None
        finally:
            self._replies.pop(req, None)

    async def call(self, cmd: Mapping[str, Any], timeout: float | None = None) -> Any:
        """``request`` that returns the result, or raises :class:`JsCommandError`."""
        reply = await self.request(cmd, timeout)
        if not reply.get("ok"):
            raise JsCommandError(str(cmd.get("op")), reply.get("error") or {})
        return reply.get("result")

    def serve_tokens(self, client: str, factory: TokenFactory, *, channel: str | None = None) -> None:
        """Answer the client's (or one subscription's) ``getToken`` calls that wait for a token.

        ``factory`` gets the ``getToken`` event and returns the token (``None`` makes the SDK
        treat it as unauthorized). Meant for clients created with ``"tokens": []``, so every
        call waits and gets a freshly minted token, as from a real backend.
        """
        self._token_factories[(client, channel)] = factory

    # -- events --------------------------------------------------------------------------

    def mark(self) -> int:
        """Index of the next event: pass it as ``since`` to look only at later events."""
        return len(self.events)

    def select(self, predicate: Predicate, since: int = 0) -> list[Event]:
        return [ev for ev in self.events[since:] if predicate(ev)]

    async def wait_for(
        self,
        predicate: Predicate,
        timeout: float | None = None,
        *,
        since: int = 0,
    ) -> Event:
        """The first event at index ``since`` or later that matches; waits for it if needed."""
        found = await self.wait_for_count(predicate, 1, timeout, since=since)
        return found[0]

    async def wait_for_count(
        self,
        predicate: Predicate,
        count: int,
        timeout: float | None = None,
        *,
        since: int = 0,
    ) -> list[Event]:
        """The first ``count`` matching events at index ``since`` or later."""
        timeout = seconds(5) if timeout is None else timeout
        found: list[Event] = []
        index = since
        try:
            async with asyncio.timeout(timeout):
                while True:
                    while index < len(self.events):
                        ev = self.events[index]
                        index += 1
                        if predicate(ev):
                            found.append(ev)
                            if len(found) >= count:
                                return found
                    if self._proc is None or self._reader is None or self._reader.done():
                        raise JsDriverError(self._explain(f"driver exited while waiting for {_name(predicate)}"))
                    async with self._changed:
                        await self._changed.wait()
        except TimeoutError:
            got = f"{len(found)} of {count}" if count > 1 else "nothing"
            raise AssertionError(
                self._explain(f"waited {timeout:.1f}s for {_name(predicate)} (since event {since}), got {got}")
            ) from None

    def log(self, last: int | None = None) -> str:
        lines = self.lines if last is None else self.lines[-last:]
        return "\n".join(format_event(line) for line in lines)

    # -- internals -----------------------------------------------------------------------

    async def _wait_line(self, predicate: Predicate, limit: float) -> Event:
        index = 0
        try:
            async with asyncio.timeout(limit):
                while True:
                    while index < len(self.lines):
                        line = self.lines[index]
                        index += 1
                        if predicate(line):
                            return line
                    if self._reader is None or self._reader.done():
                        raise JsDriverError(self._explain("the driver exited during start-up"))
                    async with self._changed:
                        await self._changed.wait()
        except TimeoutError:
            raise JsDriverError(self._explain("the driver did not start")) from None

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while True:
                raw = await stdout.readline()
                if not raw:
                    break
                try:
                    line: Event = json.loads(raw)
                except ValueError:
                    line = {"kind": "noise", "text": raw.decode(errors="replace").rstrip()}
                self._dispatch(line)
                async with self._changed:
                    self._changed.notify_all()
        finally:
            rc = await self._proc.wait()
            self._exit_note = f"driver exited with status {rc}"
            self._fail_pending(self._exit_note)
            async with self._changed:
                self._changed.notify_all()

    def _dispatch(self, line: Event) -> None:
        self.lines.append(line)
        kind = line.get("kind")
        if kind == "event":
            self.events.append(line)
            if line.get("event") == "getToken" and (line.get("ctx") or {}).get("waiting"):
                self._answer_token(line)
        elif kind == "reply":
            fut = self._replies.get(line.get("req", -1))
            if fut is not None and not fut.done():
                fut.set_result(line)
        elif kind == "frame":
            self.frames.append(line)
        elif kind == "fault":
            self.faults.append(line)

    def _answer_token(self, ev: Event) -> None:
        channel = ev.get("channel") if ev.get("source") == "sub" else None
        factory = self._token_factories.get((ev["client"], channel))
        if factory is None:
            return
        task = asyncio.create_task(self._push_token(factory, ev, channel))
        self._token_tasks.add(task)
        task.add_done_callback(self._token_tasks.discard)

    async def _push_token(self, factory: TokenFactory, ev: Event, channel: str | None) -> None:
        try:
            token = factory(ev)
        except Exception as exc:
            # Recorded like a driver fault, so the failure message shows it; the SDK gets null.
            self.faults.append({"kind": "fault", "message": f"token factory failed: {exc!r}", "event": ev})
            token = None
        cmd: dict[str, Any] = {"op": "pushToken", "client": ev["client"], "token": token}
        if channel is not None:
            cmd["channel"] = channel
        await self.send(cmd)

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while chunk := await self._proc.stderr.read(4096):
            self._stderr += chunk
            if len(self._stderr) > _STDERR_LIMIT:
                del self._stderr[: len(self._stderr) - _STDERR_LIMIT]

    def _fail_pending(self, why: str) -> None:
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(JsDriverError(self._explain(why)))

    def _explain(self, what: str) -> str:
        parts = [what]
        if self._exit_note:
            parts.append(self._exit_note)
        if self.faults:
            parts.append("driver faults:\n" + "\n".join(json.dumps(f, sort_keys=True) for f in self.faults[-10:]))
        parts.append("last driver lines:\n" + (self.log(last=60) or "(none)"))
        if self._stderr:
            parts.append("driver stderr:\n" + self.stderr[-8000:])
        for name, source in self._diagnostics.items():
            try:
                text = source()
            except Exception as exc:
                text = f"(unavailable: {exc})"
            parts.append(f"{name}:\n{text[-8000:]}")
        return "\n\n".join(parts)


def _name(predicate: Predicate) -> str:
    return getattr(predicate, "__qualname__", repr(predicate))

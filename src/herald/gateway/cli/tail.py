"""``herald tail CHANNEL...``: follow channels as a client would, one JSON line per publication.

It speaks the JSON client protocol over aiohttp's WebSocket client (spec §1.3-§1.5, §2.1,
§2.2): centrifuge-python is a test dependency only, and this needs a small part of it. The
token is minted from the config's HMAC secret with the channels granted (decisions §1); in
``token_channels: "subscribe"`` mode the gateway subscribes the connection itself and the
positions travel in the connect command's ``subs`` instead (spec §6.3, last paragraph).

Nothing is printed twice and nothing is skipped silently across reconnects: the last offset
and epoch of each channel go into the resubscribe with ``recover: true``; recovered
publications are printed in order, and a recovery the gateway cannot make
(``recovered: false``: history expired, or a new epoch) is said on standard error (spec §6.3).
Reconnects back off with jitter; a terminal disconnect code (3500-3999, spec §5.3) ends the
command with exit status 1; SIGINT and SIGTERM end it cleanly with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from herald.apiresults import short_reason
from herald.gateway.cli.api import local_base_url
from herald.gateway.cli.common import CONFIG_HELP, SubParsers, fail, load, not_set, positive_seconds
from herald.gateway.config import Config
from herald.tokens import mint_connection_token

WebSocket = aiohttp.ClientWebSocketResponse
_FIRST_BACKOFF, _MAX_BACKOFF = 0.5, 10.0
_REPLY_TIMEOUT = 10.0
_PING_MARGIN = 10.0  # the SDKs' maxServerPingDelay (spec §1.5)
# Subscribe errors that a retry can fix: 100 internal (temporary), 111 too many requests (spec §5.1).
_RETRY_CODES = frozenset({100, 111})


class Stop(Exception):
    """Tailing cannot go on; the message says why."""


class Reconnect(Exception):
    """This connection is over; the next one recovers where it left off."""


@dataclass
class Tail:
    config: Config
    url: str
    user: str
    channels: list[str]
    ttl: int
    #: channel -> (offset, epoch) of the last publication printed, for channels that keep history.
    positions: dict[str, tuple[int, str]] = field(default_factory=dict)
    connections: int = 0  # connections that got as far as a connect reply
    _ids: int = 0
    _pong: bool = False  # whether the server wants pongs (the connect reply says, spec §1.5)
    # Replies that shared a frame with a command's reply and came after it (spec §1.3): handled
    # once that reply has been, so a publication never overtakes the subscribe result before it.
    _pending: list[dict[str, Any]] = field(default_factory=list)

    # -- the connection loop -------------------------------------------------------------

    async def run(self) -> None:
        backoff = _FIRST_BACKOFF
        timeout = aiohttp.ClientTimeout(sock_connect=_REPLY_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                before = self.connections
                try:
                    await self._session(session)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    if not self.connections:
                        raise Stop(f"cannot reach the gateway at {self.url}: {short_reason(exc)}") from None
                    _note(f"cannot reach the gateway at {self.url}: {short_reason(exc)}; retrying")
                except Reconnect as exc:
                    _note(f"{exc}; reconnecting")
                if self.connections > before:  # that connection worked: start the backoff over
                    backoff = _FIRST_BACKOFF
                await asyncio.sleep(random.uniform(backoff / 2, backoff))  # jitter: spec §5.3 advice
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _session(self, session: aiohttp.ClientSession) -> None:
        self._pending.clear()
        async with session.ws_connect(self.url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            server_side = self.config.token_channels == "subscribe"
            connect = await self._command(ws, "connect", self._connect_params(server_side))
            if "error" in connect:
                raise _connect_error(connect["error"])
            result = connect["connect"]
            self.connections += 1
            self._pong = bool(result.get("pong"))
            if server_side:
                for channel, sub in (result.get("subs") or {}).items():
                    self._subscribed(channel, sub)
            else:
                for channel in self.channels:
                    reply = await self._command(ws, "subscribe", self._subscribe_params(channel))
                    await self._subscribe_reply(channel, reply)
            _note(f"following {', '.join(self.channels)} at {self.url}")
            await self._read(ws, float(result.get("ping", 0)))

    async def _read(self, ws: WebSocket, ping: float) -> None:
        # Like the SDKs (spec §1.5): no ping within the interval plus a margin means a dead link.
        silence = ping + _PING_MARGIN if ping else None
        await self._drain(ws)
        while True:
            try:
                message = await ws.receive(timeout=silence)
            except TimeoutError:
                raise Reconnect(f"no ping from the gateway for {silence:g}s") from None
            if message.type != aiohttp.WSMsgType.TEXT:
                raise _closed(ws, message)
            for reply in _replies(message.data):
                await self._unprompted(ws, reply)

    async def _drain(self, ws: WebSocket) -> None:
        while self._pending:
            await self._unprompted(ws, self._pending.pop(0))

    async def _unprompted(self, ws: WebSocket, reply: dict[str, Any]) -> None:
        """A reply that answers no command: a server ping or a push."""
        if not reply:
            if self._pong:
                await ws.send_str("{}")
        elif "push" in reply:
            await self._push(ws, reply["push"])

    async def _command(self, ws: WebSocket, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one command and wait for its reply; pings and pushes that come first are handled on the way."""
        await self._drain(ws)
        self._ids += 1
        command_id = self._ids
        await ws.send_str(json.dumps({"id": command_id, method: params}, separators=(",", ":")))
        async with asyncio.timeout(_REPLY_TIMEOUT):
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise _closed(ws, message)
                replies = list(_replies(message.data))
                for i, reply in enumerate(replies):
                    if reply.get("id") == command_id:
                        self._pending.extend(replies[i + 1 :])
                        return reply
                    await self._unprompted(ws, reply)

    # -- commands ------------------------------------------------------------------------

    def _connect_params(self, server_side: bool) -> dict[str, Any]:
        # A fresh token for every connection: a reconnect after expiry (3005) just works.
        token = mint_connection_token(
            self.config.token_hmac_secret_key,
            self.user,
            channels=self.channels,
            ttl=self.ttl,
            audience=self.config.token_audience,
            issuer=self.config.token_issuer,
        )
        params: dict[str, Any] = {"token": token, "name": "herald-tail"}
        if server_side and self.positions:
            params["subs"] = {ch: self._recover_from(ch) for ch in self.positions}
        return params

    def _subscribe_params(self, channel: str) -> dict[str, Any]:
        return {"channel": channel, **(self._recover_from(channel) if channel in self.positions else {})}

    def _recover_from(self, channel: str) -> dict[str, Any]:
        offset, epoch = self.positions[channel]
        return {"recover": True, "offset": offset, "epoch": epoch}

    async def _subscribe_reply(self, channel: str, reply: dict[str, Any]) -> None:
        error = reply.get("error")
        if error is None:
            self._subscribed(channel, reply.get("subscribe") or {})
            return
        code, message = error.get("code"), error.get("message", "")
        if code in _RETRY_CODES or error.get("temporary"):
            raise Reconnect(f"subscribing to {channel} failed for now (error {code} {message})")
        hint = {
            102: " (no such namespace in the gateway's configuration)",
            103: " (the token grants it, so is token_channels or a channel_regex refusing it?)",
        }.get(code, "")
        raise Stop(f"cannot tail {channel}: error {code} {message}{hint}")

    def _subscribed(self, channel: str, result: dict[str, Any]) -> None:
        """A subscribe result (spec §2.2): remember the stream position, print what was recovered."""
        if result.get("was_recovering") and not result.get("recovered"):
            _note(
                f"{channel}: publications missed while disconnected could not be recovered "
                "(recovered: false; history expired or the stream was reset); continuing from now"
            )
        if result.get("recoverable") or result.get("positioned"):
            self.positions[channel] = (int(result.get("offset", 0)), str(result.get("epoch", "")))
        for pub in result.get("publications") or []:
            self._publication(channel, pub)

    async def _push(self, ws: WebSocket, push: dict[str, Any]) -> None:
        channel = push.get("channel", "")
        if "pub" in push:
            self._publication(channel, push["pub"])
        elif "subscribe" in push:  # a server-side subscription added live
            self._subscribed(channel, push["subscribe"])
        elif "unsubscribe" in push:
            code, reason = push["unsubscribe"].get("code"), push["unsubscribe"].get("reason", "")
            if isinstance(code, int) and code >= 2500:  # resubscribe codes (spec §5.2), e.g. insufficient state
                reply = await self._command(ws, "subscribe", self._subscribe_params(channel))
                await self._subscribe_reply(channel, reply)
            else:
                raise Stop(f"the gateway unsubscribed {channel}: {code} {reason}")

    def _publication(self, channel: str, pub: dict[str, Any]) -> None:
        offset = pub.get("offset")
        known = self.positions.get(channel)
        if isinstance(offset, int) and known is not None:
            if offset <= known[0]:
                return  # already printed (a recovery overlapping what arrived live)
            self.positions[channel] = (offset, known[1])
        line = json.dumps({"channel": channel, "offset": offset, "data": pub.get("data")}, separators=(",", ":"))
        print(line, flush=True)


def _replies(frame: str) -> Iterable[dict[str, Any]]:
    """One frame holds one or more replies, one per line (spec §1.3)."""
    for line in frame.split("\n"):
        if line.strip():
            reply = json.loads(line)
            if isinstance(reply, dict):
                yield reply


def _closed(ws: WebSocket, message: aiohttp.WSMessage) -> Exception:
    """What a close means (spec §5.3): 3500-3999 and 4500-4999 say do not reconnect."""
    code = ws.close_code
    if code is None and message.type == aiohttp.WSMsgType.CLOSE:
        code = message.data
    if code is None:
        return Reconnect("connection lost")
    text = f"{code} {message.extra}" if message.type == aiohttp.WSMsgType.CLOSE and message.extra else str(code)
    if 3500 <= code <= 3999 or 4500 <= code <= 4999:
        hint = " (is token_hmac_secret_key the gateway's?)" if code == 3500 else ""
        return Stop(f"the gateway closed the connection: {text}{hint}")
    return Reconnect(f"connection closed: {text}")


def _connect_error(error: dict[str, Any]) -> Exception:
    code, message = error.get("code"), error.get("message", "")
    if code == 109 or error.get("temporary"):  # token expired: the next connection mints a new one
        return Reconnect(f"connect refused for now (error {code} {message})")
    return Stop(f"the gateway refused the connection: error {code} {message}")


def _note(text: str) -> None:
    print(f"tail: {text}", file=sys.stderr, flush=True)


async def _until_signalled(tail: Tail) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await tail.run()
    except asyncio.CancelledError:
        _note("stopped")
        return 0
    except Stop as exc:
        return fail(str(exc))
    return 0  # run() only returns by an exception


def _tail(args: argparse.Namespace) -> int:
    config = load(args.config, warn=False)
    if config is None:
        return 1
    if not config.token_hmac_secret_key:
        why = " (tail signs its own connection token with it)"
        return not_set("token_hmac_secret_key", args.config, "HERALD_TOKEN_HMAC_SECRET_KEY", why)
    url = args.url or local_base_url(config, "ws") + config.websocket_handler_prefix
    if not url.startswith(("ws://", "wss://")):
        return fail(
            f"--url must be a ws:// or wss:// URL such as ws://127.0.0.1:8000/connection/websocket, got {url!r}"
        )
    tail = Tail(config, url, args.user, list(dict.fromkeys(args.channels)), args.ttl)
    try:
        return asyncio.run(_until_signalled(tail))
    except BrokenPipeError:  # the reader went away (| head): nothing left to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


def register(commands: SubParsers) -> None:
    tail = commands.add_parser("tail", help="follow channels as a client; one JSON line per publication")
    tail.add_argument("channels", metavar="CHANNEL", nargs="+", help="channels to follow")
    tail.add_argument("--config", help=CONFIG_HELP)
    tail.add_argument("--url", help="WebSocket URL (default: from the config's address, port and handler prefix)")
    tail.add_argument("--user", default="herald-tail", help="user id of the token (default herald-tail)")
    tail.add_argument(
        "--ttl", type=positive_seconds, default=3600, help="token lifetime in seconds; a new one at each reconnect"
    )
    tail.set_defaults(func=_tail)

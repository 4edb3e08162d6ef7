"""The emulation endpoint: commands of HTTP-streaming and SSE sessions (spec §1.8).

An emulation client receives on its stream and sends each command frame in a ``POST`` to the
emulation endpoint: ``{"session", "node", "data": "<commands frame as a JSON string>"}``
(``application/json``), or a Protobuf ``EmulationRequest`` whose ``data`` is the
length-prefixed Commands (``application/octet-stream``). The commands are fed to the session as
if they had come on a socket; replies go out on its stream.

The session lives on the node that holds its stream. A request that reaches another node
(behind a load balancer) is passed on to that node as a control message through the engine
(Redis), and answered 204 at once; a node nobody has heard of (restarted, or never existed) is
404, which makes the SDK close its stream and reconnect. A session unknown on its own node
(it ended) is 204: its stream has ended or is about to.

Answers: 204 delivered, 400 a body that is not an emulation request, 403 an ``Origin`` not in
``allowed_origins``, 404 unknown node, 405 not POST, 413 over
``emulation_max_request_body_size``, 503 while shutting down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import msgspec
from aiohttp import web

from herald.gateway.codecs.messages import ProtocolViolation
from herald.gateway.codecs.protobuf import decode_emulation_request
from herald.gateway.control import Control
from herald.gateway.engines.broker import EngineUnavailable
from herald.gateway.node import NODE_TTL, Node
from herald.gateway.session.client import Client
from herald.gateway.transports.streaming import StreamVariant, cors_headers

log = logging.getLogger(__name__)


class _JsonEmulationRequest(msgspec.Struct):
    session: str
    node: str
    data: str  # the commands frame, as the SDK's codec wrote it


_json_request: Final = msgspec.json.Decoder(_JsonEmulationRequest)


class EmulationSessions:
    """The emulation sessions of this node, by session id."""

    def __init__(self, node: Node, origin_allowed: Callable[[str | None], bool]) -> None:
        self.node = node
        self._origin_allowed = origin_allowed  # allowed_origins, as for the streams themselves
        self._sessions: dict[str, Client] = {}
        node.control_handlers["emulation"] = self._from_other_node

    def add(self, client: Client) -> None:
        self._sessions[client.session] = client

    def remove(self, client: Client) -> None:
        if self._sessions.get(client.session) is client:
            del self._sessions[client.session]

    def deliver(self, session: str, data: bytes) -> None:
        client = self._sessions.get(session)
        if client is not None and not client.closed:
            client.feed(data)

    def _from_other_node(self, control: Control) -> None:
        # Only the target node gets here (node.py drops controls targeted elsewhere).
        self.deliver(control.session, control.data)

    def node_known(self, uid: str) -> bool:
        peer = self.node.peers.get(uid)
        return peer is not None and time.monotonic() - peer[1] <= NODE_TTL

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST <emulation_handler_prefix>``."""
        node = self.node
        origin = request.headers.get("Origin")
        if not self._origin_allowed(origin):
            return web.Response(status=403, text="origin not allowed")
        cors = cors_headers(origin)
        if request.method == "OPTIONS":  # a browser's CORS preflight
            headers = {
                **cors,
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
            }
            return web.Response(status=204, headers=headers)
        if request.method != "POST":
            return web.Response(status=405, text="use POST", headers=cors)
        if node.shutting_down:
            return web.Response(status=503, text="shutting down", headers=cors)
        limit = node.config.emulation_max_request_body_size
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413, text="request body too large", headers=cors)
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return web.Response(status=413, text="request body too large", headers=cors)
        try:
            if request.content_type == "application/octet-stream":
                target, session, data = decode_emulation_request(body)
            else:
                parsed = _json_request.decode(body)
                target, session, data = parsed.node, parsed.session, parsed.data.encode()
        except (msgspec.DecodeError, msgspec.ValidationError, ProtocolViolation, RecursionError):
            return web.Response(status=400, text="not an emulation request", headers=cors)
        if not session or not data:
            return web.Response(status=400, text="session and data are required", headers=cors)
        if target == node.uid:
            self.deliver(session, data)
        elif self.node_known(target):
            message = Control(op="emulation", node=node.uid, target=target, session=session, data=data)
            try:
                await node.broker.publish_control(msgspec.json.encode(message))
            except EngineUnavailable as exc:
                log.warning("emulation command for node %s not passed on: %s", target, exc)
                return web.Response(status=503, text="engine unavailable", headers=cors)
        else:
            return web.Response(status=404, text="unknown node", headers=cors)
        return web.Response(status=204, headers=cors)


class EmulationVariant(StreamVariant):
    """A bidirectional stream (HTTP streaming, SSE) whose commands come through the endpoint above."""

    def __init__(self, sessions: EmulationSessions) -> None:
        self.sessions = sessions

    def opened(self, client: Client) -> None:
        self.sessions.add(client)

    def closed(self, client: Client) -> None:
        self.sessions.remove(client)

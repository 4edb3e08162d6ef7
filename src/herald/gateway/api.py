"""Server API methods (spec §8.2), independent of HTTP.

``ServerAPI.call(method, body)`` decodes the method's parameters, runs it against the node and
returns the result object; method errors are :class:`ReplyError` with the API's codes. The HTTP
conventions (auth, 400/401/404/405, error modes, legacy ``/api``) live in ``transports/http.py``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from msgspec import Raw, Struct

from herald import errors
from herald.errors import ReplyError
from herald.gateway import access
from herald.gateway.codecs.json import clean_raw
from herald.gateway.codecs.messages import (
    EMPTY_RAW,
    HistoryResult,
    PresenceResult,
    PresenceStatsResult,
    StreamPosition,
    is_empty_raw,
)
from herald.gateway.connections import ConnectionsResult, ConnectionsSurvey
from herald.gateway.control import Control, NodeStats, ServerSubscribe
from herald.gateway.engines.broker import EngineUnavailable, HistoryFilter
from herald.gateway.node import Node, reply_error_for_api

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """The body is not valid JSON of the method's shape: HTTP 400."""


class MethodNotFound(Exception):
    """No such API method: HTTP 404 on ``/api/<method>``, error 104 in legacy ``/api``."""


# --- requests


class PublishRequest(Struct):
    channel: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False


class BroadcastRequest(Struct):
    channels: list[str] = []
    data: Raw = EMPTY_RAW
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False


class SubscribeRequest(Struct):
    user: str = ""
    channel: str = ""
    expire_at: int = 0
    info: Raw = EMPTY_RAW
    b64info: str = ""
    client: str = ""
    session: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""
    recover_since: StreamPosition | None = None


class UnsubscribeRequest(Struct):
    user: str = ""
    channel: str = ""
    client: str = ""
    session: str = ""


class DisconnectSpec(Struct):
    code: int = 0
    reason: str = ""


class DisconnectRequest(Struct):
    user: str = ""
    client: str = ""
    session: str = ""
    whitelist: list[str] = []
    disconnect: DisconnectSpec | None = None


class RefreshRequest(Struct):
    user: str = ""
    client: str = ""
    session: str = ""
    expired: bool = False
    expire_at: int = 0
    info: Raw = EMPTY_RAW


class ChannelRequest(Struct):
    channel: str = ""


class HistoryRequest(Struct):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class ChannelsRequest(Struct):
    pattern: str = ""


class EmptyRequest(Struct):
    pass


class RevokeTokenRequest(Struct):
    uid: str = ""
    expire_at: int = 0


class InvalidateUserTokensRequest(Struct):
    user: str = ""
    issued_before: int = 0
    expire_at: int = 0
    channel: str = ""


class ConnectionsRequest(Struct):
    user: str = ""
    expression: str = ""  # Centrifugo PRO's CEL filter: not offered


class BatchRequest(Struct):
    commands: list[dict[str, Raw]] = []
    parallel: bool = False


# --- results


class PublishResult(Struct, omit_defaults=True):
    offset: int = 0
    epoch: str = ""


class EmptyResult(Struct):
    pass


class BroadcastItem(Struct, omit_defaults=True):
    result: PublishResult | None = None
    error: ErrorBody | None = None


class ErrorBody(Struct, omit_defaults=True):
    code: int
    message: str


class BroadcastResult(Struct):
    responses: list[BroadcastItem]


class ChannelInfo(Struct, omit_defaults=True):
    num_clients: int = 0


class ChannelsResult(Struct):
    channels: dict[str, ChannelInfo]


class InfoResult(Struct):
    nodes: list[NodeStats]


class BatchResult(Struct):
    replies: list[dict[str, Any]]


_Method = Callable[["ServerAPI", Any, str], Awaitable[Struct]]
IDEMPOTENCY_KEY_MAX: Final = 256


def _decode_b64json(value: str) -> Raw:
    """``b64data``: Herald's transport is JSON-only, so the bytes must themselves be JSON."""
    try:
        raw = base64.b64decode(value, validate=True)
        msgspec.json.decode(raw)
    except (binascii.Error, msgspec.DecodeError, RecursionError):
        raise errors.API_ERROR_BAD_REQUEST from None
    return Raw(raw)


def _payload(data: Raw, b64data: str) -> Raw:
    if b64data:
        return _decode_b64json(b64data)
    if is_empty_raw(data):
        raise errors.API_ERROR_BAD_REQUEST
    return clean_raw(data)


class ServerAPI:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._connections = ConnectionsSurvey(node)
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {
            name: msgspec.json.Decoder(req_type) for name, (req_type, _) in _METHODS.items()
        }

    @staticmethod
    def knows(method: str) -> bool:
        return method in _METHODS

    def decode(self, method: str, body: bytes) -> Any:
        decoder = self._decoders.get(method)
        if decoder is None:
            raise MethodNotFound(method)
        try:
            return decoder.decode(body or b"{}")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRequest(str(exc)) from None
        except RecursionError:  # nested deeper than the decoder goes
            raise BadRequest("nested too deeply") from None

    async def call(self, method: str, body: bytes, scope: str = "") -> Struct:
        """Run a method; ``scope`` is the environment prefix the API key is bound to ("" = all)."""
        return await self.run(method, self.decode(method, body), scope)

    async def run(self, method: str, request: Any, scope: str = "") -> Struct:
        handler = _METHODS[method][1]
        try:
            return await handler(self, request, scope)
        except EngineUnavailable as exc:
            log.warning("server API %s failed: %s", method, exc)  # an outage: no traceback
            raise errors.API_ERROR_INTERNAL from None
        except ReplyError as exc:
            if exc.code in (100, 101, 103, 109, 110):  # raised by shared client-protocol code
                errors.spent(exc)
                raise reply_error_for_api(exc) from None
            raise

    def _check_scope(self, channel: str, scope: str) -> None:
        """A key bound to an environment prefix reaches only channels inside it (decisions §2)."""
        if scope and not self.node.config.in_scope(channel, scope):
            raise errors.API_ERROR_PERMISSION_DENIED

    # --- methods

    async def publish(self, req: PublishRequest, scope: str = "") -> PublishResult:
        if not req.channel:
            raise errors.API_ERROR_BAD_REQUEST
        data = _payload(req.data, req.b64data)
        self._check_scope(req.channel, scope)
        if len(req.idempotency_key) > IDEMPOTENCY_KEY_MAX:
            raise errors.API_ERROR_BAD_REQUEST
        result = await self.node.publish(
            req.channel,
            data,
            tags=req.tags,
            skip_history=req.skip_history,
            idempotency_key=req.idempotency_key,
            delta=req.delta,
        )
        return PublishResult(offset=result.position.offset, epoch=result.position.epoch)

    async def broadcast(self, req: BroadcastRequest, scope: str = "") -> BroadcastResult:
        if not req.channels:
            raise errors.API_ERROR_BAD_REQUEST
        data = _payload(req.data, req.b64data)

        async def one(channel: str) -> BroadcastItem:
            try:
                result = await self.publish(
                    PublishRequest(
                        channel=channel,
                        data=data,
                        skip_history=req.skip_history,
                        tags=req.tags,
                        idempotency_key=req.idempotency_key,
                        delta=req.delta,
                    ),
                    scope,
                )
            except ReplyError as exc:
                errors.spent(exc)
                return BroadcastItem(error=ErrorBody(exc.code, exc.message))
            except EngineUnavailable as exc:
                log.warning("server API broadcast to %s failed: %s", channel, exc)
                internal = errors.API_ERROR_INTERNAL
                return BroadcastItem(error=ErrorBody(internal.code, internal.message))
            return BroadcastItem(result=result)

        return BroadcastResult(responses=list(await asyncio.gather(*(one(c) for c in req.channels))))

    async def subscribe(self, req: SubscribeRequest, scope: str = "") -> EmptyResult:
        if not req.channel or not (req.user or req.client):
            raise errors.API_ERROR_BAD_REQUEST
        self.node.options(req.channel)
        self._check_scope(req.channel, scope)
        info = _decode_b64json(req.b64info) if req.b64info else req.info
        data = _decode_b64json(req.b64data) if req.b64data else req.data
        spec = ServerSubscribe(
            channel=req.channel, info=info, data=data, expire_at=req.expire_at, recover_since=req.recover_since
        )
        await self.node.control(
            Control(op="subscribe", user=req.user, client=req.client, session=req.session, subscribe=spec, scope=scope)
        )
        return EmptyResult()

    async def unsubscribe(self, req: UnsubscribeRequest, scope: str = "") -> EmptyResult:
        if not req.channel or not (req.user or req.client):
            raise errors.API_ERROR_BAD_REQUEST
        access.check_channel_name(self.node.config, req.channel)
        self._check_scope(req.channel, scope)
        await self.node.control(
            Control(
                op="unsubscribe",
                user=req.user,
                client=req.client,
                session=req.session,
                channel=req.channel,
                scope=scope,
            )
        )
        return EmptyResult()

    async def disconnect(self, req: DisconnectRequest, scope: str = "") -> EmptyResult:
        if not (req.user or req.client):
            raise errors.API_ERROR_BAD_REQUEST
        code, reason = 0, ""
        if req.disconnect is not None and req.disconnect.code:
            code, reason = req.disconnect.code, req.disconnect.reason
            # Only codes a client can act on; reasons must be plain text within the close-frame limit.
            if not (3000 <= code <= 4999) or len(reason.encode()) > 123:
                raise errors.API_ERROR_BAD_REQUEST
            reason = reason or "force disconnect"
        await self.node.control(
            Control(
                op="disconnect",
                user=req.user,
                client=req.client,
                session=req.session,
                whitelist=req.whitelist,
                code=code,
                reason=reason,
                scope=scope,
            )
        )
        return EmptyResult()

    async def refresh(self, req: RefreshRequest, scope: str = "") -> EmptyResult:
        if not (req.user or req.client):
            raise errors.API_ERROR_BAD_REQUEST
        await self.node.control(
            Control(
                op="refresh",
                user=req.user,
                client=req.client,
                session=req.session,
                expired=req.expired,
                expire_at=req.expire_at,
                info=req.info,
                scope=scope,
            )
        )
        return EmptyResult()

    async def presence(self, req: ChannelRequest, scope: str = "") -> PresenceResult:
        if not req.channel:
            raise errors.API_ERROR_BAD_REQUEST
        self._check_scope(req.channel, scope)
        return PresenceResult(presence=dict(await self.node.presence(req.channel)))

    async def presence_stats(self, req: ChannelRequest, scope: str = "") -> PresenceStatsResult:
        if not req.channel:
            raise errors.API_ERROR_BAD_REQUEST
        self._check_scope(req.channel, scope)
        clients, users = await self.node.presence_stats(req.channel)
        return PresenceStatsResult(num_clients=clients, num_users=users)

    async def history(self, req: HistoryRequest, scope: str = "") -> HistoryResult:
        if not req.channel:
            raise errors.API_ERROR_BAD_REQUEST
        if req.reverse and req.since is not None and req.since.offset == 0:
            raise errors.API_ERROR_BAD_REQUEST
        self._check_scope(req.channel, scope)
        page = await self.node.history(
            req.channel, HistoryFilter(since=req.since, limit=req.limit, reverse=req.reverse)
        )
        return HistoryResult(publications=page.publications, epoch=page.top.epoch, offset=page.top.offset)

    async def history_remove(self, req: ChannelRequest, scope: str = "") -> EmptyResult:
        if not req.channel:
            raise errors.API_ERROR_BAD_REQUEST
        self._check_scope(req.channel, scope)
        await self.node.remove_history(req.channel)
        return EmptyResult()

    async def channels(self, req: ChannelsRequest, scope: str = "") -> ChannelsResult:
        counts = await self.node.survey_channels()
        found = {
            channel: ChannelInfo(num_clients=count)
            for channel, count in counts.items()
            if (not req.pattern or fnmatch.fnmatchcase(channel, req.pattern))
            and (not scope or self.node.config.in_scope(channel, scope))
        }
        return ChannelsResult(channels=found)

    async def info(self, req: EmptyRequest, scope: str = "") -> InfoResult:
        return InfoResult(nodes=self.node.nodes())

    async def connections(self, req: ConnectionsRequest, scope: str = "") -> ConnectionsResult:
        """A user's live connections on every node (Centrifugo PRO's method, see connections.py)."""
        if not req.user or req.expression:
            raise errors.API_ERROR_BAD_REQUEST  # an ignored filter would list more than asked for
        return ConnectionsResult(connections=await self._connections.gather(req.user, scope))

    async def rpc(self, req: EmptyRequest, scope: str = "") -> EmptyResult:
        raise errors.API_ERROR_NOT_FOUND  # no API RPC extensions (spec §8.2)

    async def revoke_token(self, req: RevokeTokenRequest, scope: str = "") -> EmptyResult:
        if not req.uid:
            raise errors.API_ERROR_BAD_REQUEST
        await self.node.control(Control(op="revoke_token", uid=req.uid, expire_at=req.expire_at, scope=scope))
        return EmptyResult()

    async def invalidate_user_tokens(self, req: InvalidateUserTokensRequest, scope: str = "") -> EmptyResult:
        if not req.user or req.channel:
            # Invalidating one channel's subscription tokens (a PRO option) is not offered: saying
            # so beats silently invalidating every token of the user.
            raise errors.API_ERROR_BAD_REQUEST
        issued_before = req.issued_before or int(time.time())
        await self.node.control(
            Control(
                op="invalidate_user_tokens",
                user=req.user,
                issued_before=issued_before,
                expire_at=req.expire_at,
                scope=scope,
            )
        )
        return EmptyResult()

    async def batch(self, req: BatchRequest, scope: str = "") -> BatchResult:
        async def one(command: dict[str, Raw]) -> dict[str, Any]:
            if len(command) != 1:
                return {"error": ErrorBody(107, "bad request")}
            ((method, params),) = command.items()
            if method == "batch" or not self.knows(method):
                return {"error": ErrorBody(104, "not found")}
            try:
                result = await self.run(method, self.decode(method, bytes(params)), scope)
            except BadRequest:
                return {"error": ErrorBody(107, "bad request")}
            except ReplyError as exc:
                errors.spent(exc)
                return {"error": ErrorBody(exc.code, exc.message)}
            return {method: result}

        if req.parallel:
            replies = list(await asyncio.gather(*(one(c) for c in req.commands)))
        else:
            replies = [await one(c) for c in req.commands]
        return BatchResult(replies=replies)


_METHODS: dict[str, tuple[type[Struct], _Method]] = {
    "publish": (PublishRequest, ServerAPI.publish),
    "broadcast": (BroadcastRequest, ServerAPI.broadcast),
    "subscribe": (SubscribeRequest, ServerAPI.subscribe),
    "unsubscribe": (UnsubscribeRequest, ServerAPI.unsubscribe),
    "disconnect": (DisconnectRequest, ServerAPI.disconnect),
    "refresh": (RefreshRequest, ServerAPI.refresh),
    "presence": (ChannelRequest, ServerAPI.presence),
    "presence_stats": (ChannelRequest, ServerAPI.presence_stats),
    "history": (HistoryRequest, ServerAPI.history),
    "history_remove": (ChannelRequest, ServerAPI.history_remove),
    "channels": (ChannelsRequest, ServerAPI.channels),
    "info": (EmptyRequest, ServerAPI.info),
    "connections": (ConnectionsRequest, ServerAPI.connections),
    "rpc": (EmptyRequest, ServerAPI.rpc),
    "revoke_token": (RevokeTokenRequest, ServerAPI.revoke_token),
    "invalidate_user_tokens": (InvalidateUserTokensRequest, ServerAPI.invalidate_user_tokens),
    "batch": (BatchRequest, ServerAPI.batch),
}

# The legacy single endpoint accepts these names (case-insensitive) or their enum numbers
# from Centrifugo's API schema.
LEGACY_METHOD_NUMBERS: Final = {
    0: "publish",
    1: "broadcast",
    2: "unsubscribe",
    3: "disconnect",
    4: "presence",
    5: "presence_stats",
    6: "history",
    7: "history_remove",
    8: "channels",
    9: "info",
    10: "rpc",
    11: "subscribe",
    12: "refresh",
    20: "revoke_token",
    21: "invalidate_user_tokens",
}

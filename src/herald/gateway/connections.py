"""The server API's ``connections`` method across the cluster (Centrifugo PRO's name and shape).

``connections {user}`` lists every live connection of a user, keyed by client id, whichever
node holds it. This node answers for its own connections at once and asks every peer heard
from recently with a control message; peers reply with theirs (``data`` carries the encoded
map), and the call returns when all replied or after :data:`SURVEY_TIMEOUT`, like the
``channels`` survey. Control operations travel through ``node.control_handlers``, so the node
needs no knowledge of this method.

Each entry has Centrifugo PRO's ``protocol``, ``token_uid`` and ``token_issued_at``, and
Herald's ``user``, ``node`` (the name of the node holding the connection), ``channels`` (its
subscriptions) and ``info`` (the connection info from its token). PRO's ``transport``,
``app_name`` and ``app_version`` are not recorded by the session and are omitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Final

import msgspec
from msgspec import Raw, Struct

from herald.gateway.codecs.messages import EMPTY_RAW
from herald.gateway.control import Control, Session
from herald.gateway.node import NODE_TTL, SURVEY_TIMEOUT, Node
from herald.gateway.revocation import reaches

log = logging.getLogger(__name__)

ASK: Final = "connections"
ANSWER: Final = "connections_reply"


class ConnectionInfo(Struct, omit_defaults=True):
    protocol: str = ""  # "json" or "protobuf"
    user: str = ""
    node: str = ""
    token_uid: str = ""
    token_issued_at: int = 0
    channels: list[str] = []
    info: Raw = EMPTY_RAW


class ConnectionsResult(Struct):
    connections: dict[str, ConnectionInfo]


_answer_decoder: Final = msgspec.json.Decoder(dict[str, ConnectionInfo])


def describe(session: Session, node_name: str) -> ConnectionInfo:
    return ConnectionInfo(
        protocol="protobuf" if "protobuf" in session.codec.name else "json",
        user=session.user,
        node=node_name,
        token_uid=session.token_jti,
        token_issued_at=session.token_iat or 0,
        channels=sorted(session.subs),
        info=session.client_info().conn_info,
    )


class ConnectionsSurvey:
    """Asks every node for a user's connections; answers the other nodes' questions."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # request id -> (done, found so far, peers yet to answer)
        self._pending: dict[str, tuple[asyncio.Future[None], dict[str, ConnectionInfo], set[str]]] = {}
        node.control_handlers[ASK] = self._asked
        node.control_handlers[ANSWER] = self._answered

    def local(self, user: str, scope: str) -> dict[str, ConnectionInfo]:
        """This node's connections of ``user`` that a key of ``scope`` reaches (decisions §2)."""
        return {
            session.id: describe(session, self.node.name)
            for session in self.node.hub.user_clients(user)
            if reaches(scope, session.scope)
        }

    async def gather(self, user: str, scope: str) -> dict[str, ConnectionInfo]:
        node = self.node
        found = self.local(user, scope)
        now = time.monotonic()
        expected = {uid for uid, (_, heard) in node.peers.items() if now - heard <= NODE_TTL}
        if not expected:
            return found
        request = str(uuid.uuid4())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[request] = (done, found, expected)
        try:
            ask = Control(op=ASK, node=node.uid, request=request, user=user, scope=scope)
            await node.broker.publish_control(msgspec.json.encode(ask))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, SURVEY_TIMEOUT)
        finally:
            del self._pending[request]
        return found

    def _asked(self, control: Control) -> None:
        node = self.node
        answer = Control(
            op=ANSWER,
            node=node.uid,
            target=control.node,
            request=control.request,
            data=msgspec.json.encode(self.local(control.user, control.scope)),
        )
        node.spawn(node.broker.publish_control(msgspec.json.encode(answer)))

    def _answered(self, control: Control) -> None:
        pending = self._pending.get(control.request)
        if pending is None:
            return  # answered after the survey gave up waiting
        done, found, expected = pending
        try:
            found.update(_answer_decoder.decode(control.data))
        except msgspec.MsgspecError:
            log.warning("dropping a malformed connections answer from node %s", control.node)
        expected.discard(control.node)
        if not expected and not done.done():
            done.set_result(None)

"""What the unidirectional transports share (spec §1.7): the connect request and its errors."""

from __future__ import annotations

import msgspec

from herald import errors
from herald.gateway.codecs.messages import ConnectRequest
from herald.gateway.session.client import Client

_connect_request = msgspec.json.Decoder(ConnectRequest)


def connect(client: Client, data: bytes) -> None:
    """Start a unidirectional session from a ConnectRequest JSON (empty = no credentials)."""
    try:
        request = _connect_request.decode(data) if data.strip() else ConnectRequest()
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        client.disconnect(errors.DISCONNECT_BAD_REQUEST)
        return
    client.node.spawn(client.connect_unidirectional(request))

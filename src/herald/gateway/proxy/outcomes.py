"""What a backend's answer means for the client (proxy.md §2, §4), as values the session uses.

* A custom ``error`` becomes a :class:`ReplyError` with the backend's code, message and
  ``temporary`` flag, verbatim; a custom ``disconnect`` a :class:`Disconnect` that closes the
  whole connection. A disconnect code outside 3001-4999 cannot be a close code the SDKs
  understand (3000 means "no close frame" here, below 3000 is the WebSocket's own range), so
  such an answer is treated as a failure (internal error) and logged.
* Payloads: ``b64*`` fields (standard base64 with padding) win over their JSON twin, except for
  publish ``data`` (proxy.md §3.4, §3.6). Herald carries JSON payloads throughout (history,
  JSON subscribers, the server API), so decoded bytes must be JSON too; ``null`` counts as
  absent. A payload that breaks these rules is a failure: error 100 to the client.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Protocol

from msgspec import Raw

from herald.errors import Disconnect, ReplyError
from herald.gateway.codecs.messages import EMPTY_RAW, is_json
from herald.gateway.proxy import messages as m
from herald.gateway.proxy.client import ProxyFailure

log = logging.getLogger(__name__)

# Namespace options a result's ``override`` may change (proxy.md §3.1).
OVERRIDE_KEYS = frozenset({"presence", "join_leave", "force_recovery", "force_positioning", "force_push_join_leave"})


def error(body: m.Error) -> ReplyError:
    return ReplyError(body.code, body.message, body.temporary)


def disconnect(body: m.Disconnect) -> Disconnect:
    if not 3001 <= body.code <= 4999:
        raise ProxyFailure(f"disconnect code {body.code} is not a close code (use 4000-4999)")
    return Disconnect(body.code, body.reason)


class Answer(Protocol):
    """A response that may refuse: ``disconnect`` wins over ``error`` (proxy.md §2)."""

    @property
    def disconnect(self) -> m.Disconnect | None: ...

    @property
    def error(self) -> m.Error | None: ...


def raise_refusal(resp: Answer) -> None:
    """Raise what the backend refused the call with, if it did."""
    if resp.disconnect is not None:
        raise disconnect(resp.disconnect)
    if resp.error is not None:
        raise error(resp.error)


def payload(data: Raw, b64: str, *, b64_first: bool = True) -> bytes | None:
    """A payload field pair as JSON bytes, or None when absent."""
    text = bytes(data)
    if b64 and (b64_first or not text):
        try:
            decoded = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ProxyFailure("a b64 field is not valid base64") from None
        if not is_json(Raw(decoded)):
            raise ProxyFailure("a b64 field does not hold JSON (Herald payloads are JSON)")
        text = decoded
    return None if text.strip() in (b"", b"null") else text


def override(values: Mapping[str, m.BoolValue] | None) -> dict[str, bool]:
    return {key: item.value for key, item in (values or {}).items() if key in OVERRIDE_KEYS}


def request_data(data: bytes | None, binary: bool) -> tuple[Raw, str]:
    """A client payload for a request: raw JSON, or base64 with ``proxy_binary_encoding``."""
    if not data:
        return EMPTY_RAW, ""
    if binary:
        return EMPTY_RAW, base64.b64encode(data).decode()
    if not is_json(Raw(data)):
        raise ProxyFailure("the client's data is not JSON; set proxy_binary_encoding to forward it")
    return Raw(data), ""

"""What a proxy view answers when it says no: the error and disconnect objects of the
proxy protocol (proxy spec §4), and the exceptions application code raises to produce them.

* An **error** (``{"error": {"code", "message", "temporary"}}``) fails one operation (the
  subscribe, the publish, the RPC call); the connection stays. Custom codes belong in
  400-1999; the protocol's own codes (103 permission denied, 104 method not found…) may be
  reused where they mean the same thing.
* A **disconnect** (``{"disconnect": {"code", "reason"}}``) closes the whole connection, even
  when answered to a subscribe, publish or RPC. 4000-4499: the SDK reconnects; 4500-4999: it
  does not. The reason travels in a WebSocket close frame: short ASCII.
"""

from __future__ import annotations

from typing import Any, Final

# Custom error codes (proxy spec §4: "use 400-1999"), and the protocol codes that may be
# answered with their usual meaning (centrifugo-protocol errors 100-112).
ERROR_CODE_RANGE: Final = (400, 1999)
PROTOCOL_ERROR_CODES: Final = frozenset(range(100, 113))
DISCONNECT_CODE_RANGE: Final = (4000, 4999)
# 32 bytes: what the proxy documentation allows for a reason (the close frame allows more).
MAX_REASON_BYTES: Final = 32

INTERNAL: Final[dict[str, Any]] = {"code": 100, "message": "internal server error"}
PERMISSION_DENIED: Final[dict[str, Any]] = {"code": 103, "message": "permission denied"}
METHOD_NOT_FOUND: Final[dict[str, Any]] = {"code": 104, "message": "method not found"}

# Connect without a logged-in session: terminal (4500+), so the SDK stops retrying a
# connection that cannot succeed until the user logs in again.
UNAUTHORIZED: Final[dict[str, Any]] = {"code": 4501, "reason": "unauthorized"}
# Sent through the server API when a user logs out: a reconnect code, so the user's other,
# still logged-in pages come straight back through the connect proxy, while the page whose
# session ended is refused there with UNAUTHORIZED.
LOGGED_OUT: Final[dict[str, Any]] = {"code": 4001, "reason": "logged out"}


class HeraldProxyError(Exception):
    """Refuse one operation with a custom error; the connection stays open.

    ``raise HeraldProxyError(400, "message too long")`` in a publish validator or an RPC
    handler reaches the client as that error code and message.
    """

    def __init__(self, code: int, message: str, *, temporary: bool = False) -> None:
        low, high = ERROR_CODE_RANGE
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"error code must be an int, not {type(code).__name__}")
        if not (low <= code <= high or code in PROTOCOL_ERROR_CODES):
            raise ValueError(f"error code {code} is outside {low}-{high} (custom) and 100-112 (protocol)")
        super().__init__(message)
        self.code = code
        self.message = message
        self.temporary = temporary

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.temporary:
            error["temporary"] = True
        return error


class HeraldProxyDisconnect(Exception):
    """Close the client's whole connection: ``raise HeraldProxyDisconnect(4503, "banned")``.

    4000-4499: the SDK reconnects after a backoff; 4500-4999: it stays disconnected.
    """

    def __init__(self, code: int, reason: str) -> None:
        low, high = DISCONNECT_CODE_RANGE
        if isinstance(code, bool) or not isinstance(code, int) or not low <= code <= high:
            raise ValueError(f"disconnect code must be an int in {low}-{high}, not {code!r}")
        if not reason.isascii() or len(reason) > MAX_REASON_BYTES:
            raise ValueError(f"disconnect reason must be ASCII of at most {MAX_REASON_BYTES} bytes: {reason!r}")
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def as_disconnect(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason}

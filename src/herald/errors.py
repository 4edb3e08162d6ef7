"""Protocol errors with the exact codes the official SDKs act on (spec §5).

Two kinds, kept apart on purpose (the centrifuge model):

* :class:`ReplyError` answers one command; the connection stays usable.
* :class:`Disconnect` closes the connection; the code range tells the SDK whether to
  reconnect (3000-3499) or stop (3500-3999).

Server API errors reuse :class:`ReplyError` with the API's own codes (spec §8.1).
"""

from __future__ import annotations

from typing import Final


class ReplyError(Exception):
    """An error reply to one command (spec §5.1)."""

    __slots__ = ("code", "message", "temporary")

    def __init__(self, code: int, message: str, temporary: bool = False) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.temporary = temporary

    def __repr__(self) -> str:
        return f"ReplyError({self.code}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReplyError) and (self.code, self.message, self.temporary) == (
            other.code,
            other.message,
            other.temporary,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message))


class Disconnect(Exception):
    """Close the connection with a WebSocket close code and a plain-text reason (spec §5.3)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    @property
    def reconnect(self) -> bool:
        return self.code < 3500 or 4000 <= self.code < 4500 or self.code >= 5000

    def __repr__(self) -> str:
        return f"Disconnect({self.code}, {self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Disconnect) and (self.code, self.reason) == (other.code, other.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))


def spent(error: BaseException) -> None:
    """Forget where an error was raised, once it has been answered or turned into a close.

    The errors below are shared instances, raised again and again, and every raise extends the
    traceback the instance already holds (and sets its ``__context__``): without this, every
    frame that ever raised one, with the connection and the request in it, stays in memory.
    """
    error.__traceback__ = None
    error.__context__ = None


# Reply errors (spec §5.1). Instances are immutable in practice; share them, and let whatever
# answers one call spent() on it.
ERROR_INTERNAL: Final = ReplyError(100, "internal server error", temporary=True)
ERROR_UNAUTHORIZED: Final = ReplyError(101, "unauthorized")
ERROR_UNKNOWN_CHANNEL: Final = ReplyError(102, "unknown channel")
ERROR_PERMISSION_DENIED: Final = ReplyError(103, "permission denied")
ERROR_METHOD_NOT_FOUND: Final = ReplyError(104, "method not found")
ERROR_ALREADY_SUBSCRIBED: Final = ReplyError(105, "already subscribed")
ERROR_LIMIT_EXCEEDED: Final = ReplyError(106, "limit exceeded")
ERROR_BAD_REQUEST: Final = ReplyError(107, "bad request")
ERROR_NOT_AVAILABLE: Final = ReplyError(108, "not available")
ERROR_TOKEN_EXPIRED: Final = ReplyError(109, "token expired")
ERROR_EXPIRED: Final = ReplyError(110, "expired")
ERROR_TOO_MANY_REQUESTS: Final = ReplyError(111, "too many requests", temporary=True)
ERROR_UNRECOVERABLE_POSITION: Final = ReplyError(112, "unrecoverable position")

# Server API error messages differ slightly from the client protocol's (spec §8.1).
API_ERROR_INTERNAL: Final = ReplyError(100, "internal server error")
API_ERROR_UNKNOWN_CHANNEL: Final = ReplyError(102, "unknown channel")
API_ERROR_PERMISSION_DENIED: Final = ReplyError(103, "permission denied")
API_ERROR_NOT_FOUND: Final = ReplyError(104, "not found")
API_ERROR_BAD_REQUEST: Final = ReplyError(107, "bad request")
API_ERROR_NOT_AVAILABLE: Final = ReplyError(108, "not available")
API_ERROR_UNRECOVERABLE_POSITION: Final = ReplyError(112, "unrecoverable position")
API_ERROR_CONFLICT: Final = ReplyError(113, "conflict")

# Disconnects (spec §5.3). 3000 is internal: no close frame is written for it.
DISCONNECT_CONNECTION_CLOSED: Final = Disconnect(3000, "connection closed")
DISCONNECT_SHUTDOWN: Final = Disconnect(3001, "shutdown")
DISCONNECT_SERVER_ERROR: Final = Disconnect(3004, "internal server error")
DISCONNECT_EXPIRED: Final = Disconnect(3005, "connection expired")
DISCONNECT_SUBSCRIPTION_EXPIRED: Final = Disconnect(3006, "subscription expired")
DISCONNECT_SLOW: Final = Disconnect(3008, "slow")
DISCONNECT_WRITE_ERROR: Final = Disconnect(3009, "write error")
DISCONNECT_INSUFFICIENT_STATE: Final = Disconnect(3010, "insufficient state")
DISCONNECT_FORCE_RECONNECT: Final = Disconnect(3011, "force reconnect")
DISCONNECT_NO_PONG: Final = Disconnect(3012, "no pong")
DISCONNECT_TOO_MANY_REQUESTS: Final = Disconnect(3013, "too many requests")
DISCONNECT_INVALID_TOKEN: Final = Disconnect(3500, "invalid token")
DISCONNECT_BAD_REQUEST: Final = Disconnect(3501, "bad request")
DISCONNECT_STALE: Final = Disconnect(3502, "stale")
DISCONNECT_FORCE_NO_RECONNECT: Final = Disconnect(3503, "force disconnect")
DISCONNECT_CONNECTION_LIMIT: Final = Disconnect(3504, "connection limit")
DISCONNECT_CHANNEL_LIMIT: Final = Disconnect(3505, "channel limit")
DISCONNECT_INAPPROPRIATE_PROTOCOL: Final = Disconnect(3506, "inappropriate protocol")
DISCONNECT_PERMISSION_DENIED: Final = Disconnect(3507, "permission denied")
DISCONNECT_NOT_AVAILABLE: Final = Disconnect(3508, "not available")
DISCONNECT_TOO_MANY_ERRORS: Final = Disconnect(3509, "too many errors")

# Unsubscribe push codes (spec §5.2): < 2500 is terminal for the subscription, >= 2500 resubscribes.
UNSUBSCRIBE_SERVER: Final = (2000, "server unsubscribe")
UNSUBSCRIBE_INSUFFICIENT_STATE: Final = (2500, "insufficient state")
UNSUBSCRIBE_EXPIRED: Final = (2501, "subscription expired")

# WebSocket close code for an inbound message over the size limit (spec §1.2).
WS_MESSAGE_TOO_BIG: Final = 1009

"""Admin sessions and login throttling: pure logic, no I/O.

A session is a signed token ``v1.<expires>.<nonce>.<signature>`` held in an HttpOnly cookie.
The signature is HMAC-SHA256 under a key derived from ``admin_secret`` *and*
``admin_password``, so changing either ends every session on every node, with nothing stored.
Logging out forgets the token on this process; the cookie is gone from the browser too, and
being HttpOnly it could not have been read by a script.

Passwords are compared in constant time (of digests, so the length does not show either).
A wrong password costs the caller :data:`FAILURE_DELAY`, and :data:`MAX_FAILURES` of them
from one address within :data:`FAILURE_WINDOW` lock that address out for :data:`LOCKOUT`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from typing import Final

SESSION_TTL: Final = 8 * 3600.0  # a working day; log in again after that
FAILURE_DELAY: Final = 0.5  # seconds added to every refused login
MAX_FAILURES: Final = 5
FAILURE_WINDOW: Final = 300.0
LOCKOUT: Final = 300.0
TRACKED_ADDRESSES: Final = 10_000  # memory bound: the oldest address is forgotten first
_VERSION: Final = "v1"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Sessions:
    """Issues and checks admin session tokens for one password and secret."""

    def __init__(self, password: str, secret: str, ttl: float = SESSION_TTL) -> None:
        self._password = _digest(password)
        self._key = hmac.new(secret.encode(), b"herald admin session\x00" + password.encode(), hashlib.sha256).digest()
        self.ttl = ttl
        self._ended: dict[str, float] = {}  # nonce -> expiry, of sessions logged out here

    def password_matches(self, given: str) -> bool:
        return hmac.compare_digest(_digest(given), self._password)

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> tuple[str, int]:
        """A new token and the unix time it expires."""
        expires = int((time.time() if now is None else now) + self.ttl)
        body = f"{_VERSION}.{expires}.{secrets.token_hex(16)}"
        return f"{body}.{self._sign(body)}", expires

    def valid(self, token: str, now: float | None = None) -> bool:
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not (parts[1].isascii() and parts[1].isdigit()):
            return False
        body = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(body), parts[3]):
            return False
        now = time.time() if now is None else now
        return int(parts[1]) > now and parts[2] not in self._ended

    def end(self, token: str, now: float | None = None) -> None:
        """Log a session out: refused here from now on (other processes: until it expires)."""
        if not self.valid(token, now):
            return
        _, expires, nonce, _ = token.split(".")
        now = time.time() if now is None else now
        self._ended = {n: at for n, at in self._ended.items() if at > now}
        self._ended[nonce] = float(expires)


class LoginGuard:
    """Counts wrong passwords per address and locks out an address that guesses too often."""

    def __init__(
        self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW, lockout: float = LOCKOUT
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def locked_for(self, address: str, now: float | None = None) -> float:
        """Seconds until ``address`` may try again (0 = it may try now)."""
        failures = self._failures.get(address)
        if failures is None or len(failures) < self.max_failures:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, failures[-1] + self.lockout - now)

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        failures.append(now)
        self._failures[address] = failures  # most recent last
        while len(self._failures) > TRACKED_ADDRESSES:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

"""Token revocation state (decisions §3): revoked token ids and per-user invalidation times.

A refused token is treated like an expired one (error 109 on connect and refresh), so the
SDKs fetch a fresh token and the backend mints one with the user's current grants.
"""

from __future__ import annotations

import time


class Revocations:
    __slots__ = ("_invalidated", "_revoked")

    def __init__(self) -> None:
        self._revoked: dict[str, float] = {}  # jti -> unix time the entry expires (0 = never)
        self._invalidated: dict[str, tuple[int, float]] = {}  # user -> (issued_before, expires)

    def revoke(self, jti: str, expire_at: float) -> None:
        self._revoked[jti] = expire_at

    def invalidate_user(self, user: str, issued_before: int, expire_at: float) -> None:
        current = self._invalidated.get(user)
        if current is None or issued_before >= current[0]:
            self._invalidated[user] = (issued_before, expire_at)

    def is_revoked(self, user: str, jti: str, iat: int | None, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if jti:
            expires = self._revoked.get(jti)
            if expires is not None and (expires == 0 or expires > now):
                return True
        entry = self._invalidated.get(user)
        if entry is not None and (entry[1] == 0 or entry[1] > now):
            return (iat or 0) < entry[0]
        return False

    def sweep(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for jti in [j for j, exp in self._revoked.items() if exp and exp <= now]:
            del self._revoked[jti]
        for user in [u for u, (_, exp) in self._invalidated.items() if exp and exp <= now]:
            del self._invalidated[user]

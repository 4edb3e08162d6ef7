"""Token revocation state (decisions §3): revoked token ids and per-user invalidation times.

A refused token is treated like an expired one (error 109 on connect and refresh), so the
SDKs fetch a fresh token and the backend mints one with the user's current grants.

Every entry has a scope (decisions §2): the environment prefix of the API key that made it.
An entry made with an unbound key ("") applies to every token; an entry made with a key bound
to ``staging_`` applies only to tokens verified by a secret bound to ``staging_``, so a staging
credential can never lock a production user out.
"""

from __future__ import annotations

import time


def reaches(entry_scope: str, token_scope: str) -> bool:
    """Whether something done with a key of ``entry_scope`` applies to a token or connection of
    ``token_scope``: an unbound key reaches all; a bound key only its own environment."""
    return not entry_scope or entry_scope == token_scope


class Revocations:
    __slots__ = ("_invalidated", "_revoked")

    def __init__(self) -> None:
        # (jti, scope) -> unix time the entry expires (0 = never)
        self._revoked: dict[tuple[str, str], float] = {}
        # (user, scope) -> (issued_before, expires)
        self._invalidated: dict[tuple[str, str], tuple[int, float]] = {}

    def revoke(self, jti: str, expire_at: float, scope: str = "") -> None:
        self._revoked[jti, scope] = expire_at

    def invalidate_user(self, user: str, issued_before: int, expire_at: float, scope: str = "") -> None:
        current = self._invalidated.get((user, scope))
        if current is None or issued_before >= current[0]:
            self._invalidated[user, scope] = (issued_before, expire_at)

    def is_revoked(self, user: str, jti: str, iat: int | None, scope: str = "", now: float | None = None) -> bool:
        """Whether a token verified in ``scope`` is refused: by an unbound entry or one of its scope."""
        now = time.time() if now is None else now
        scopes = ("", scope) if scope else ("",)
        for entry_scope in scopes:
            if jti:
                expires = self._revoked.get((jti, entry_scope))
                if expires is not None and (expires == 0 or expires > now):
                    return True
            entry = self._invalidated.get((user, entry_scope))
            if entry is not None and (entry[1] == 0 or entry[1] > now) and (iat or 0) < entry[0]:
                return True
        return False

    def sweep(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for key in [k for k, exp in self._revoked.items() if exp and exp <= now]:
            del self._revoked[key]
        for ukey in [k for k, (_, exp) in self._invalidated.items() if exp and exp <= now]:
            del self._invalidated[ukey]

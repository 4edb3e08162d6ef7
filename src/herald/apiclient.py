"""Blocking client of the gateway's server HTTP API (spec §8), usable from any Python backend.

Failures arrive classified (``TransientApiError`` / ``PermanentApiError``, see
``herald.apiresults``), so callers such as a Celery task only decide "retry" or "give up".
``herald.aioapiclient.AsyncApiClient`` is the same client for asyncio code.

Only ``requests`` is imported: no Django, so cron jobs and other frameworks can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from herald.apiresults import (
    TEMPORARY_API_CODES,
    TRANSIENT_STATUSES,
    ApiError,
    PermanentApiError,
    TransientApiError,
    UnencodableData,
    batch_replies,
    disconnect_params,
    encode_body,
    invalidate_params,
    publish_params,
    result_of,
    revoke_params,
    short_reason,
)

__all__ = [
    "TEMPORARY_API_CODES",
    "TRANSIENT_STATUSES",
    "ApiClient",
    "ApiError",
    "PermanentApiError",
    "TransientApiError",
    "UnencodableData",
    "encode_body",
]


class ApiClient:
    """One pooled HTTP session to ``{api_url}/<method>`` with ``X-API-Key`` (spec §8.1).

    Thread-safe for concurrent calls. A client must not cross a ``fork()``: pooled sockets
    would be shared by two processes, so create it lazily in each worker process.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        pool_size: int = 10,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["X-API-Key"] = api_key
        if session is None:
            session = requests.Session()
            # No urllib3 retries: a silent resend of a publish would bypass our
            # classification (and, without an idempotency key, could duplicate it).
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # Proxies from the environment are for browsing, not for a backend-to-gateway hop.
            session.trust_env = False
        self._session = session

    # -- context management -------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- methods (spec §8.2, decisions §3 and §6) ----------------------------------------

    def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        skip_history: bool = False,
        tags: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Publish ``data`` into ``channel``; the result has ``offset``/``epoch`` when history is on."""
        params = publish_params(data, idempotency_key, skip_history, tags, channel=channel)
        return self.call("publish", params, timeout=timeout)

    def broadcast(
        self,
        channels: Iterable[str],
        data: Any,
        *,
        idempotency_key: str | None = None,
        skip_history: bool = False,
        tags: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Publish into several channels; one ``{"result": ...}`` or ``{"error": ...}`` per channel."""
        params = publish_params(data, idempotency_key, skip_history, tags, channels=list(channels))
        responses = self.call("broadcast", params, timeout=timeout).get("responses", [])
        if not isinstance(responses, list):
            raise TransientApiError("broadcast", "malformed response: 'responses' is not a list")
        return responses

    def batch(
        self, commands: Sequence[tuple[str, Mapping[str, Any]]], *, parallel: bool = False, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Several commands in one request, run in order unless ``parallel``; one reply each,
        ``{method: result}`` or ``{"error": {...}}`` (turn the latter into an exception with
        ``herald.apiresults.error_of``)."""
        params = {"commands": [{method: dict(p)} for method, p in commands], "parallel": parallel}
        return batch_replies("batch", self.call("batch", params, timeout=timeout), len(commands))

    def disconnect(
        self,
        user: str,
        *,
        client: str = "",
        session: str = "",
        code: int | None = None,
        reason: str = "",
        timeout: float | None = None,
    ) -> None:
        """Close the user's connections (default 3503 "force disconnect": no reconnect)."""
        self.call("disconnect", disconnect_params(user, client, session, code, reason), timeout=timeout)

    def invalidate_user_tokens(
        self,
        user: str,
        *,
        issued_before: int | None = None,
        expire_at: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Refuse every token of ``user`` issued before ``issued_before`` (decisions §3).

        ``issued_before`` defaults to the next whole second: ``iat`` has one-second
        resolution, so "now" would spare a token minted earlier in this same second. A
        token minted later in this second is refused too; the client then simply asks
        for another one a moment later. ``expire_at`` is when the gateway may forget the
        rule: any time after the longest token lifetime has passed.
        """
        self.call("invalidate_user_tokens", invalidate_params(user, issued_before, expire_at), timeout=timeout)

    def revoke_token(self, uid: str, *, expire_at: int | None = None, timeout: float | None = None) -> None:
        """Refuse the token whose ``jti`` is ``uid`` until ``expire_at`` (decisions §3)."""
        self.call("revoke_token", revoke_params(uid, expire_at), timeout=timeout)

    def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The gateway's nodes (``{"nodes": [...]}``); a cheap call that proves URL and key."""
        return self.call("info", {}, timeout=timeout)

    # -- transport ------------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """POST one method; return its ``result`` object or raise a classified :class:`ApiError`."""
        body = encode_body(method, params)
        try:
            response = self._session.post(
                f"{self.api_url}/{method}",
                data=body,
                headers=self._headers,
                timeout=self.timeout if timeout is None else timeout,
                # A redirect would turn the POST into a GET elsewhere: a configuration error.
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            # The gateway may have applied the call before the timeout: only an
            # idempotency key makes the retry safe (decisions §6).
            raise TransientApiError(method, f"timed out ({type(exc).__name__})") from None
        except requests.ConnectionError as exc:
            raise TransientApiError(method, f"connection failed ({short_reason(exc)})") from None
        except requests.RequestException as exc:  # bad URL and the like: configuration
            raise PermanentApiError(method, f"request could not be sent ({short_reason(exc)})") from None
        try:
            return result_of(method, response.status_code, response.content, response.headers.get("Retry-After"))
        finally:
            response.close()

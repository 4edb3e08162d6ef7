"""Blocking client of the gateway's server HTTP API (spec §8), usable from any Python backend.

Every failure is classified here, once, as *transient* (worth retrying later: the network,
a timeout, HTTP 5xx/429/408, an API error the gateway marks temporary) or *permanent*
(retrying cannot help: a bad key, a bad request, an unknown channel, a payload that is not
JSON). Callers such as a Celery task then only decide "retry" or "give up".

Only ``requests`` is imported: no Django, so cron jobs and other frameworks can use it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, ClassVar, Final

import requests
from requests.adapters import HTTPAdapter

# API error codes that describe a passing condition (spec §5.1: 100 internal error,
# 111 too many requests); every other code is a property of the request itself.
TEMPORARY_API_CODES: Final = frozenset({100, 111})
# HTTP statuses that say "try again later" rather than "this request is wrong".
TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})


class ApiError(Exception):
    """A call to the gateway's API failed; ``transient`` tells whether a retry may succeed."""

    transient: ClassVar[bool] = False

    def __init__(
        self,
        method: str,
        reason: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{method}: {reason}")
        self.method = method
        self.reason = reason
        self.status = status
        # The API error code from an ``{"error": {...}}`` body, when there was one.
        self.code = code
        # Seconds the server asked us to wait (``Retry-After``), when it said so.
        self.retry_after = retry_after


class TransientApiError(ApiError):
    """Network error, timeout, HTTP 5xx/429/408, or a temporary API error: retry later."""

    transient = True


class PermanentApiError(ApiError):
    """A 4xx, a non-temporary API error, or a request that cannot be sent: do not retry."""

    transient = False


class UnencodableData(PermanentApiError):
    """The request body is not plain JSON (e.g. a ``datetime``, ``Decimal`` or an object)."""


def encode_body(method: str, params: Mapping[str, Any]) -> bytes:
    """Strict JSON: no ``default=`` hook and no NaN, so nothing is silently reinterpreted."""
    try:
        return json.dumps(params, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise UnencodableData(method, f"data is not JSON-serialisable ({exc})") from None


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
        params = _publish_params(data, idempotency_key, skip_history, tags, channel=channel)
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
        params = _publish_params(data, idempotency_key, skip_history, tags, channels=list(channels))
        responses = self.call("broadcast", params, timeout=timeout).get("responses", [])
        if not isinstance(responses, list):
            raise TransientApiError("broadcast", "malformed response: 'responses' is not a list")
        return responses

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
        params: dict[str, Any] = {"user": user}
        if client:
            params["client"] = client
        if session:
            params["session"] = session
        if code is not None:
            params["disconnect"] = {"code": code, "reason": reason}
        self.call("disconnect", params, timeout=timeout)

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
        params: dict[str, Any] = {
            "user": user,
            "issued_before": issued_before if issued_before is not None else int(time.time()) + 1,
        }
        if expire_at is not None:
            params["expire_at"] = expire_at
        self.call("invalidate_user_tokens", params, timeout=timeout)

    def revoke_token(self, uid: str, *, expire_at: int | None = None, timeout: float | None = None) -> None:
        """Refuse the token whose ``jti`` is ``uid`` until ``expire_at`` (decisions §3)."""
        params: dict[str, Any] = {"uid": uid}
        if expire_at is not None:
            params["expire_at"] = expire_at
        self.call("revoke_token", params, timeout=timeout)

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
            raise TransientApiError(method, f"connection failed ({_short(exc)})") from None
        except requests.RequestException as exc:  # bad URL and the like: configuration
            raise PermanentApiError(method, f"request could not be sent ({_short(exc)})") from None
        try:
            return _result(method, response)
        finally:
            response.close()


def _result(method: str, response: requests.Response) -> dict[str, Any]:
    status = response.status_code
    if status != 200:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        reason = f"HTTP {status}"
        if status == 401:
            reason += " (the API key was refused)"
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise TransientApiError(method, reason, status=status, retry_after=retry_after)
        raise PermanentApiError(method, reason, status=status)
    try:
        payload = response.json()
    except ValueError:
        # A 200 that is not JSON comes from something in between (a proxy page):
        # the gateway may answer properly on the next try.
        raise TransientApiError(method, "HTTP 200 with a body that is not JSON", status=status) from None
    if not isinstance(payload, dict):
        raise TransientApiError(method, "HTTP 200 with a body that is not a JSON object", status=status)
    error = payload.get("error")
    if error is not None:
        code, message, temporary = _error_fields(error)
        kind = TransientApiError if temporary or code in TEMPORARY_API_CODES else PermanentApiError
        raise kind(method, f"API error {code}: {message}", status=status, code=code)
    result = payload.get("result", {})
    return result if isinstance(result, dict) else {}


def _error_fields(error: Any) -> tuple[int, str, bool]:
    if not isinstance(error, dict):
        return 0, repr(error), False
    code = error.get("code")
    return (
        code if isinstance(code, int) else 0,
        str(error.get("message", "")),
        error.get("temporary") is True,
    )


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _short(exc: BaseException) -> str:
    # requests wraps urllib3's error, which wraps the socket error: the innermost reason
    # ("[Errno 111] Connection refused") is the part worth a log line.
    inner: Any = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    inner = getattr(inner, "reason", None) or inner
    text = str(inner)
    if "[Errno" in text:
        text = text[text.index("[Errno") :]
    return text if len(text) <= 200 else text[:197] + "..."


def _publish_params(
    data: Any, idempotency_key: str | None, skip_history: bool, tags: Mapping[str, str] | None, **target: Any
) -> dict[str, Any]:
    """``publish``/``broadcast`` parameters, leaving out the options that are not set."""
    params: dict[str, Any] = {**target, "data": data}
    if idempotency_key:
        params["idempotency_key"] = idempotency_key
    if skip_history:
        params["skip_history"] = True
    if tags:
        params["tags"] = dict(tags)
    return params

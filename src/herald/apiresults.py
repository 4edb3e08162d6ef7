"""What the gateway's server API answers mean, shared by the blocking and the asyncio client.

Every failure is classified here, once, as *transient* (worth retrying later: the network,
a timeout, HTTP 5xx/429/408, an API error the gateway marks temporary) or *permanent*
(retrying cannot help: a bad key, a bad request, an unknown channel, a payload that is not
JSON). Callers such as a Celery task or the outbox relay then only decide "retry" or "give up".

No I/O and no HTTP library here: the clients hand over a status, two headers and the body.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Final

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


def result_of(method: str, status: int, body: bytes, retry_after_header: str | None = None) -> dict[str, Any]:
    """The ``result`` object of one HTTP answer, or the classified :class:`ApiError`."""
    if status != 200:
        reason = f"HTTP {status}"
        if status == 401:
            reason += " (the API key was refused)"
        elif status == 404:
            reason += " (nothing at this URL: is the API URL right? it usually ends in /api)"
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise TransientApiError(method, reason, status=status, retry_after=retry_after(retry_after_header))
        raise PermanentApiError(method, reason, status=status)
    try:
        payload = json.loads(body)
    except ValueError:
        # A 200 that is not JSON comes from something in between (a proxy page):
        # the gateway may answer properly on the next try.
        raise TransientApiError(method, "HTTP 200 with a body that is not JSON", status=status) from None
    if not isinstance(payload, dict):
        raise TransientApiError(method, "HTTP 200 with a body that is not a JSON object", status=status)
    error = payload.get("error")
    if error is not None:
        raise error_of(method, error, status=status)
    if "result" not in payload and "replies" in payload:
        return payload  # ``batch`` answers are not wrapped in "result" (spec §8.2)
    result = payload.get("result", {})
    return result if isinstance(result, dict) else {}


def error_of(method: str, error: Any, *, status: int | None = None) -> ApiError:
    """The classified error for an ``{"error": {...}}`` object (a whole answer or one batch reply)."""
    code, message, temporary = _error_fields(error)
    kind = TransientApiError if temporary or code in TEMPORARY_API_CODES else PermanentApiError
    return kind(method, f"API error {code}: {message}", status=status, code=code)


def _error_fields(error: Any) -> tuple[int, str, bool]:
    if not isinstance(error, dict):
        return 0, repr(error), False
    code = error.get("code")
    return (
        code if isinstance(code, int) else 0,
        str(error.get("message", "")),
        error.get("temporary") is True,
    )


def retry_after(value: str | None) -> float | None:
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


def short_reason(exc: BaseException) -> str:
    """The innermost reason of a network error (``[Errno 111] Connection refused``), bounded."""
    # HTTP libraries wrap the socket error, sometimes twice: the innermost reason is the
    # part worth a log line.
    inner: Any = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    inner = getattr(inner, "reason", None) or getattr(inner, "os_error", None) or inner
    if isinstance(inner, OSError) and inner.errno:
        # asyncio words a refused connection "Connect call failed": name the errno instead.
        return f"[Errno {inner.errno}] {os.strerror(inner.errno)}"
    text = str(inner)
    if "[Errno" in text:
        text = text[text.index("[Errno") :]
    return text if len(text) <= 200 else text[:197] + "..."


def publish_params(
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


def disconnect_params(user: str, client: str, session: str, code: int | None, reason: str) -> dict[str, Any]:
    params: dict[str, Any] = {"user": user}
    if client:
        params["client"] = client
    if session:
        params["session"] = session
    if code is not None:
        params["disconnect"] = {"code": code, "reason": reason}
    return params


def invalidate_params(user: str, issued_before: int | None, expire_at: int | None) -> dict[str, Any]:
    """``issued_before`` defaults to the next whole second: ``iat`` has one-second resolution,
    so "now" would spare a token minted earlier in this same second (decisions §3)."""
    params: dict[str, Any] = {
        "user": user,
        "issued_before": issued_before if issued_before is not None else int(time.time()) + 1,
    }
    if expire_at is not None:
        params["expire_at"] = expire_at
    return params


def revoke_params(uid: str, expire_at: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"uid": uid}
    if expire_at is not None:
        params["expire_at"] = expire_at
    return params


def batch_replies(method: str, result: Mapping[str, Any], expected: int) -> list[dict[str, Any]]:
    """The ``replies`` of a ``batch`` result, one per command, checked for shape."""
    replies = result.get("replies")
    if not isinstance(replies, list) or len(replies) != expected or not all(isinstance(r, dict) for r in replies):
        raise TransientApiError(method, f"malformed response: expected {expected} replies")
    return replies

"""Who may call the proxy views, and what they send: the gateway, with the shared secret.

The gateway adds the secret to every proxy request as a static header (its
``proxy_static_http_headers``, proxy spec §1.1), so a browser that reaches these URLs
directly gets 401/403, never a proxy answer. The comparison runs in constant time.

Bodies are JSON objects (proxy spec §2). Binary mode (``b64data``) is not supported: the
gateway must run with ``proxy_binary_encoding`` off. Every refusal here is an HTTP status
with a JSON body; the gateway turns any non-200 into error 100 for its client (§4).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.cache import add_never_cache_headers

from herald.django.conf import HeraldSettings


class BadCall(Exception):
    """The request is not a proxy call this view can answer; becomes an HTTP error."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def json_response(data: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    add_never_cache_headers(response)
    return response


def check_caller(request: HttpRequest, settings: HeraldSettings) -> None:
    """401 without the secret header, 403 with a wrong one (or none configured)."""
    sent = request.headers.get(settings.proxy_secret_header)
    if sent is None:
        raise BadCall(401, f"the {settings.proxy_secret_header} header is required")
    expected = settings.proxy_secret
    # An unset secret refuses everyone (herald.E019 says so at start-up); compare anyway so
    # the answer takes the same time.
    ok = hmac.compare_digest(sent.encode(), expected.encode())
    if not expected or not ok:
        raise BadCall(403, f"wrong {settings.proxy_secret_header}")


def read_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"")
    except ValueError:
        raise BadCall(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadCall(400, "the body must be a JSON object")
    if "b64data" in body and "data" not in body:
        raise BadCall(400, "binary proxy encoding is not supported: turn proxy_binary_encoding off")
    return body


def string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise BadCall(400, f"{name!r} must be a string")
    if required and name not in body:
        raise BadCall(400, f"{name!r} is required")
    return value

"""Call the gateway's server HTTP API from tests (blocking, no SDK in the way)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.gateway import TEST_API_KEY


def api_raw(
    api_url: str, method: str, body: bytes, headers: dict[str, str] | None = None, http_method: str = "POST"
) -> tuple[int, bytes]:
    url = f"{api_url}/{method}" if method else api_url
    req = urllib.request.Request(url, data=body if http_method == "POST" else None, method=http_method)
    for key, value in (headers if headers is not None else {"X-API-Key": TEST_API_KEY}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def api(api_url: str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST {api}/method; returns the decoded body (``{"result":...}`` or ``{"error":...}``)."""
    status, body = api_raw(api_url, method, json.dumps(params or {}).encode())
    assert status == 200, (status, body)
    decoded: dict[str, Any] = json.loads(body)
    return decoded


def publish(api_url: str, channel: str, data: Any, **extra: Any) -> dict[str, Any]:
    reply = api(api_url, "publish", {"channel": channel, "data": data, **extra})
    assert "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result

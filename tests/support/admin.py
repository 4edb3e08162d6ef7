"""The admin web UI's endpoints from tests: a config that turns it on, log in, post to it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from typing import Any

from tests.support.gateway import GatewayProcess, base_config

ADMIN_PASSWORD = "Tr0ub4dour&3-staple"
ADMIN_SECRET = "admin-test-secret-0123456789abcdef-admin-test-secret"


def admin_config(**overrides: Any) -> dict[str, Any]:
    """The base config with the admin UI on, and a namespace keeping presence and history."""
    cfg = base_config(admin=True, admin_password=ADMIN_PASSWORD, admin_secret=ADMIN_SECRET)
    cfg["namespaces"] = [
        *cfg["namespaces"],
        {"name": "watched", "presence": True, "history_size": 10, "history_ttl": "60s"},
    ]
    cfg.update(overrides)
    return cfg


class Answer:
    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status = status
        self.raw = body
        self.headers = headers

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def cookie(self, name: str) -> Any:
        """The Set-Cookie morsel called ``name`` (None when not set)."""
        jar: SimpleCookie = SimpleCookie()
        for header in self.headers.get_all("Set-Cookie") or []:
            jar.load(header)
        return jar.get(name)


def admin_request(
    gw: GatewayProcess,
    path: str,
    body: Any = None,
    *,
    cookie: str = "",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Answer:
    """``method`` ``/admin/<path>`` with a JSON body (or ``raw`` bytes) and the session cookie."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"{gw.http_url}/admin/{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if cookie:
        req.add_header("Cookie", f"herald_admin={cookie}")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Answer(resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), exc.headers)


def admin_login(gw: GatewayProcess, password: str = ADMIN_PASSWORD) -> str:
    """Log in; the session cookie's value."""
    answer = admin_request(gw, "auth", {"password": password})
    assert answer.status == 200, (answer.status, answer.raw)
    morsel = answer.cookie("herald_admin")
    assert morsel is not None, answer.headers
    return str(morsel.value)


def admin_call(gw: GatewayProcess, cookie: str, method: str, params: dict[str, Any] | None = None) -> Any:
    """A server API method through the admin endpoint; its result (asserting success)."""
    answer = admin_request(gw, f"api/{method}", params or {}, cookie=cookie)
    assert answer.status == 200, (answer.status, answer.raw)
    return answer.json["result"]

"""The async API: apush_event in-process, and the test project under a real ASGI server
(uvicorn) with the async token view, apush_event, a real gateway and the official SDK."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils.crypto import get_random_string

from herald.apiclient import PermanentApiError, TransientApiError, UnencodableData
from herald.django import publisher
from herald.django.publisher import aclose_clients, apush_event, get_async_client
from tests.django_app.models import User
from tests.django_app.support.commands import command_env
from tests.django_app.support.common import unique
from tests.django_app.support.scripted_api import ScriptedApi, forward, forward_then_hold, reply
from tests.django_app.support.sdk import SyncListener
from tests.django_app.support.worker import ROOT
from tests.support.gateway import TEST_API_KEY, GatewayProcess
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.timing import seconds

# -- apush_event in-process ---------------------------------------------------------------------


@pytest.fixture
def at_scripted(scripted: ScriptedApi) -> Iterator[ScriptedApi]:
    with override_settings(REALTIME_API_URL=scripted.url):
        yield scripted


async def test_apush_event_sends_what_push_event_sends(at_scripted: ScriptedApi) -> None:
    result = await apush_event("tenant_1", "order.completed", {"id": 5}, recoverable=True, idempotency_key="k")
    assert result == {"offset": 1, "epoch": "scripted"}
    [seen] = at_scripted.seen()
    assert seen.headers["x-api-key"] == TEST_API_KEY
    assert seen.body == {
        "channel": "critical:test_tenant_1",
        "data": {"type": "order.completed", "payload": {"id": 5}},
        "idempotency_key": "k",
    }


async def test_apush_event_raises_the_same_error_classes(at_scripted: ScriptedApi) -> None:
    at_scripted.script(reply(503), reply(400), reply(200, {"error": {"code": 102, "message": "unknown channel"}}))
    with pytest.raises(TransientApiError, match="HTTP 503"):
        await apush_event("tenant_1", "x", {})
    with pytest.raises(PermanentApiError, match="HTTP 400"):
        await apush_event("tenant_1", "x", {})
    with pytest.raises(PermanentApiError, match="102"):
        await apush_event("tenant_1", "x", {})
    with pytest.raises(UnencodableData):
        await apush_event("tenant_1", "x", {"at": object()})
    with pytest.raises(PermanentApiError, match="event_type"):
        await apush_event("tenant_1", "", {})
    assert len(at_scripted.seen()) == 3


async def test_one_pooled_client_per_loop_closed_with_it(at_scripted: ScriptedApi) -> None:
    first = get_async_client()
    assert get_async_client() is first
    await apush_event("tenant_1", "x", {})
    await apush_event("tenant_1", "x", {})
    assert len({s.peer for s in at_scripted.seen()}) == 1  # one pooled connection
    await aclose_clients()
    assert get_async_client() is not first


def test_a_loop_that_ends_closes_its_client(scripted: ScriptedApi) -> None:
    # async_to_sync and asyncio.run make a loop per call: the client of each is closed when
    # its loop shuts down (an unclosed aiohttp session would warn, and warnings fail tests).
    sessions = []

    async def publish() -> None:
        await apush_event("tenant_1", "x", {})
        sessions.append(get_async_client()._session)

    with override_settings(REALTIME_API_URL=scripted.url):
        asyncio.run(publish())
        asyncio.run(publish())
    assert len(sessions) == 2 and sessions[0] is not sessions[1]
    assert all(s is not None and s.closed for s in sessions)
    assert len(publisher._loop_clients) == 0 or all(not pc.clients for pc in publisher._loop_clients.values())


# -- under an ASGI server ---------------------------------------------------------------------------


class AsgiServer:
    """``uvicorn tests.django_app.asgi:application`` on a free port."""

    def __init__(self, api_url: str, socket_url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {"HERALD_TEST_API_URL": api_url, "HERALD_TEST_SOCKET_URL": socket_url}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "tests.django_app.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--lifespan",
                    "off",
                    "--loop",
                    "asyncio",
                    "--no-access-log",
                ],
                env=command_env(**env),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + seconds(20)
        while True:
            try:
                self.get("/async/ping/", timeout=1)
                return
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"uvicorn did not start:\n{log.read_text()}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float) -> str:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as response:
            return str(response.read().decode())

    def post(self, path: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=seconds(20)) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def close(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def asgi_at(tmp_path: Path) -> Iterator[Callable[[str, str], AsgiServer]]:
    servers: list[AsgiServer] = []

    def start(api_url: str, socket_url: str = "ws://127.0.0.1:9/connection/websocket") -> AsgiServer:
        server = AsgiServer(api_url, socket_url, tmp_path / f"uvicorn{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_under_asgi_the_async_token_view_and_apush_event_reach_the_sdk(
    make_user: Callable[..., User], gateway: GatewayProcess, asgi_at: Callable[..., AsgiServer]
) -> None:
    server = asgi_at(gateway.api_url, gateway.ws_url)
    user = make_user(tenant_id=4242)
    # A session made by Django's test client, in the database the server reads.
    client = Client()
    client.force_login(user)
    csrf = get_random_string(32)
    cookies = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}; csrftoken={csrf}"

    status, body = server.post("/async/realtime/token/", {}, {"Cookie": cookies, "X-CSRFToken": csrf})
    assert status == 200, body
    assert body["socket_url"] == gateway.ws_url
    status, refused = server.post("/async/realtime/token/", {}, {"Cookie": cookies})  # no CSRF header
    assert (status, refused) == (403, {"detail": "CSRF check failed."})

    channel = "critical:test_tenant_4242"
    with SyncListener(gateway.ws_url, str(body["token"])) as listener:
        listener.subscribe(channel)
        status, answer = server.post(
            "/async/publish/", {"channel": "tenant_4242", "type": "order.paid", "payload": {"id": 9}}
        )
        assert status == 200, answer
        assert listener.wait_count(channel, 1) == [{"type": "order.paid", "payload": {"id": 9}}]
    # The same error classes as the sync API, through the server.
    status, answer = server.post("/async/publish/", {"channel": "nosuchns:x", "type": "t", "payload": {}})
    assert (status, answer["transient"]) == (502, False)


def test_under_asgi_a_slow_publish_does_not_block_the_event_loop(
    gateway: GatewayProcess, scripted: ScriptedApi, asgi_at: Callable[..., AsgiServer]
) -> None:
    release = threading.Event()
    scripted.script(forward_then_hold(gateway.api_url, release))
    scripted.default = forward(gateway.api_url)
    server = asgi_at(scripted.url)
    channel = f"tenant_{unique('slow')}"
    answers: list[tuple[int, dict[str, object]]] = []
    publishing = threading.Thread(
        target=lambda: answers.append(server.post("/async/publish/", {"channel": channel, "type": "t", "payload": {}}))
    )
    publishing.start()
    try:
        assert scripted.wait_until(lambda: len(scripted.seen()) == 1, seconds(15))
        # The publish waits on the API; the same process still answers other requests. A
        # blocking publish would hold the loop until the release, and this would time out.
        assert server.get("/async/ping/", timeout=seconds(5)) == "pong"
        assert publishing.is_alive() and not answers
    finally:
        release.set()
        publishing.join(seconds(20))
    [(status, body)] = answers
    assert status == 200, body

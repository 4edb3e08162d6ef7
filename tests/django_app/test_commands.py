"""herald_token, herald_publish, herald_ping and herald_relay, run as ``manage.py`` commands."""

from __future__ import annotations

import json
from collections.abc import Callable

import jwt
import pytest

from tests.django_app.models import User
from tests.django_app.support.commands import manage
from tests.django_app.support.common import unique
from tests.django_app.support.sdk import SyncListener
from tests.support.gateway import TEST_SECRET, GatewayProcess
from tests.support.ports import free_port
from tests.support.tokens import token


def test_herald_token_prints_what_the_view_answers(make_user: Callable[..., User]) -> None:
    user = make_user("carol", tenant_id=3)
    done = manage("herald_token", "carol", env={"HERALD_TEST_SOCKET_URL": "ws://gw.example/connection/websocket"})
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["socket_url"] == "ws://gw.example/connection/websocket"
    claims = jwt.decode(body["token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user.pk)
    assert "critical:test_tenant_3" in claims["channels"]
    assert json.loads(manage("herald_token", "--id", str(user.pk)).stdout)["token"]


@pytest.mark.usefixtures("db")
def test_herald_token_names_a_missing_user() -> None:
    done = manage("herald_token", "nobody")
    assert done.returncode == 1
    assert "no user with username 'nobody'" in done.stderr


def test_herald_publish_reaches_an_sdk_subscriber(gateway: GatewayProcess) -> None:
    name = unique("tenant")
    channel = f"critical:test_{name}"
    env = {"HERALD_TEST_API_URL": gateway.api_url}
    with SyncListener(gateway.ws_url, token("u1", [channel])) as listener:
        listener.subscribe(channel)
        done = manage("herald_publish", name, "order.paid", "-", "--recoverable", env=env, stdin='{"id": 3}')
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["channel"] == channel
        assert listener.wait_count(channel, 1) == [{"type": "order.paid", "payload": {"id": 3}}]
    bad = manage("herald_publish", name, "x", "{not json", env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("CommandError: PAYLOAD is not valid JSON (Expecting property name")
    refused = manage("herald_publish", "nosuchns:x", "x", "{}", env=env)
    assert refused.returncode == 1
    assert "the request itself was refused): API error 102: unknown channel" in refused.stderr


def test_herald_ping_says_ok_or_what_is_wrong(gateway: GatewayProcess) -> None:
    ok = manage("herald_ping", env={"HERALD_TEST_API_URL": gateway.api_url})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: the gateway at {gateway.api_url} accepted REALTIME_API_KEY")

    wrong_key = manage(
        "herald_ping", "--settings", "tests.django_app.settings_wrong_key", env={"HERALD_TEST_API_URL": gateway.api_url}
    )
    assert wrong_key.returncode == 1
    assert "refused REALTIME_API_KEY (HTTP 401)" in wrong_key.stderr

    dead = f"http://127.0.0.1:{free_port()}/api"
    down = manage("herald_ping", env={"HERALD_TEST_API_URL": dead})
    assert down.returncode == 1
    assert f"nothing listens at {dead} (connection refused): is the gateway running" in down.stderr

    wrong_path = manage("herald_ping", env={"HERALD_TEST_API_URL": gateway.http_url})
    assert wrong_path.returncode == 1
    assert "must be the gateway's API base, which ends in /api" in wrong_path.stderr


def test_herald_relay_refuses_bad_options() -> None:
    done = manage("herald_relay", "--database", "nosuch", "--once")
    assert done.returncode == 1
    assert "unknown database 'nosuch'" in done.stderr
    done = manage("herald_relay", "--interval", "0")
    assert done.returncode == 1
    assert "--interval and --prune-every must be positive" in done.stderr

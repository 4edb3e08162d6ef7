"""``herald publish``, ``herald info`` and ``herald disconnect`` against a real gateway process:
results as JSON or a table, every failure one line in words with exit status 1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import api
from tests.support.cli import herald
from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.ports import free_port
from tests.support.raw import RawClient
from tests.support.timing import seconds
from tests.support.tokens import token


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with running_gateway(base_config()) as gateway:
        yield gateway


def cli_config(tmp_path: Path, port: int, **extra: Any) -> str:
    """The operator's config: the gateway's key, address and port; the API URL is derived from them."""
    path = tmp_path / "herald.json"
    path.write_text(json.dumps({"api_key": TEST_API_KEY, "address": "0.0.0.0", "port": port, **extra}))
    return str(path)


async def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """``herald <args>`` without blocking the loop (a client may be reading meanwhile)."""
    result = await asyncio.to_thread(herald, *args, stdin=stdin)
    return result.returncode, result.stdout, result.stderr


def history(gw: GatewayProcess, channel: str) -> list[Any]:
    reply = api(gw.api_url, "history", {"channel": channel, "limit": -1})
    return [pub["data"] for pub in reply["result"]["publications"]]


async def test_publish_prints_the_result_and_the_publication_arrives(gw: GatewayProcess, tmp_path: Path) -> None:
    channel = fresh_channel("critical")
    config = cli_config(tmp_path, gw.port)
    code, out, err = await cli("publish", channel, '{"order": 7, "paid": true}', "--config", config)
    assert code == 0, err
    result = json.loads(out)
    assert result["offset"] == 1 and result["epoch"]
    code, out, err = await cli("publish", channel, "-", "--config", config, stdin='["from", "stdin"]')
    assert code == 0, err
    assert json.loads(out)["offset"] == 2
    assert history(gw, channel) == [{"order": 7, "paid": True}, ["from", "stdin"]]


async def test_publish_reaches_a_subscriber(gw: GatewayProcess, tmp_path: Path) -> None:
    channel = fresh_channel("critical")
    client = await RawClient.open(gw.ws_url)
    try:
        await client.connect(token(channels=[channel]))
        assert "error" not in await client.subscribe(channel)
        code, _, err = await cli(
            "publish", channel, '{"hello": 1}', "--api", gw.api_url, "--config", cli_config(tmp_path, 1)
        )
        assert code == 0, err
        push = await client.push(lambda p: p.get("channel") == channel)
        assert push["pub"]["data"] == {"hello": 1}
    finally:
        await client.close()


async def test_publish_refuses_bad_json_naming_the_problem(gw: GatewayProcess, tmp_path: Path) -> None:
    channel = fresh_channel("critical")
    code, out, err = await cli("publish", channel, "{order: 7}", "--config", cli_config(tmp_path, gw.port))
    assert code == 1 and out == ""
    assert err == (
        "error: the data to publish is not valid JSON: Expecting property name enclosed in double quotes "
        "at line 1, column 2\n"
    )
    assert history(gw, channel) == []


async def test_publish_reports_api_errors_by_code(gw: GatewayProcess, tmp_path: Path) -> None:
    code, out, err = await cli("publish", "nowhere:x", "{}", "--config", cli_config(tmp_path, gw.port))
    assert code == 1 and out == ""
    assert err == f"error: publish at {gw.api_url}: API error 102: unknown channel\n"


async def test_a_wrong_or_missing_api_key_is_named(gw: GatewayProcess, tmp_path: Path) -> None:
    wrong = cli_config(tmp_path, gw.port, api_key="not-the-key-not-the-key-not-the-key")
    code, _, err = await cli("publish", fresh_channel("critical"), "{}", "--config", wrong)
    assert code == 1 and "refused the API key (HTTP 401)" in err
    (tmp_path / "nokey.json").write_text(json.dumps({"port": gw.port}))
    code, _, err = await cli("info", "--config", str(tmp_path / "nokey.json"))
    assert code == 1 and f"api_key is not set in {tmp_path / 'nokey.json'}" in err and "HERALD_API_KEY" in err


async def test_an_unreachable_gateway_is_said_in_words(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = cli_config(tmp_path, port)
    for command in (["publish", "critical:x", "{}"], ["info"], ["disconnect", "5"]):
        code, out, err = await cli(*command, "--config", config)
        assert code == 1 and out == "", command
        assert err.startswith(f"error: cannot reach the gateway at http://127.0.0.1:{port}/api: connection failed")
        assert "Connection refused" in err and "Traceback" not in err
    code, _, err = await cli("info", "--config", config, "--api", "gateway:8000/api")
    assert code == 1 and "--api must be an http:// or https:// URL" in err


async def test_info_shows_nodes_and_counts() -> None:
    with running_gateway(base_config(name="node-under-test")) as gw:
        clients = []
        try:
            for user in ("a", "b"):
                client = await RawClient.open(gw.ws_url)
                await client.connect(token(user=user, channels=["news"]))
                await client.subscribe("news")
                clients.append(client)
            code, out, err = await cli("info", "--api", gw.api_url, "--config", _key_only(gw))
            assert code == 0, err
            header, row, total = out.splitlines()
            assert header.split() == ["NODE", "CLIENTS", "USERS", "CHANNELS", "SUBS", "UPTIME", "VERSION"]
            assert row.split()[:5] == ["node-under-test", "2", "2", "1", "2"]
            assert total == "1 node: 2 clients, 2 users, 2 subscriptions"
            code, out, _ = await cli("info", "--json", "--api", gw.api_url, "--config", _key_only(gw))
            assert code == 0 and json.loads(out)["nodes"][0]["num_clients"] == 2
        finally:
            for client in clients:
                await client.close()


def _key_only(gw: GatewayProcess) -> str:
    path = gw.config_path.with_name("cli.json")
    path.write_text(json.dumps({"api_key": TEST_API_KEY}))
    return str(path)


async def test_disconnect_closes_the_users_connections(gw: GatewayProcess, tmp_path: Path) -> None:
    config = cli_config(tmp_path, gw.port)
    target, bystander = await RawClient.open(gw.ws_url), await RawClient.open(gw.ws_url)
    try:
        await target.connect(token(user="to-disconnect"))
        await bystander.connect(token(user="bystander", channels=["news"]))
        code, out, err = await cli("disconnect", "to-disconnect", "--config", config)
        assert code == 0, err
        assert out == "disconnected every connection of user 'to-disconnect'\n"
        assert await target.closed(timeout=seconds(5)) == (3503, "force disconnect")
        # Only that user: the other connection still answers.
        assert "error" not in await bystander.subscribe("news")
        again = await RawClient.open(gw.ws_url)
        await again.connect(token(user="to-disconnect"))
        code, _, err = await cli(
            "disconnect", "to-disconnect", "--code", "4001", "--reason", "moved", "--config", config
        )
        assert code == 0, err
        assert await again.closed(timeout=seconds(5)) == (4001, "moved")
    finally:
        await target.close()
        await bystander.close()
    code, _, err = await cli("disconnect", "x", "--code", "1000", "--config", config)
    assert code == 2 and "code must be between 3000 and 4999" in err

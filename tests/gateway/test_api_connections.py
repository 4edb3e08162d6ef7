"""The server API's ``connections`` method (Centrifugo PRO's name and shape) on ``/api``:
through ``cent``-style calls, the legacy endpoint, and keys bound to an environment prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jwt
import pytest

from herald.tokens import mint_connection_token
from tests.support.api import api, api_raw
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.tokens import token

STAGING_KEY = "staging-api-key"
STAGING_SECRET = "staging-secret-staging-secret-staging-secret-0123456789"


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    cfg = base_config(
        api_keys=[{"key": STAGING_KEY, "channel_prefix": "staging_"}],
        token_hmac_secret_keys=[{"key": STAGING_SECRET, "channel_prefix": "staging_"}],
    )
    with running_gateway(cfg) as gateway:
        yield gateway


async def test_connections_lists_a_users_connections_with_their_token_and_channels(gw: GatewayProcess) -> None:
    first = await RawClient.open(gw.ws_url)
    minted = token(user="list-me", channels=["tenant_42"], info={"device": "a"})
    claims = jwt.decode(minted, options={"verify_signature": False})
    connected = await first.connect(minted)
    await first.subscribe("tenant_42")
    second = await RawClient.open(gw.ws_url)
    await second.connect(token(user="list-me", channels=[]))
    other = await RawClient.open(gw.ws_url)
    await other.connect(token(user="someone-else"))

    found = api(gw.api_url, "connections", {"user": "list-me"})["result"]["connections"]
    assert len(found) == 2
    mine = found[connected["connect"]["client"]]
    assert mine["user"] == "list-me" and mine["channels"] == ["tenant_42"] and mine["protocol"] == "json"
    assert (mine["token_uid"], mine["token_issued_at"]) == (claims["jti"], claims["iat"]) and mine["info"] == {
        "device": "a"
    }
    assert mine["node"] == api(gw.api_url, "info")["result"]["nodes"][0]["name"]

    # The legacy single endpoint knows it by name too.
    status, body = api_raw(gw.api_url, "", b'{"id":1,"method":"connections","params":{"user":"list-me"}}')
    assert status == 200 and set(json.loads(body)["result"]["connections"]) == set(found)
    for client in (first, second, other):
        await client.close()


async def test_a_key_bound_to_a_prefix_sees_only_its_environments_connections(gw: GatewayProcess) -> None:
    prod = await RawClient.open(gw.ws_url)
    await prod.connect(token(user="both-envs"))
    staging = await RawClient.open(gw.ws_url)
    reply = await staging.connect(mint_connection_token(STAGING_SECRET, "both-envs", channels=[], ttl=600))
    status, body = api_raw(gw.api_url, "connections", b'{"user":"both-envs"}', headers={"X-API-Key": STAGING_KEY})
    assert status == 200 and list(json.loads(body)["result"]["connections"]) == [reply["connect"]["client"]]
    assert len(api(gw.api_url, "connections", {"user": "both-envs"})["result"]["connections"]) == 2
    for client in (prod, staging):
        await client.close()


@pytest.mark.parametrize("params", [{}, {"user": ""}, {"user": "5", "expression": "user == '5'"}])
def test_connections_without_a_user_or_with_a_filter_is_107(gw: GatewayProcess, params: dict[str, str]) -> None:
    assert api(gw.api_url, "connections", params) == {"error": {"code": 107, "message": "bad request"}}

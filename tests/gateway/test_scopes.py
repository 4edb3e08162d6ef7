"""Environment prefixes enforced by credentials (decisions §2): keys and secrets bound to a prefix."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import jwt
import pytest

from herald.tokens import mint_connection_token, mint_subscription_token
from tests.support.api import api_raw
from tests.support.gateway import TEST_API_KEY, TEST_SECRET, GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient

STAGING_KEY = "staging-api-key"
STAGING_SECRET = "staging-secret-staging-secret-staging-secret-0123456789"
PROD_SECRET = "prod-secret-prod-secret-prod-secret-prod-secret-0123456789"


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    cfg = base_config(
        api_keys=[{"key": STAGING_KEY, "channel_prefix": "staging_"}],
        token_hmac_secret_keys=[
            {"key": STAGING_SECRET, "channel_prefix": "staging_"},
            {"key": PROD_SECRET, "channel_prefix": "prod_"},
        ],
    )
    with running_gateway(cfg) as gateway:
        yield gateway


def call(gw: GatewayProcess, method: str, params: dict[str, object], key: str = STAGING_KEY) -> dict[str, object]:
    status, body = api_raw(gw.api_url, method, json.dumps(params).encode(), headers={"X-API-Key": key})
    assert status == 200, (status, body)
    decoded: dict[str, object] = json.loads(body)
    return decoded


def test_a_scoped_api_key_publishes_only_inside_its_prefix(gw: GatewayProcess) -> None:
    assert "result" in call(gw, "publish", {"channel": "staging_tenant_42", "data": {}})
    assert "result" in call(gw, "publish", {"channel": "critical:staging_tenant_42", "data": {}})
    denied = {"error": {"code": 103, "message": "permission denied"}}
    assert call(gw, "publish", {"channel": "prod_tenant_42", "data": {}}) == denied
    assert call(gw, "publish", {"channel": "critical:prod_tenant_42", "data": {}}) == denied
    assert call(gw, "history", {"channel": "critical:prod_tenant_42"}) == denied
    assert call(gw, "subscribe", {"user": "5", "channel": "prod_tenant_42"}) == denied
    result = call(gw, "broadcast", {"channels": ["staging_a", "prod_a"], "data": {}})["result"]
    assert isinstance(result, dict)
    assert [sorted(r) for r in result["responses"]] == [["result"], ["error"]]
    # The unbound key reaches everything.
    assert "result" in call(gw, "publish", {"channel": "prod_tenant_42", "data": {}}, key=TEST_API_KEY)


def test_a_wrong_key_is_still_401(gw: GatewayProcess) -> None:
    assert api_raw(gw.api_url, "publish", b"{}", headers={"X-API-Key": "nope"})[0] == 401


async def test_grants_signed_with_a_scoped_secret_stay_inside_the_prefix(gw: GatewayProcess) -> None:
    tok = mint_connection_token(STAGING_SECRET, "5", channels=["staging_tenant_42", "prod_tenant_42"])
    c = await RawClient.open(gw.ws_url)
    assert "connect" in await c.connect(tok)
    assert "subscribe" in await c.subscribe("staging_tenant_42")
    assert (await c.subscribe("prod_tenant_42"))["error"] == {"code": 103, "message": "permission denied"}
    outside = mint_subscription_token(STAGING_SECRET, "5", "prod_other")
    assert (await c.subscribe("prod_other", token=outside))["error"]["code"] == 103
    inside = mint_subscription_token(STAGING_SECRET, "5", "staging_other")
    assert "subscribe" in await c.subscribe("staging_other", token=inside)
    await c.close()


# --- a key scoped to one environment never reaches another environment's connections or tokens


class Env:
    """One connection of user 5 holding a token of one environment, subscribed to one channel."""

    def __init__(self, client: RawClient, channel: str, token: str, client_id: str, user: str) -> None:
        self.user = user
        self.client = client
        self.channel = channel
        self.token = token
        self.client_id = client_id

    @classmethod
    async def open(cls, gw: GatewayProcess, secret: str, channel: str, user: str) -> Env:
        token = mint_connection_token(secret, user, channels=[channel])
        client = await RawClient.open(gw.ws_url)
        reply = await client.connect(token)
        assert "subscribe" in await client.subscribe(channel)
        return cls(client, channel, token, reply["connect"]["client"], user)

    async def still_open(self, gw: GatewayProcess) -> None:
        """A round trip through the gateway: a publication (with the unbound key) arrives."""
        marker = uuid.uuid4().hex
        assert "result" in call(gw, "publish", {"channel": self.channel, "data": {"m": marker}}, key=TEST_API_KEY)
        push = await self.client.push(lambda p: p.get("channel") == self.channel)
        assert push["pub"]["data"] == {"m": marker}

    async def token_still_connects(self, gw: GatewayProcess) -> None:
        again = await RawClient.open(gw.ws_url)
        try:
            assert "connect" in await again.connect(self.token)
        finally:
            await again.close()


def staging_channel() -> str:
    return f"staging_{uuid.uuid4().hex[:8]}"


def prod_channel() -> str:
    return f"prod_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def envs(gw: GatewayProcess) -> AsyncIterator[tuple[Env, Env, Env]]:
    """A user (new in each test) connected three times: with a staging token, a prod token, and an
    unbound token (the main secret) that happens to grant a staging channel."""
    user = uuid.uuid4().hex[:8]
    staging = await Env.open(gw, STAGING_SECRET, staging_channel(), user)
    prod = await Env.open(gw, PROD_SECRET, prod_channel(), user)
    unbound = await Env.open(gw, TEST_SECRET, staging_channel(), user)
    yield staging, prod, unbound
    for env in (staging, prod, unbound):
        await env.client.close()


async def test_scoped_disconnect_reaches_only_its_environment(gw: GatewayProcess, envs: tuple[Env, Env, Env]) -> None:
    staging, prod, unbound = envs
    assert call(gw, "disconnect", {"client": prod.client_id}) == {"result": {}}
    assert call(gw, "disconnect", {"user": staging.user}) == {"result": {}}
    assert await staging.client.closed() == (3503, "force disconnect")
    await prod.still_open(gw)
    await unbound.still_open(gw)


async def test_scoped_refresh_reaches_only_its_environment(gw: GatewayProcess, envs: tuple[Env, Env, Env]) -> None:
    staging, prod, unbound = envs
    assert call(gw, "refresh", {"user": staging.user, "expired": True}) == {"result": {}}
    assert await staging.client.closed() == (3005, "connection expired")
    await prod.still_open(gw)
    await unbound.still_open(gw)


async def test_scoped_invalidate_user_tokens_reaches_only_its_environment(
    gw: GatewayProcess, envs: tuple[Env, Env, Env]
) -> None:
    staging, prod, unbound = envs
    assert call(gw, "invalidate_user_tokens", {"user": staging.user, "issued_before": int(time.time()) + 5}) == {
        "result": {}
    }
    assert await staging.client.closed() == (3005, "connection expired")
    await prod.still_open(gw)
    await unbound.still_open(gw)
    await prod.token_still_connects(gw)
    await unbound.token_still_connects(gw)
    refused = await RawClient.open(gw.ws_url)
    assert (await refused.connect(staging.token))["error"]["code"] == 109
    await refused.close()


async def test_scoped_revoke_token_reaches_only_its_environment(gw: GatewayProcess, envs: tuple[Env, Env, Env]) -> None:
    staging, prod, unbound = envs
    for env in (prod, unbound):
        jti = jwt.decode(env.token, options={"verify_signature": False})["jti"]
        assert call(gw, "revoke_token", {"uid": jti}) == {"result": {}}
        await env.still_open(gw)
        await env.token_still_connects(gw)
    jti = jwt.decode(staging.token, options={"verify_signature": False})["jti"]
    assert call(gw, "revoke_token", {"uid": jti}) == {"result": {}}
    assert await staging.client.closed() == (3005, "connection expired")


async def test_scoped_unsubscribe_and_subscribe_reach_only_their_environment(
    gw: GatewayProcess, envs: tuple[Env, Env, Env]
) -> None:
    staging, prod, unbound = envs
    denied = {"error": {"code": 103, "message": "permission denied"}}
    assert call(gw, "unsubscribe", {"user": staging.user, "channel": prod.channel}) == denied
    assert call(gw, "subscribe", {"user": staging.user, "channel": prod.channel}) == denied
    # A staging channel held by the unbound connection: the staging key must not touch it.
    assert call(gw, "unsubscribe", {"user": staging.user, "channel": unbound.channel}) == {"result": {}}
    await unbound.still_open(gw)  # still subscribed: the publication arrived
    extra = staging_channel()
    assert call(gw, "subscribe", {"user": staging.user, "channel": extra}) == {"result": {}}
    pushed = await staging.client.push(lambda p: "subscribe" in p)
    assert pushed["channel"] == extra
    assert call(gw, "unsubscribe", {"user": staging.user, "channel": staging.channel}) == {"result": {}}
    gone = await staging.client.push(lambda p: "unsubscribe" in p)
    assert gone == {"channel": staging.channel, "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    # Neither the prod nor the unbound connection got a subscribe push for the staging channel.
    for env in (prod, unbound):
        await env.still_open(gw)
        assert not [p for p in env.client.pushes if "subscribe" in p or "unsubscribe" in p]


async def test_scoped_batch_carries_its_scope_into_every_command(
    gw: GatewayProcess, envs: tuple[Env, Env, Env]
) -> None:
    staging, prod, unbound = envs
    reply = call(
        gw,
        "batch",
        {"commands": [{"disconnect": {"user": staging.user}}, {"publish": {"channel": prod.channel, "data": {}}}]},
    )
    assert reply == {"replies": [{"disconnect": {}}, {"error": {"code": 103, "message": "permission denied"}}]}
    assert await staging.client.closed() == (3503, "force disconnect")
    await prod.still_open(gw)
    await unbound.still_open(gw)


async def test_scoped_reads_see_only_their_environment(gw: GatewayProcess, envs: tuple[Env, Env, Env]) -> None:
    staging, prod, _ = envs
    denied = {"error": {"code": 103, "message": "permission denied"}}
    for method in ("presence", "presence_stats", "history", "history_remove"):
        assert call(gw, method, {"channel": f"critical:{prod.channel}"}) == denied, method
    channels = call(gw, "channels", {})["result"]
    assert isinstance(channels, dict)
    assert staging.channel in channels["channels"]
    assert prod.channel not in channels["channels"]
    nodes = call(gw, "info", {})["result"]
    assert isinstance(nodes, dict) and nodes["nodes"]


async def test_a_refresh_token_from_another_environment_ends_the_connection(gw: GatewayProcess) -> None:
    staging = await Env.open(gw, STAGING_SECRET, staging_channel(), "5")
    other = mint_connection_token(PROD_SECRET, "5", channels=[prod_channel()])
    await staging.client.send(json.dumps({"id": 99, "refresh": {"token": other}}))
    assert await staging.client.closed() == (3500, "invalid token")


def test_invalidating_one_channels_tokens_is_refused_not_widened(gw: GatewayProcess) -> None:
    reply = call(gw, "invalidate_user_tokens", {"user": "5", "channel": "staging_x"}, key=TEST_API_KEY)
    assert reply == {"error": {"code": 107, "message": "bad request"}}

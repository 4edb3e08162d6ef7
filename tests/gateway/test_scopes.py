"""Environment prefixes enforced by credentials (decisions §2): keys and secrets bound to a prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from herald.tokens import mint_connection_token, mint_subscription_token
from tests.support.api import api_raw
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient

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
    from tests.support.gateway import TEST_API_KEY

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

"""Token verification without a gateway: claims, hardening, the verified-token cache, scopes."""

from __future__ import annotations

import time

import jwt
import pytest

from herald.tokens import (
    InvalidToken,
    TokenExpired,
    TokenVerifier,
    VerifierKeys,
    mint_connection_token,
    mint_subscription_token,
)

SECRET = "unit-test-secret-unit-test-secret-unit-test-secret-0123456789"


def test_minted_connection_token_round_trips() -> None:
    verifier = TokenVerifier(VerifierKeys(hmac_secret=SECRET))
    tok = mint_connection_token(SECRET, "5", channels=["a", "b"], ttl=60, info={"name": "Ann"})
    claims = verifier.verify_connection(tok)
    assert claims.user == "5" and claims.channels == ("a", "b")
    assert claims.info == b'{"name":"Ann"}' and claims.jti and claims.iat
    assert claims.exp is not None and claims.expires_at == claims.exp


def test_cache_returns_verified_claims_until_exp() -> None:
    verifier = TokenVerifier(VerifierKeys(hmac_secret=SECRET), cache_size=10)
    now = time.time()
    tok = mint_connection_token(SECRET, "5", ttl=10, now=now)
    first = verifier.verify_connection(tok, now)
    assert verifier.verify_connection(tok, now + 1) is first  # served from the cache
    with pytest.raises(TokenExpired):
        verifier.verify_connection(tok, now + 11)


def test_cache_is_bounded() -> None:
    verifier = TokenVerifier(VerifierKeys(hmac_secret=SECRET), cache_size=2)
    tokens = [mint_connection_token(SECRET, str(i)) for i in range(3)]
    claims = [verifier.verify_connection(t) for t in tokens]
    assert verifier.verify_connection(tokens[2]) is claims[2]
    assert verifier.verify_connection(tokens[0]) is not claims[0]  # evicted, verified again


def test_cache_never_accepts_a_forged_variant() -> None:
    verifier = TokenVerifier(VerifierKeys(hmac_secret=SECRET), cache_size=10)
    tok = mint_connection_token(SECRET, "5")
    verifier.verify_connection(tok)
    head, body, sig = tok.split(".")
    # A middle character: every one of its six bits is signature (the last character's low bits
    # are padding, so changing it could decode to the very same signature).
    middle = len(sig) // 2
    forged = sig[:middle] + ("B" if sig[middle] == "A" else "A") + sig[middle + 1 :]
    assert forged != sig
    with pytest.raises(InvalidToken):
        verifier.verify_connection(f"{head}.{body}.{forged}")


def test_scoped_secret_drops_grants_outside_its_prefix() -> None:
    staging = "staging-secret-staging-secret-staging-secret-01"
    verifier = TokenVerifier(
        VerifierKeys(hmac_secret=SECRET, scoped_hmac_secrets=((staging, "staging_"),)),
        in_scope=lambda ch, prefix: ch.split(":", 1)[-1].startswith(prefix),
    )
    claims = verifier.verify_connection(
        mint_connection_token(staging, "5", channels=["staging_t1", "critical:staging_t1", "prod_t1"])
    )
    assert claims.channels == ("staging_t1", "critical:staging_t1")
    unscoped = verifier.verify_connection(mint_connection_token(SECRET, "5", channels=["prod_t1"]))
    assert unscoped.channels == ("prod_t1",)
    with pytest.raises(InvalidToken):
        verifier.verify_subscription(mint_subscription_token(staging, "5", "prod_t1"))
    assert verifier.verify_subscription(mint_subscription_token(staging, "5", "staging_t1")).channel == "staging_t1"


def test_unknown_secret_is_invalid_even_with_several_configured() -> None:
    verifier = TokenVerifier(VerifierKeys(hmac_secret=SECRET, scoped_hmac_secrets=(("x" * 40, "p_"),)))
    with pytest.raises(InvalidToken):
        verifier.verify_connection(mint_connection_token("y" * 40, "5"))


def test_subscription_token_options() -> None:
    verifier = TokenVerifier(VerifierKeys(hmac_secret=SECRET))
    tok = jwt.encode(
        {
            "sub": "5",
            "channel": "room",
            "exp": int(time.time()) + 60,
            "info": {"role": "admin"},
            "b64data": "eyJrIjoxfQ==",
            "override": {"presence": {"value": True}},
        },
        SECRET,
    )
    claims = verifier.verify_subscription(tok)
    assert claims.options.info == b'{"role":"admin"}' and claims.options.data == b'{"k":1}'
    assert claims.options.override == {"presence": True}
    bad = jwt.encode({"sub": "5", "channel": "room", "exp": int(time.time()) + 60, "b64info": "!!"}, SECRET)
    with pytest.raises(InvalidToken):
        verifier.verify_subscription(bad)


def test_tokens_without_exp_need_explicit_permission() -> None:
    tok = mint_connection_token(SECRET, "5", ttl=None)
    with pytest.raises(InvalidToken):
        TokenVerifier(VerifierKeys(hmac_secret=SECRET)).verify_connection(tok)
    claims = TokenVerifier(VerifierKeys(hmac_secret=SECRET, allow_without_exp=True)).verify_connection(tok)
    assert claims.exp is None and claims.expires_at is None


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "RS256", "ES256"])
def test_an_hmac_only_verifier_refuses_every_other_algorithm(alg: str) -> None:
    import base64
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = {"sub": "5", "exp": int(time.time()) + 60}
    forged = f"{b64(json.dumps({'alg': alg}).encode())}.{b64(json.dumps(body).encode())}.{b64(b'sig')}"
    with pytest.raises(InvalidToken):
        TokenVerifier(VerifierKeys(hmac_secret=SECRET)).verify_connection(forged)


def test_a_token_naming_its_own_key_is_refused_even_when_validly_signed() -> None:
    tok = jwt.encode({"sub": "5", "exp": int(time.time()) + 60}, SECRET, headers={"jku": "https://evil.example/k"})
    with pytest.raises(InvalidToken, match="jku"):
        TokenVerifier(VerifierKeys(hmac_secret=SECRET)).verify_connection(tok)

"""Connection and subscription JWTs: minted by the Django side, verified by the gateway.

No I/O: verification needs only the configured keys and a clock, so a reconnect storm
costs signature checks and nothing else (decisions §5).

Hardening beyond the reference (decisions §4): the algorithm is pinned to the kind of key
configured (an HMAC secret allows only HS*, an RSA key only RS*, an EC key only ES*), so
``none`` and HS-signed-with-the-public-key confusion cannot pass; tokens naming their own
key (``jwk``, ``jku``, ``x5u``, ``x5c``) are refused; tokens without ``exp`` are refused
unless explicitly allowed. A token is refused unless it is written as a compact JWS (three
base64url segments, no padding or whitespace), and time claims outside int64 or strings that
are no Unicode are claims of the wrong type.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
import msgspec

HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512")
EC_ALGORITHMS: Final = ("ES256", "ES384", "ES512")
_EC_ALGORITHM_BY_CURVE: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_FORBIDDEN_HEADERS: Final = ("jwk", "jku", "x5u", "x5c")
_OVERRIDE_KEYS: Final = ("presence", "join_leave", "force_push_join_leave", "force_recovery", "force_positioning")
# A compact JWS: three base64url segments, without padding or whitespace (RFC 7515 §2, §7.1). The
# base64 decoder would accept a padded signature, so one token would have many spellings.
_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
# Time claims are int64 in the reference (spec §4.2): a value outside is a claim of the wrong type.
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class TokenError(Exception):
    """Base of token problems; the message is for logs, never for clients."""


class InvalidToken(TokenError):
    """Bad signature, bad shape, disabled algorithm, wrong audience/issuer (spec §4.3)."""


class TokenExpired(TokenError):
    """``exp`` passed or ``nbf`` not reached: the SDK fetches a new token (error 109)."""


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """Per-channel extras from a token (``subs`` entries or a subscription token)."""

    info: bytes | None = None
    data: bytes | None = None
    # Namespace option overrides: name -> value (spec §4.2 ``override``).
    override: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConnectionClaims:
    user: str
    exp: int | None
    # When the connection expires: ``expire_at`` if given (0 = never), else ``exp``.
    expires_at: int | None
    iat: int | None
    jti: str
    info: bytes | None
    channels: tuple[str, ...]
    subs: Mapping[str, SubscriptionOptions]
    # The environment prefix of the secret that verified the token ("" = an unbound key): a
    # connection belongs to that environment, and a scoped API key reaches only its own.
    scope: str = ""


@dataclass(frozen=True, slots=True)
class SubscriptionClaims:
    user: str
    channel: str
    client: str
    exp: int | None
    expires_at: int | None
    iat: int | None
    jti: str
    options: SubscriptionOptions
    scope: str = ""


@dataclass(frozen=True, slots=True)
class VerifierKeys:
    hmac_secret: str = ""
    # (secret, environment prefix): tokens signed with such a secret only grant channels inside
    # the prefix (decisions §2).
    scoped_hmac_secrets: tuple[tuple[str, str], ...] = ()
    rsa_public_key: str = ""
    ecdsa_public_key: str = ""
    audience: str = ""
    issuer: str = ""
    allow_without_exp: bool = False
    # Tokens longer than this are refused before any decoding (0 = no limit).
    max_size: int = 0


class TokenVerifier:
    """Verifies tokens against the configured keys; caches verified claims until ``exp``."""

    def __init__(
        self,
        keys: VerifierKeys,
        cache_size: int = 0,
        in_scope: Callable[[str, str], bool] = lambda channel, prefix: channel.startswith(prefix),
    ) -> None:
        self._keys = keys
        self._in_scope = in_scope
        # alg -> candidate (key, scope prefix) pairs, tried in order until a signature matches.
        self._by_alg: dict[str, list[tuple[Any, str]]] = {}
        hmac_keys = ([(keys.hmac_secret, "")] if keys.hmac_secret else []) + list(keys.scoped_hmac_secrets)
        if hmac_keys:
            for alg in HMAC_ALGORITHMS:
                self._by_alg[alg] = hmac_keys
        # PEM keys are parsed once here rather than on every verification.
        if keys.rsa_public_key:
            rsa_key = load_public_key(keys.rsa_public_key, "rsa")
            for alg in RSA_ALGORITHMS:
                self._by_alg[alg] = [(rsa_key, "")]
        if keys.ecdsa_public_key:
            # An EC key fixes its algorithm: P-256 signs ES256, P-384 ES384, P-521 ES512.
            ec_key = load_public_key(keys.ecdsa_public_key, "ec")
            self._by_alg[_EC_ALGORITHM_BY_CURVE.get(ec_key.curve.name, "")] = [(ec_key, "")]
        families = {id(candidates): candidates for candidates in self._by_alg.values()}
        self._single_family: list[tuple[Any, str]] | None = (
            next(iter(families.values())) if len(families) == 1 else None
        )
        self._cache_size = cache_size
        self._conn_cache: dict[str, ConnectionClaims] = {}
        self._jwt = jwt.PyJWT()

    @property
    def configured(self) -> bool:
        return bool(self._by_alg)

    def _check_size(self, token: str) -> None:
        if self._keys.max_size and len(token) > self._keys.max_size:
            raise InvalidToken(f"token longer than {self._keys.max_size} characters")

    def _decode(self, token: str, now: float) -> tuple[dict[str, Any], str]:
        """Verified claims and the environment prefix of the key that signed them ("" = any)."""
        if _COMPACT_JWS.fullmatch(token) is None:
            raise InvalidToken("token must have three base64url segments")
        if self._single_family is not None:
            # One kind of key (the usual HMAC-only setup): the library pins the algorithms and
            # the header is checked after decoding, so it is parsed once, not twice.
            candidates, algorithms = self._single_family, list(self._by_alg)
        else:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError as exc:
                raise InvalidToken(f"bad header: {exc}") from None
            except RecursionError:
                raise InvalidToken("header nested too deeply") from None
            alg = header.get("alg")
            if not isinstance(alg, str) or alg not in self._by_alg:
                raise InvalidToken(f"algorithm {alg!r} is not enabled")
            candidates, algorithms = self._by_alg[alg], [alg]
        required = [] if self._keys.allow_without_exp else ["exp"]
        options: dict[str, Any] = {"require": required, "verify_aud": bool(self._keys.audience)}
        for i, (key, scope) in enumerate(candidates):
            try:
                decoded = self._jwt.decode_complete(
                    token,
                    key,
                    algorithms=algorithms,
                    audience=self._keys.audience or None,
                    issuer=self._keys.issuer or None,
                    options=options,  # type: ignore[arg-type]
                    leeway=0,
                )
            except jwt.InvalidSignatureError as exc:
                if i + 1 < len(candidates):
                    continue  # signed with another of the configured secrets, perhaps
                raise InvalidToken(str(exc)) from None
            except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
                # A not-yet-valid token is reported as expired too (spec §4.2).
                raise TokenExpired(str(exc)) from None
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc)) from None
            except (ValueError, TypeError) as exc:  # key/alg mismatch inside cryptography
                raise InvalidToken(str(exc)) from None
            except RecursionError:  # claims nested deeper than the JSON parser goes
                raise InvalidToken("claims nested too deeply") from None
            for name in _FORBIDDEN_HEADERS:
                if name in decoded["header"]:
                    raise InvalidToken(f"header {name!r} is not accepted")
            claims = decoded["payload"]
            if not isinstance(claims, dict):
                raise InvalidToken("claims are not an object")
            return claims, scope
        raise InvalidToken("no key verifies the signature")

    def verify_connection(self, token: str, now: float | None = None) -> ConnectionClaims:
        now = time.time() if now is None else now
        self._check_size(token)  # before the cache: an oversized token is never even hashed
        cached = self._conn_cache.get(token)
        if cached is not None:
            if cached.exp is not None and cached.exp <= now:
                del self._conn_cache[token]
                raise TokenExpired("token expired")
            return cached
        claims, scope = self._decode(token, now)
        if "channel" in claims:
            raise InvalidToken("a connection token must not carry a 'channel' claim")
        user = _str_claim(claims, "sub")
        exp = _int_claim(claims, "exp")
        expire_at = _int_claim(claims, "expire_at")
        subs_claim = claims.get("subs")
        subs: dict[str, SubscriptionOptions] = {}
        if subs_claim is not None:
            if not isinstance(subs_claim, dict):
                raise InvalidToken("'subs' must be an object")
            for channel, opts in subs_claim.items():
                if not isinstance(opts, dict):
                    raise InvalidToken("'subs' entries must be objects")
                subs[channel] = _subscription_options(opts)
        channels_claim = claims.get("channels", [])
        if not isinstance(channels_claim, list) or not all(isinstance(c, str) for c in channels_claim):
            raise InvalidToken("'channels' must be a list of strings")
        if scope:  # a prefix-bound secret grants nothing outside its prefix (decisions §2)
            channels_claim = [c for c in channels_claim if self._in_scope(c, scope)]
            subs = {c: opts for c, opts in subs.items() if self._in_scope(c, scope)}
        result = ConnectionClaims(
            user=user,
            exp=exp,
            expires_at=_effective_expiry(exp, expire_at),
            iat=_int_claim(claims, "iat"),
            jti=_str_claim(claims, "jti"),
            info=_info(claims, "info", "b64info"),
            channels=tuple(channels_claim),
            subs=subs,
            scope=scope,
        )
        if self._cache_size and exp is not None:
            if len(self._conn_cache) >= self._cache_size:
                # Drop the oldest entry (dicts keep insertion order).
                self._conn_cache.pop(next(iter(self._conn_cache)))
            self._conn_cache[token] = result
        return result

    def verify_subscription(self, token: str, now: float | None = None) -> SubscriptionClaims:
        now = time.time() if now is None else now
        self._check_size(token)
        claims, scope = self._decode(token, now)
        channel = _str_claim(claims, "channel")
        if not channel:
            raise InvalidToken("a subscription token needs a 'channel' claim")
        if scope and not self._in_scope(channel, scope):
            raise InvalidToken(f"the signing secret is bound to {scope!r}, the channel is outside it")
        exp = _int_claim(claims, "exp")
        return SubscriptionClaims(
            user=_str_claim(claims, "sub"),
            channel=channel,
            client=_str_claim(claims, "client"),
            exp=exp,
            expires_at=_effective_expiry(exp, _int_claim(claims, "expire_at")),
            iat=_int_claim(claims, "iat"),
            jti=_str_claim(claims, "jti"),
            options=_subscription_options(claims),
            scope=scope,
        )


def load_public_key(pem: str, kind: str) -> Any:
    """Parse a PEM public key of the given kind ("rsa" or "ec"); ValueError names the problem."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    expected = rsa.RSAPublicKey if kind == "rsa" else ec.EllipticCurvePublicKey
    if not isinstance(key, expected):
        raise ValueError(f"not an {kind.upper()} public key")
    return key


def _effective_expiry(exp: int | None, expire_at: int | None) -> int | None:
    if expire_at is not None:
        return expire_at or None  # 0 means "never expires" (exp is still verified)
    return exp


def _str_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name, "")
    if not isinstance(value, str):
        raise InvalidToken(f"'{name}' must be a string")
    if not value.isascii():
        _check_unicode(value, name)  # a lone surrogate escape would fail every later encoding
    return value


def _check_unicode(value: str, name: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidToken(f"'{name}' is not valid Unicode") from None


def _int_claim(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"'{name}' must be a number")
    if not (math.isfinite(value) and _INT64_MIN <= value <= _INT64_MAX):
        raise InvalidToken(f"'{name}' is out of range")
    return int(value)


def _info(claims: Mapping[str, Any], json_key: str, b64_key: str) -> bytes | None:
    """Embedded JSON from ``info`` or (taking precedence) base64 ``b64info``."""
    b64 = claims.get(b64_key)
    if b64 is not None:
        if not isinstance(b64, str):
            raise InvalidToken(f"'{b64_key}' must be a base64 string")
        try:
            raw = base64.b64decode(b64, validate=True)
            msgspec.json.decode(raw)  # the JSON protocol embeds it raw, so it must be JSON
        except (binascii.Error, msgspec.DecodeError, RecursionError):
            raise InvalidToken(f"'{b64_key}' must be base64 of JSON") from None
        return msgspec.json.encode(msgspec.json.decode(raw))
    if json_key in claims and claims[json_key] is not None:
        try:
            return msgspec.json.encode(claims[json_key])
        except UnicodeEncodeError:  # a lone surrogate escape: no UTF-8 form to embed
            raise InvalidToken(f"'{json_key}' is not valid Unicode") from None
    return None


def _subscription_options(claims: Mapping[str, Any]) -> SubscriptionOptions:
    override_claim = claims.get("override") or {}
    if not isinstance(override_claim, dict):
        raise InvalidToken("'override' must be an object")
    override: dict[str, bool] = {}
    for key in _OVERRIDE_KEYS:
        item = override_claim.get(key)
        if item is None:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("value"), bool):
            raise InvalidToken(f"'override.{key}' must be {{\"value\": bool}}")
        override[key] = item["value"]
    return SubscriptionOptions(
        info=_info(claims, "info", "b64info"),
        data=_info(claims, "data", "b64data"),
        override=override,
    )


# ---------------------------------------------------------------------------------------------
# Minting (the Django side, tests and ``herald token``)


def mint_connection_token(
    secret: str,
    user: str,
    *,
    channels: Iterable[str] = (),
    ttl: int | None = 600,
    info: Any = None,
    audience: str = "",
    issuer: str = "",
    algorithm: str = "HS256",
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A connection JWT: ``sub``, ``iat``, ``jti``, ``exp`` (unless ttl is None), ``channels``."""
    claims: dict[str, Any] = {"sub": user}
    channels = list(channels)
    if channels:
        claims["channels"] = channels
    optional = {"info": info, "aud": audience or None, "iss": issuer or None}
    return _sign(secret, algorithm, claims, ttl, now, optional, extra)


def mint_subscription_token(
    secret: str,
    user: str,
    channel: str,
    *,
    ttl: int | None = 600,
    info: Any = None,
    data: Any = None,
    audience: str = "",
    issuer: str = "",
    algorithm: str = "HS256",
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A subscription JWT for one channel (spec §4.5)."""
    claims: dict[str, Any] = {"sub": user, "channel": channel}
    optional = {"info": info, "data": data, "aud": audience or None, "iss": issuer or None}
    return _sign(secret, algorithm, claims, ttl, now, optional, extra)


def _sign(
    secret: str,
    algorithm: str,
    claims: dict[str, Any],
    ttl: int | None,
    now: float | None,
    optional: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> str:
    """Add ``iat``, ``jti``, ``exp`` and the optional claims that are not None, then sign."""
    issued = int(time.time() if now is None else now)
    claims.update(iat=issued, jti=uuid.uuid4().hex)
    if ttl is not None:
        claims["exp"] = issued + ttl
    claims.update({k: v for k, v in optional.items() if v is not None})
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm=algorithm)

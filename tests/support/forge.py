"""Hand-made JWTs for attack tests: any header, any payload text, any key, any signature.

PyJWT refuses to write most of what an attacker sends (duplicate members, NaN, lone surrogates,
headers naming their own keys with the wrong algorithm), so tokens here are assembled from
their three segments. Headers and payloads given as dicts are serialised; given as ``str`` or
``bytes`` they are taken as the exact JSON text, to carry what a serialiser would not write.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support.gateway import TEST_SECRET

_HASHES: Final = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
JWT_HEADER: Final = {"alg": "HS256", "typ": "JWT"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any] | list[Any] | str | bytes) -> str:
    if isinstance(value, bytes):
        return b64url(value)
    if isinstance(value, str):
        return b64url(value.encode("utf-8", "surrogatepass"))
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hs_sign(signing_input: str, key: str | bytes, alg: str = "HS256") -> str:
    raw_key = key.encode() if isinstance(key, str) else key
    return b64url(hmac.new(raw_key, signing_input.encode(), _HASHES[alg]).digest())


def forge(
    header: dict[str, Any] | str | bytes,
    payload: dict[str, Any] | list[Any] | str | bytes,
    key: str | bytes = TEST_SECRET,
    alg: str = "HS256",
) -> str:
    """A token whose HMAC signature is computed with ``key`` over exactly these segments."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{hs_sign(signing_input, key, alg)}"


def unsigned(header: dict[str, Any] | str, payload: dict[str, Any] | str) -> str:
    return f"{segment(header)}.{segment(payload)}."


def rs_sign(header: dict[str, Any], payload: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def claims(user: str = "5", **extra: Any) -> dict[str, Any]:
    """Connection token claims granting ``tenant_42``, valid for 10 minutes; ``None`` drops a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": user,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "channels": ["tenant_42"],
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sub_claims(channel: str, user: str = "5", **extra: Any) -> dict[str, Any]:
    """Subscription token claims for ``channel``, valid for 10 minutes."""
    base = claims(user, channel=channel, **extra)
    base.pop("channels", None)
    return base


def self_signed_certificate(key: rsa.RSAPrivateKey) -> bytes:
    """A DER certificate for ``key``, as an attacker would put in ``x5c``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)

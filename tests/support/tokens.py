"""Real RSA keys and real signed JWTs for tests (no mocking of the verifier's inputs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REGION = "eu-west-1"
POOL_ID = "eu-west-1_TestPool1"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL_ID}"
CLIENT_ID = "clientabc123"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_spare_rsa_keys: list = []


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def throwaway_key() -> SigningKey:
    """A key under a fresh kid; the RSA material is reused because generating it is slow."""
    if not _spare_rsa_keys:
        _spare_rsa_keys.append(new_rsa_key())
    return SigningKey(private=_spare_rsa_keys[0])


@dataclass
class SigningKey:
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)
    private: rsa.RSAPrivateKey = field(default_factory=lambda: new_rsa_key())

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, **overrides) -> dict:
        numbers = self.private.public_key().public_numbers()
        entry = {
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes(3, "big")),
        }
        entry.update(overrides)
        return entry

    def sign(self, claims: dict, *, headers: dict | None = None, alg: str = "RS256") -> str:
        all_headers = {"kid": self.kid, **(headers or {})}
        return jwt.encode(claims, self.private, algorithm=alg, headers=all_headers)


def claims(kind: str = "id", *, email: str | None = "ada@example.com",
           email_verified: object = True, now: float | None = None, **overrides) -> dict:
    now = time.time() if now is None else now
    base = {
        "sub": str(uuid.uuid4()),
        "iss": ISSUER,
        "token_use": kind,
        "iat": int(now),
        "auth_time": int(now),
        "exp": int(now) + 3600,
        "jti": uuid.uuid4().hex,
    }
    if kind == "id":
        base.update({"aud": CLIENT_ID, "email": email, "email_verified": email_verified,
                     "cognito:username": base["sub"]})
        if email is None:
            del base["email"]
    else:
        base.update({"client_id": CLIENT_ID, "scope": "aws.cognito.signin.user.admin", "username": base["sub"]})
    base.update(overrides)  # an override of None removes the claim
    if kind == "id" and "sub" in overrides and overrides["sub"]:
        base["cognito:username"] = overrides["sub"]
    return {k: v for k, v in base.items() if v is not None}


def unsigned_token(payload: dict, *, kid: str = "x") -> str:
    header = b64url(json.dumps({"alg": "none", "kid": kid}).encode())
    return f"{header}.{b64url(json.dumps(payload).encode())}."


def hs256_token(payload: dict, secret: bytes, *, kid: str) -> str:
    """The classic key-confusion attack: HMAC-sign with the RSA public key as the secret."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


def moto_signed(claims: dict) -> str:
    """A token signed with moto's Cognito key (served at moto's JWKS URL): the shape is ours to choose, so
    real-Cognito-shaped tokens (Hosted UI scopes, boolean email_verified) verify against the local pool."""
    from moto.utilities.utils import load_resource

    jwk = load_resource("cognitoidp/resources/jwks-private.json")
    return jwt.encode(claims, jwt.PyJWK(jwk, algorithm="RS256").key, algorithm="RS256", headers={"kid": jwk["kid"]})


def hosted_ui_access_token(*, issuer: str, client_id: str, sub: str, username: str,
                           scope: str = "openid email", lifetime: int = 3600) -> str:
    """An access token as the Hosted UI issues it for the README's scopes: no email, no admin scope."""
    now = int(time.time())
    return moto_signed({"sub": sub, "iss": issuer, "client_id": client_id, "origin_jti": str(uuid.uuid4()),
                        "event_id": str(uuid.uuid4()), "token_use": "access", "scope": scope,
                        "auth_time": now, "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4()),
                        "username": username, "version": 2})

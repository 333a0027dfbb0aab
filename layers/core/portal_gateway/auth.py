"""Cognito JWT verification, in the manner of awslabs/aws-jwt-verify.

Checks run in a fixed order: shape, alg, kid, JWK (kty/use/alg), signature, exp/nbf/iat, iss, token_use,
aud (ID tokens) or client_id (access tokens), then an optional nonce. Keys come only from the configured
JWKS URL; `jku`, `x5u`, `x5c` and embedded `jwk` headers are never looked at. Unknown kids cause at most one
JWKS download per `min_refetch_seconds` (the "penalty box"), so a flood of forged kids cannot hammer
Cognito or slow us down.

RS256 is verified with the standard library (a modular exponentiation and a comparison of the whole PKCS#1
v1.5 encoding), not PyJWT and cryptography: importing those costs about as much CPU as the rest of a cold
start at Lambda's small CPU shares (`make bench`), for one signature check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from .errors import AuthUnavailable, InvalidToken

MAX_TOKEN_LENGTH = 8192
MIN_RSA_BITS = 2048  # Cognito's keys are 2048-bit; anything weaker is refused as a bad key
# DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017, section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
MAX_JWKS_BYTES = 64 * 1024
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_B64URL_OR_EMPTY = re.compile(r"^[A-Za-z0-9_-]*$")
TOKEN_USES = ("id", "access")


@dataclass(frozen=True)
class Identity:
    """Who is calling, as proven by a verified token. Keyed on (pool, sub), never on email."""

    sub: str
    user_pool_id: str
    token_use: str
    client_id: str
    username: str | None = None  # "cognito:username" (ID token) or "username" (access token)
    email: str | None = None
    email_verified: bool = False
    name: str | None = None


def is_verified_flag(value: object) -> bool:
    # Real Cognito sends a JSON boolean; moto and some older tokens send the string "true".
    return value is True or (isinstance(value, str) and value.lower() == "true")


class JwksCache:
    """Keys of one JWKS URL, cached for the life of the execution environment."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 3.0,
        min_refetch_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        opener: Callable[..., object] = urllib.request.urlopen,
    ):
        self.url = url
        self.timeout = timeout
        self.min_refetch_seconds = min_refetch_seconds
        self._clock = clock
        self._open = opener
        self._keys: dict[str, tuple[dict, object]] = {}
        self._last_attempt: float | None = None
        self._last_attempt_failed = False
        self._lock = threading.Lock()
        self.fetch_count = 0

    def key_for(self, kid: str) -> tuple[dict, object]:
        """Return (jwk, public key) for a kid, downloading the JWKS at most once per penalty window."""
        found = self._keys.get(kid)
        if found:
            return found
        with self._lock:
            found = self._keys.get(kid)
            if found:
                return found
            now = self._clock()
            in_penalty_box = self._last_attempt is not None and now - self._last_attempt < self.min_refetch_seconds
            if in_penalty_box:
                if self._last_attempt_failed:
                    raise AuthUnavailable(log_detail="JWKS unreachable (recent download failed)")
                raise InvalidToken("unknown_kid")
            self._last_attempt = now
            self._last_attempt_failed = True
            self._keys = self._download()
            self._last_attempt_failed = False
        found = self._keys.get(kid)
        if not found:
            raise InvalidToken("unknown_kid")
        return found

    def _download(self) -> dict[str, tuple[dict, object]]:
        self.fetch_count += 1
        try:
            # bandit B310 (urlopen scheme): the URL is operator configuration, checked to be https at start-up.
            with self._open(self.url, timeout=self.timeout) as response:  # nosec B310
                body = response.read(MAX_JWKS_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise AuthUnavailable(log_detail=f"JWKS download failed: {type(exc).__name__}") from None
        if len(body) > MAX_JWKS_BYTES:
            raise AuthUnavailable(log_detail="JWKS document too large")
        try:
            document = json.loads(body)
            entries = document["keys"]
        except (ValueError, KeyError, TypeError):
            raise AuthUnavailable(log_detail="JWKS document is not valid JSON with a 'keys' list") from None
        keys: dict[str, tuple[dict, object]] = {}
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
                keys[entry["kid"]] = (entry, None)  # known kid, unusable key: rejected as bad_jwk
                continue
            keys[entry["kid"]] = (entry, rsa_public_key(entry))
        return keys


@dataclass(frozen=True)
class RsaPublicKey:
    n: int
    e: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8


def rsa_public_key(jwk: dict) -> RsaPublicKey | None:
    """The (n, e) of an RSA JWK, or None when they are missing, malformed or too weak."""
    try:
        n = int.from_bytes(_b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(_b64url_decode(jwk["e"]), "big")
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    if n.bit_length() < MIN_RSA_BITS or e < 3 or e % 2 == 0 or e >= n:
        return None
    return RsaPublicKey(n, e)


def verify_rs256(key: RsaPublicKey, signing_input: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, 8.2.2), by comparing the whole expected encoding: no parsing of
    the decrypted block, so no room for the padding-parsing forgeries of lenient verifiers. Constant time."""
    if len(signature) != key.size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    encoded = pow(s, key.e, key.n).to_bytes(key.size, "big")
    digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    expected = b"\x00\x01" + b"\xff" * (key.size - len(digest_info) - 3) + b"\x00" + digest_info
    return hmac.compare_digest(encoded, expected)


def _b64url_decode(value: str) -> bytes:
    if not isinstance(value, str) or not _B64URL_OR_EMPTY.match(value):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class CognitoJwtVerifier:
    """Verifies Cognito ID and access tokens for one user pool and a set of app clients."""

    def __init__(
        self,
        *,
        issuer: str,
        user_pool_id: str,
        client_ids: tuple[str, ...],
        jwks: JwksCache,
        leeway_seconds: int = 30,
    ):
        self.issuer = issuer
        self.user_pool_id = user_pool_id
        self.client_ids = frozenset(client_ids)
        self.jwks = jwks
        self.leeway = leeway_seconds

    def verify(self, token: object, *, nonce: str | None = None) -> Identity:
        header = _decode_header(token)
        if header.get("alg") != "RS256":
            raise InvalidToken("unsupported_alg")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("missing_kid")
        _jwk, key = self.jwks.key_for(kid)
        if key is None:
            raise InvalidToken("bad_jwk")
        claims = self._verify_signature_and_times(token, key)
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong_issuer")
        token_use = claims.get("token_use")
        if token_use not in TOKEN_USES:
            raise InvalidToken("wrong_token_use")
        if token_use == "id":
            client_id = claims.get("aud")
            if not isinstance(client_id, str) or client_id not in self.client_ids:
                raise InvalidToken("wrong_audience")
        else:
            client_id = claims.get("client_id")
            if not isinstance(client_id, str) or client_id not in self.client_ids:
                raise InvalidToken("wrong_client_id")
        if nonce is not None:
            claimed = claims.get("nonce")
            if not isinstance(claimed, str) or not hmac.compare_digest(claimed, nonce):
                raise InvalidToken("wrong_nonce")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("missing_claim")
        email = claims.get("email") if token_use == "id" else None
        username = claims.get("cognito:username" if token_use == "id" else "username")
        return Identity(
            sub=sub,
            user_pool_id=self.user_pool_id,
            token_use=token_use,
            client_id=client_id,
            username=username if isinstance(username, str) and username else None,
            email=email if isinstance(email, str) and email else None,
            email_verified=token_use == "id" and is_verified_flag(claims.get("email_verified")),
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        )

    def _verify_signature_and_times(self, token: str, key: RsaPublicKey) -> dict:
        header_part, payload_part, signature_part = token.split(".")  # shape checked by _decode_header
        try:
            signature = _b64url_decode(signature_part)
        except (ValueError, binascii.Error):
            raise InvalidToken("malformed") from None
        if not verify_rs256(key, f"{header_part}.{payload_part}".encode("ascii"), signature):
            raise InvalidToken("bad_signature")
        try:
            claims = json.loads(_b64url_decode(payload_part))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidToken("malformed") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed")
        for name in ("exp", "iat", "iss", "sub", "token_use"):
            if name not in claims:
                raise InvalidToken("missing_claim")
        now = time.time()
        for name in ("exp", "iat", "nbf"):
            if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], (int, float))):
                raise InvalidToken("malformed")
        if claims["exp"] <= now - self.leeway:
            raise InvalidToken("expired")
        if claims["iat"] > now + self.leeway or claims.get("nbf", 0) > now + self.leeway:
            raise InvalidToken("not_yet_valid")
        return claims


def _decode_header(token: object) -> dict:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed")
    parts = token.split(".")
    # An empty signature is let through here so that `alg: none` is refused by name, just below.
    if len(parts) != 3 or not all(_B64URL.match(part) for part in parts[:2]) or not _B64URL_OR_EMPTY.match(parts[2]):
        raise InvalidToken("malformed")
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed")
    return header

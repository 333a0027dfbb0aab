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
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from portal_gateway.errors import AuthUnavailable, InvalidToken
from portal_gateway.http_pool import POOL, HttpFailure
from portal_gateway.text import has_lone_surrogate

MAX_TOKEN_LENGTH = 8192
MIN_RSA_BITS = 2048  # Cognito's keys are 2048-bit; anything weaker is refused as a bad key
# DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017, section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
MAX_JWKS_BYTES = 64 * 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]+")  # used with fullmatch
_B64URL_OR_EMPTY = re.compile(r"[A-Za-z0-9_-]*")
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
    issued_at: float | None = None  # "iat": when Cognito issued the token (it issues none to a disabled user)


def is_verified_flag(value: object) -> bool:
    # Real Cognito sends a JSON boolean; moto and some older tokens send the string "true".
    return value is True or (isinstance(value, str) and value.lower() == "true")


class JwksCache:
    """Keys of one JWKS URL, cached for the life of the execution environment.

    As aws-jwt-verify's penalty box: a download for an unknown kid that does not bring that kid (or fails)
    stops further downloads for `min_refetch_seconds`; a download that finds its kid stops nothing, so a key
    Cognito starts signing with is picked up at once. Known-good keys are kept: a failed download, or one with
    no usable key, never replaces them."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 3.0,
        min_refetch_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.timeout = timeout
        self.min_refetch_seconds = min_refetch_seconds
        self._clock = clock
        self._keys: dict[str, tuple[dict, RsaPublicKey | None]] = {}
        self._penalty_until: float | None = None
        self._last_download_failed = False
        self._lock = threading.Lock()
        self.fetch_count = 0

    def prefetch(self) -> bool:
        """Download the keys ahead of the first request (at init). Fails soft: a failure is not remembered (no
        penalty), so the first request simply tries again. True if keys are in memory."""
        if self._keys:
            return True
        with self._lock:
            if not self._keys:
                try:
                    self._keys = self._download()
                except AuthUnavailable:
                    return False
        return bool(self._keys)

    def key_for(self, kid: str) -> tuple[dict, RsaPublicKey | None]:
        """Return (jwk, public key) for a kid, downloading the JWKS unless a recent download came back without
        the kid (or failed)."""
        found = self._keys.get(kid)
        if found:
            return found
        with self._lock:
            found = self._keys.get(kid)
            if found:
                return found
            now = self._clock()
            if self._penalty_until is not None and now < self._penalty_until:
                if self._last_download_failed and not self._keys:
                    raise AuthUnavailable(log_detail="JWKS unreachable (recent download failed)")
                raise InvalidToken("unknown_kid")
            try:
                downloaded = self._download()
            except AuthUnavailable:
                self._penalty_until, self._last_download_failed = now + self.min_refetch_seconds, True
                raise
            self._last_download_failed = False
            if not self._keys or any(key is not None for _, key in downloaded.values()):
                self._keys = downloaded  # a key Cognito no longer publishes stops verifying
            found = self._keys.get(kid)
            self._penalty_until = None if found else now + self.min_refetch_seconds
        if not found:
            raise InvalidToken("unknown_kid")
        return found

    def _download(self) -> dict[str, tuple[dict, RsaPublicKey | None]]:
        self.fetch_count += 1
        try:
            # Through the shared pool: a wall-clock bound, a size bound, and the invocation's time budget.
            answer = POOL.request("GET", self.url, body=None, headers={"Accept": "application/json"},
                                  connect_timeout=min(self.timeout, 2.0), read_timeout=self.timeout,
                                  max_bytes=MAX_JWKS_BYTES, dependency="Cognito")
        except HttpFailure as failure:
            detail = "JWKS document too large" if failure.kind == "ResponseTooLarge" else \
                f"JWKS download failed: {failure.kind}"
            raise AuthUnavailable(log_detail=detail) from None
        if answer.status != 200:
            raise AuthUnavailable(log_detail=f"JWKS download failed: http {answer.status}")
        try:
            document = json.loads(answer.data)
            entries = document["keys"]
        except (ValueError, KeyError, TypeError):
            raise AuthUnavailable(log_detail="JWKS document is not valid JSON with a 'keys' list") from None
        keys: dict[str, tuple[dict, RsaPublicKey | None]] = {}
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
    if not isinstance(value, str) or not _B64URL_OR_EMPTY.fullmatch(value):
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
        text, header = _decode_header(token)
        if header.get("alg") != "RS256":
            raise InvalidToken("unsupported_alg")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("missing_kid")
        _jwk, key = self.jwks.key_for(kid)
        if key is None:
            raise InvalidToken("bad_jwk")
        claims = self._verify_signature_and_times(text, key)
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
            # Compared as UTF-8 bytes: compare_digest refuses non-ASCII str (a TypeError, not a refusal).
            if not isinstance(claimed, str) or not hmac.compare_digest(
                    claimed.encode("utf-8", "surrogatepass"), nonce.encode("utf-8", "surrogatepass")):
                raise InvalidToken("wrong_nonce")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("missing_claim")
        if has_lone_surrogate(sub):
            raise InvalidToken("malformed")  # the key of the user's mapping and customer stamp must be sendable
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
            issued_at=claims["iat"],  # a number: checked with exp and nbf
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
            value = claims.get(name)
            # NaN and Infinity are JSON to Python's parser; a NaN exp would compare as never expired.
            if name in claims and (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or not math.isfinite(value)):
                raise InvalidToken("malformed")
        if claims["exp"] <= now - self.leeway:
            raise InvalidToken("expired")
        if claims["iat"] > now + self.leeway or claims.get("nbf", 0) > now + self.leeway:
            raise InvalidToken("not_yet_valid")
        return claims


def _decode_header(token: object) -> tuple[str, dict]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed")
    parts = token.split(".")
    # An empty signature is let through here so that `alg: none` is refused by name, just below.
    # Each part matched whole ("$" would let a trailing newline through, and base64 decoding drops it).
    if (len(parts) != 3 or not all(_B64URL.fullmatch(part) for part in parts[:2])
            or not _B64URL_OR_EMPTY.fullmatch(parts[2])):
        raise InvalidToken("malformed")
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed")
    if "crit" in header:
        # RFC 7515, 4.1.11: extensions listed in "crit" must be understood or the token refused; we know none.
        raise InvalidToken("unsupported_crit")
    return token, header

"""Cognito JWT verification, in the manner of awslabs/aws-jwt-verify.

Checks run in a fixed order: shape, alg, kid, JWK (kty/use/alg), signature, exp/nbf/iat, iss, token_use,
aud (ID tokens) or client_id (access tokens), then an optional nonce. Keys come only from the configured
JWKS URL; `jku`, `x5u`, `x5c` and embedded `jwk` headers are never looked at. Unknown kids cause at most one
JWKS download per `min_refetch_seconds` (the "penalty box"), so a flood of forged kids cannot hammer
Cognito or slow us down.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import jwt  # PyJWT[crypto]

from .errors import AuthUnavailable, InvalidToken

MAX_TOKEN_LENGTH = 8192
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
            try:
                keys[entry["kid"]] = (entry, jwt.PyJWK(entry, algorithm="RS256").key)
            except (jwt.PyJWTError, ValueError, TypeError):
                keys[entry["kid"]] = (entry, None)
        return keys


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

    def _verify_signature_and_times(self, token: str, key: object) -> dict:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                leeway=self.leeway,
                options={
                    "require": ["exp", "iat", "iss", "sub", "token_use"],
                    "verify_aud": False,  # checked below per token_use
                    "verify_iss": False,  # checked below, exact match
                },
            )
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad_signature") from None
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            raise InvalidToken("not_yet_valid") from None
        except jwt.MissingRequiredClaimError:
            raise InvalidToken("missing_claim") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed") from None


def _decode_header(token: object) -> dict:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed")
    parts = token.split(".")
    # An empty signature is let through here so that `alg: none` is refused by name, just below.
    if len(parts) != 3 or not all(_B64URL.match(part) for part in parts[:2]) or not _B64URL_OR_EMPTY.match(parts[2]):
        raise InvalidToken("malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed")
    return header

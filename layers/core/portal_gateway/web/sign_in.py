"""Plain-link sign-in: OAuth 2.0 authorization code + PKCE against the Cognito Hosted UI / managed login.

GET /portal without credentials starts it: state, nonce, PKCE verifier and the requested options go into a
short-lived `__Host-` cookie, encrypted and authenticated (AES-GCM) with a key kept in Secrets Manager.
GET /portal/callback finishes it: the cookie must be present, intact, unexpired and hold the same state; the
code is exchanged at /oauth2/token with the verifier (and the client secret, when the app client has one);
the ID token is verified with the usual verifier plus the nonce. The cookie is cleared either way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portal_gateway.errors import AuthUnavailable, GatewayError
from portal_gateway.http_pool import POOL, HttpFailure

COOKIE_NAME = "__Host-portal_login"
COOKIE_TTL_SECONDS = 600
SECRET_TTL_SECONDS = 300
SCOPE = "openid email"
_AAD = b"stripe-portal-gateway login cookie v1"
_CODE = re.compile(r"^[A-Za-z0-9._~-]{1,512}$")
_STATE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
# A host name as API Gateway reports the domain it was called on (requestContext.domainName): no port, no path.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")


class LoginFailed(GatewayError):
    code = "login_failed"
    message = "Sign-in did not complete. Please try again."
    title = "Sign-in did not complete"


class LoginCancelled(LoginFailed):
    message = "You cancelled the sign-in, so billing was not opened. You can start again from the site."
    title = "Sign-in was cancelled"


class LoginSessionInvalid(GatewayError):
    code = "login_session_invalid"
    message = "This sign-in link has expired or was already used. Please start again from the site."
    title = "This link has expired"


class OAuthSecretUnavailable(GatewayError):
    code = "login_unavailable"
    message = "Sign-in is temporarily unavailable. Please try again later."
    needs_operator = True


@dataclass(frozen=True)
class PendingLogin:
    state: str
    nonce: str
    verifier: str
    issued_at: int
    return_to: str | None = None
    flow: str | None = None
    locale: str | None = None
    action: str | None = None  # "checkout" after a Subscribe link; None: the portal
    price: str | None = None
    cancel_to: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


class CookieSealer:
    """Encrypts and authenticates the pending-login cookie. The key is derived from a Secrets Manager value."""

    def __init__(self, key_material: str):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_AAD).derive(key_material.encode())
        self._aead = AESGCM(key)

    def seal(self, login: PendingLogin) -> str:
        nonce = os.urandom(12)
        body = json.dumps(asdict(login), separators=(",", ":")).encode()
        return _b64(nonce + self._aead.encrypt(nonce, body, _AAD))

    def open(self, value: str, *, now: float) -> PendingLogin:
        try:
            raw = _unb64(value)
            data = json.loads(self._aead.decrypt(raw[:12], raw[12:], _AAD))
            login = PendingLogin(**data)
        except (InvalidTag, ValueError, TypeError):
            raise LoginSessionInvalid(log_detail="login cookie tampered or from another key") from None
        if not 0 <= now - login.issued_at <= COOKIE_TTL_SECONDS:
            raise LoginSessionInvalid(log_detail="login cookie expired")
        return login


class HostedUiLogin:
    def __init__(self, *, domain: str, client_id: str, callback_url: str | None, read_secret: Callable[[], str],
                 timeout: float = 5.0, clock: Callable[[], float] = time.time,
                 always_ask: bool = False):
        self.domain = domain
        self.always_ask = always_ask  # prompt=login: a shared computer's next person is never signed in silently
        self.client_id = client_id
        self.callback_url = callback_url
        self._read_secret = read_secret
        self._timeout = timeout
        self._clock = clock
        self._sealer: CookieSealer | None = None
        self._client_secret: str | None = None
        self._loaded_at = 0.0

    def forget_secrets(self) -> None:
        """Drop the cookie key and client secret from memory (SnapStart: never in a snapshot)."""
        self._sealer, self._client_secret, self._loaded_at = None, None, 0.0

    def _secrets(self) -> tuple[CookieSealer, str | None]:
        # Re-read now and then, like the Stripe key, so a changed client secret or cookie key is picked up.
        if self._sealer is None or self._clock() - self._loaded_at > SECRET_TTL_SECONDS:
            raw = self._read_secret()
            try:
                value = json.loads(raw)
                cookie_key = value["cookie_key"]
            except (ValueError, KeyError, TypeError):
                raise OAuthSecretUnavailable(log_detail="the OAuth secret must be JSON with a 'cookie_key'") from None
            if not isinstance(cookie_key, str) or len(cookie_key) < 32:
                raise OAuthSecretUnavailable(log_detail="the OAuth secret's cookie_key must be 32+ characters")
            self._client_secret = value.get("client_secret") or None
            self._sealer = CookieSealer(cookie_key)
            self._loaded_at = self._clock()
        return self._sealer, self._client_secret

    def redirect_uri(self, api_domain: str | None) -> str:
        """The configured callback URL, else this API's own: https://<the domain it was called on>/portal/callback
        (Cognito accepts only callback URLs registered on the app client, so no other domain can be made to
        receive a code)."""
        if self.callback_url:
            return self.callback_url
        if not api_domain or not _DOMAIN.fullmatch(api_domain):
            raise LoginFailed(log_detail="no CALLBACK_URL and no API domain in the request to derive it from")
        return f"https://{api_domain.lower()}/portal/callback"

    def start(self, *, return_to: str | None, flow: str | None, locale: str | None,
              api_domain: str | None = None, action: str | None = None, price: str | None = None,
              cancel_to: str | None = None) -> tuple[str, str]:
        """Returns (authorize URL, sealed cookie value)."""
        redirect_uri = self.redirect_uri(api_domain)
        sealer, _ = self._secrets()
        login = PendingLogin(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                             verifier=secrets.token_urlsafe(64), issued_at=int(self._clock()),
                             return_to=return_to, flow=flow, locale=locale, action=action, price=price,
                             cancel_to=cancel_to)
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": pkce_challenge(login.verifier),
            "code_challenge_method": "S256",
            **({"prompt": "login"} if self.always_ask else {}),
        })
        return f"{self.domain}/oauth2/authorize?{query}", sealer.seal(login)

    def logout_url(self, return_url: str) -> str:
        """Cognito's /logout: ends the Hosted UI's own session (clearing the site's tokens does not), then sends
        the browser to `return_url`, which must be an allowed sign-out URL of the app client."""
        query = urllib.parse.urlencode({"client_id": self.client_id, "logout_uri": return_url})
        return f"{self.domain}/logout?{query}"

    def finish(self, query: dict[str, str], cookie_value: str | None,
               api_domain: str | None = None) -> tuple[str, PendingLogin]:
        """Check the callback against the cookie and exchange the code. Returns (ID token, pending login)."""
        if not cookie_value:
            raise LoginSessionInvalid(log_detail="no login cookie (expired, other browser, or already used)")
        sealer, client_secret = self._secrets()
        login = sealer.open(cookie_value, now=self._clock())
        state = query.get("state") or ""
        if not _STATE.fullmatch(state) or not hmac.compare_digest(state, login.state):
            raise LoginSessionInvalid(log_detail="state does not match the login cookie")
        if query.get("error"):
            # access_denied: the user cancelled (or was refused) at the Hosted UI; OAuth 2.0, section 4.1.2.1
            failure = LoginCancelled if query["error"] == "access_denied" else LoginFailed
            raise failure(log_detail=f"the Hosted UI answered error={query['error'][:40]!r}")
        code = query.get("code") or ""
        if not _CODE.fullmatch(code):
            raise LoginFailed(log_detail="callback without a valid code")
        # The callback request came to the redirect_uri the sign-in started with: the same address, derived alike.
        return self._exchange(code, login.verifier, client_secret, self.redirect_uri(api_domain)), login

    def _exchange(self, code: str, verifier: str, client_secret: str | None, redirect_uri: str) -> str:
        body = urllib.parse.urlencode({"grant_type": "authorization_code", "client_id": self.client_id,
                                       "code": code, "redirect_uri": redirect_uri,
                                       "code_verifier": verifier}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if client_secret:
            pair = f"{urllib.parse.quote(self.client_id)}:{urllib.parse.quote(client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            # Through the shared pool: a wall-clock bound, a size bound and the invocation's time budget.
            reply = POOL.request("POST", f"{self.domain}/oauth2/token", body=body, headers=headers,
                                 connect_timeout=min(self._timeout, 2.0), read_timeout=self._timeout,
                                 max_bytes=64 * 1024, dependency="Cognito")
        except HttpFailure as failure:
            raise AuthUnavailable(log_detail=f"token endpoint unreachable: {failure.kind}") from None
        if 400 <= reply.status < 500:
            raise LoginFailed(log_detail=f"token endpoint refused the code (http {reply.status})")
        if reply.status != 200:
            raise AuthUnavailable(log_detail=f"token endpoint failed (http {reply.status})")
        try:
            answer = json.loads(reply.data)
        except ValueError:
            raise AuthUnavailable(log_detail="token endpoint answered garbage") from None
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str):
            raise LoginFailed(log_detail="token endpoint answered without an id_token")
        return id_token

"""The sign-in cookie (encrypted, authenticated, short-lived) and PKCE."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from portal_gateway.web.sign_in import (
    COOKIE_TTL_SECONDS,
    SECRET_TTL_SECONDS,
    CookieSealer,
    HostedUiLogin,
    LoginSessionInvalid,
    PendingLogin,
    pkce_challenge,
)

KEY = "k" * 48
LOGIN = PendingLogin(state="s" * 43, nonce="n" * 43, verifier="v" * 86, issued_at=1000, return_to="https://x.example/")


def test_round_trip_and_no_plaintext():
    sealed = CookieSealer(KEY).seal(LOGIN)
    assert CookieSealer(KEY).open(sealed, now=1000 + COOKIE_TTL_SECONDS) == LOGIN
    assert "x.example" not in base64.urlsafe_b64decode(sealed + "==").decode("latin-1")


def test_expired_cookie_is_refused():
    sealed = CookieSealer(KEY).seal(LOGIN)
    with pytest.raises(LoginSessionInvalid):
        CookieSealer(KEY).open(sealed, now=1000 + COOKIE_TTL_SECONDS + 1)
    with pytest.raises(LoginSessionInvalid):
        CookieSealer(KEY).open(sealed, now=999)  # issued in the future: not from us


@pytest.mark.parametrize("mangle", [lambda v: v[:-2] + ("AA" if v[-2:] != "AA" else "BB"), lambda v: v[5:],
                                    lambda v: "", lambda v: "!!!", lambda v: v + "A"])
def test_tampered_cookie_is_refused(mangle):
    with pytest.raises(LoginSessionInvalid):
        CookieSealer(KEY).open(mangle(CookieSealer(KEY).seal(LOGIN)), now=1000)


def test_cookie_from_another_key_is_refused():
    with pytest.raises(LoginSessionInvalid):
        CookieSealer("o" * 48).open(CookieSealer(KEY).seal(LOGIN), now=1000)


def test_pkce_challenge_is_s256():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_challenge(verifier) == base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_oauth_secret_is_reread_after_its_ttl():
    reads = []
    now = [1000.0]

    def read():
        reads.append(1)
        return json.dumps({"cookie_key": KEY, "client_secret": f"secret-{len(reads)}"})

    login = HostedUiLogin(domain="https://login.example.com", client_id="c", callback_url="https://a/portal/callback",
                          read_secret=read, clock=lambda: now[0])
    login.start(return_to=None, flow=None, locale=None)
    login.start(return_to=None, flow=None, locale=None)
    assert len(reads) == 1
    now[0] += SECRET_TTL_SECONDS + 1
    login.start(return_to=None, flow=None, locale=None)
    assert len(reads) == 2

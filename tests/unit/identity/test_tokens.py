"""The verifier against real RSA-signed tokens and a real JWKS endpoint on loopback: the bad-token matrix."""

from __future__ import annotations

import time

import pytest
from portal_gateway.errors import AuthUnavailable, InvalidToken
from portal_gateway.identity.tokens import CognitoJwtVerifier, JwksCache

from tests.support.http import JsonServer
from tests.support.tokens import (
    CLIENT_ID,
    ISSUER,
    POOL_ID,
    SigningKey,
    claims,
    hs256_token,
    throwaway_key,
    unsigned_token,
)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def key():
    return SigningKey()


@pytest.fixture(scope="module")
def other_key():
    return SigningKey()


@pytest.fixture
def jwks_server(key):
    server = JsonServer({"keys": [key.jwk()]})
    yield server
    server.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def verifier(jwks_server, clock):
    cache = JwksCache(jwks_server.url, timeout=2, clock=clock)
    return CognitoJwtVerifier(
        issuer=ISSUER, user_pool_id=POOL_ID, client_ids=(CLIENT_ID, "secondclient9"), jwks=cache, leeway_seconds=30
    )


def reason(verifier, token, **kwargs):
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, **kwargs)
    return caught.value.reason


def test_valid_id_token_gives_identity(verifier, key):
    c = claims("id", email="ada@example.com", name="Ada Lovelace")
    identity = verifier.verify(key.sign(c))
    assert identity.sub == c["sub"]
    assert identity.user_pool_id == POOL_ID
    assert identity.token_use == "id"
    assert identity.client_id == CLIENT_ID
    assert identity.email == "ada@example.com"
    assert identity.email_verified is True
    assert identity.name == "Ada Lovelace"


@pytest.mark.parametrize("flag, expected", [(True, True), ("true", True), ("True", True), (False, False),
                                            ("false", False), (None, False), (1, False)])
def test_email_verified_accepts_boolean_or_string_true_only(verifier, key, flag, expected):
    assert verifier.verify(key.sign(claims("id", email_verified=flag))).email_verified is expected


def test_valid_access_token_has_no_email_and_checks_client_id(verifier, key):
    identity = verifier.verify(key.sign(claims("access")))
    assert identity.token_use == "access"
    assert identity.client_id == CLIENT_ID
    assert identity.email is None and identity.email_verified is False


def test_second_configured_client_is_accepted(verifier, key):
    assert verifier.verify(key.sign(claims("id", aud="secondclient9"))).client_id == "secondclient9"


def test_keys_are_downloaded_once_and_reused(verifier, key, jwks_server):
    for _ in range(5):
        verifier.verify(key.sign(claims("id")))
    assert len(jwks_server.requests) == 1


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not_yet_valid"),
        ({"iat": int(time.time()) + 600}, "not_yet_valid"),
        ({"iss": ISSUER + "/"}, "wrong_issuer"),
        ({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_OtherPool"}, "wrong_issuer"),
        ({"iss": "https://evil.example.com/eu-west-1_TestPool1"}, "wrong_issuer"),
        ({"token_use": "refresh"}, "wrong_token_use"),
        ({"token_use": None}, "missing_claim"),
        ({"aud": "someoneelse"}, "wrong_audience"),
        ({"aud": [CLIENT_ID]}, "wrong_audience"),
        ({"sub": None}, "missing_claim"),
        ({"exp": None}, "missing_claim"),
        ({"sub": ""}, "missing_claim"),
    ],
)
def test_id_token_claim_matrix(verifier, key, overrides, expected):
    assert reason(verifier, key.sign(claims("id", **overrides))) == expected


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"client_id": "someoneelse"}, "wrong_client_id"),
        ({"client_id": None, "aud": CLIENT_ID}, "wrong_client_id"),  # an access token must name its client
        ({"exp": int(time.time()) - 3600}, "expired"),
    ],
)
def test_access_token_claim_matrix(verifier, key, overrides, expected):
    assert reason(verifier, key.sign(claims("access", **overrides))) == expected


def test_expiry_within_leeway_is_accepted(verifier, key):
    verifier.verify(key.sign(claims("id", exp=int(time.time()) - 10)))


def test_id_token_aud_does_not_satisfy_access_token_rules(verifier, key):
    # An ID token relabelled as access has no client_id: it must not pass the access-token branch.
    assert reason(verifier, key.sign(claims("id", token_use="access"))) == "wrong_client_id"


@pytest.mark.parametrize("alg", ["RS512", "PS256"])
def test_other_rsa_algorithms_are_refused(verifier, key, alg):
    assert reason(verifier, key.sign(claims("id"), alg=alg)) == "unsupported_alg"


def test_alg_none_is_refused(verifier, key):
    assert reason(verifier, unsigned_token(claims("id"), kid=key.kid)) == "unsupported_alg"


def test_hs256_with_public_key_as_secret_is_refused(verifier, key):
    assert reason(verifier, hs256_token(claims("id"), key.public_pem, kid=key.kid)) == "unsupported_alg"


def test_signature_by_another_key_with_same_kid_is_refused(verifier, key, other_key):
    forger = SigningKey(kid=key.kid, private=other_key.private)
    assert reason(verifier, forger.sign(claims("id"))) == "bad_signature"


def test_tampered_payload_is_refused(verifier, key):
    good = key.sign(claims("id", sub="victim"))
    evil = key.sign(claims("id", sub="attacker"))
    spliced = ".".join([good.split(".")[0], evil.split(".")[1], good.split(".")[2]])
    assert reason(verifier, spliced) == "bad_signature"


def test_jku_x5u_and_embedded_jwk_headers_are_never_followed(verifier, other_key, jwks_server):
    attacker = JsonServer({"keys": [other_key.jwk()]})
    try:
        token = other_key.sign(
            claims("id"), headers={"jku": attacker.url, "x5u": attacker.url, "jwk": other_key.jwk()}
        )
        assert reason(verifier, token) == "unknown_kid"
        assert attacker.requests == []
    finally:
        attacker.close()


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c", "a.b.c.d", "!!!.bbb.ccc", "eyJhbGciOiJSUzI1NiJ9", "x" * 9000, None, 42],
)
def test_malformed_tokens(verifier, token):
    assert reason(verifier, token) == "malformed"


def test_garbage_header_json_is_malformed(verifier):
    # base64url of 'notjson' and of '[]' (a list, not an object)
    assert reason(verifier, "bm90anNvbg.e30.c2ln") == "malformed"
    assert reason(verifier, "W10.e30.c2ln") == "malformed"


def test_missing_kid_is_refused(verifier, key):
    import jwt

    token = jwt.encode(claims("id"), key.private, algorithm="RS256")  # no kid header
    assert reason(verifier, token) == "missing_kid"


@pytest.mark.parametrize("override", [{"kty": "EC"}, {"use": "enc"}, {"alg": "RS512"}, {"n": "@@@"}])
def test_unusable_jwk_for_kid_is_refused(clock, override):
    key = throwaway_key()
    server = JsonServer({"keys": [key.jwk(**override)]})
    try:
        verifier = CognitoJwtVerifier(issuer=ISSUER, user_pool_id=POOL_ID, client_ids=(CLIENT_ID,),
                                      jwks=JwksCache(server.url, clock=clock))
        assert reason(verifier, key.sign(claims("id"))) == "bad_jwk"
    finally:
        server.close()


def test_nonce_is_checked_when_expected(verifier, key):
    token = key.sign(claims("id", nonce="n-123"))
    verifier.verify(token, nonce="n-123")
    assert reason(verifier, token, nonce="n-456") == "wrong_nonce"
    assert reason(verifier, key.sign(claims("id")), nonce="n-123") == "wrong_nonce"


def test_unknown_kid_flood_downloads_jwks_at_most_once_per_window(verifier, jwks_server, clock, key):
    verifier.verify(key.sign(claims("id")))
    assert len(jwks_server.requests) == 1
    for _ in range(50):  # the first unknown kid downloads once; that download lacks it: no more for 10 s
        assert reason(verifier, throwaway_key().sign(claims("id"))) == "unknown_kid"
    assert len(jwks_server.requests) == 2
    clock.now += 10.5
    for _ in range(50):  # the window has passed: one download for the whole next flood
        assert reason(verifier, throwaway_key().sign(claims("id"))) == "unknown_kid"
    assert len(jwks_server.requests) == 3
    verifier.verify(key.sign(claims("id")))  # the real key still works throughout
    assert len(jwks_server.requests) == 3


def test_a_new_signing_key_right_after_a_download_is_picked_up_at_once(verifier, jwks_server, clock, key):
    # aws-jwt-verify's rule: only a download that came back without the kid (or failed) holds the next one
    # back. A download that found its kid must not, or Cognito's next key gets 401 for up to 10 s.
    verifier.verify(key.sign(claims("id")))
    new_key = throwaway_key()
    jwks_server.document = {"keys": [key.jwk(), new_key.jwk()]}
    clock.now += 1
    assert verifier.verify(new_key.sign(claims("id"))).token_use == "id"
    assert len(jwks_server.requests) == 2


@pytest.mark.parametrize("status, document", [(500, {"keys": []}), (200, {"keys": []}), (200, {"nokeys": 1})])
def test_a_failed_or_empty_redownload_keeps_the_known_keys(verifier, jwks_server, clock, key, status, document):
    verifier.verify(key.sign(claims("id")))
    jwks_server.status, jwks_server.document = status, document
    with pytest.raises((InvalidToken, AuthUnavailable)):
        verifier.verify(throwaway_key().sign(claims("id")))  # triggers the re-download that fails
    assert len(jwks_server.requests) == 2
    assert verifier.verify(key.sign(claims("id"))).token_use == "id"  # the known key still verifies
    clock.now += 11
    with pytest.raises((InvalidToken, AuthUnavailable)):
        verifier.verify(throwaway_key().sign(claims("id")))
    assert verifier.verify(key.sign(claims("id"))).token_use == "id"


def test_an_oversized_jwks_is_refused_without_reading_it_whole(key, clock):
    server = JsonServer({"keys": [key.jwk()], "padding": "x" * (200 * 1024)})
    try:
        verifier = CognitoJwtVerifier(issuer=ISSUER, user_pool_id=POOL_ID, client_ids=(CLIENT_ID,),
                                      jwks=JwksCache(server.url, clock=clock))
        with pytest.raises(AuthUnavailable) as caught:
            verifier.verify(key.sign(claims("id")))
        assert caught.value.log_detail == "JWKS document too large"
    finally:
        server.close()


def test_jwks_unreachable_is_unavailable_not_invalid(key, clock):
    server = JsonServer({"keys": [key.jwk()]})
    server.close()  # nothing listens there any more
    verifier = CognitoJwtVerifier(issuer=ISSUER, user_pool_id=POOL_ID, client_ids=(CLIENT_ID,),
                                  jwks=JwksCache(server.url, timeout=1, clock=clock))
    with pytest.raises(AuthUnavailable):
        verifier.verify(key.sign(claims("id")))
    # Within the window no new download is tried, and the answer stays "unavailable", not "invalid".
    with pytest.raises(AuthUnavailable):
        verifier.verify(key.sign(claims("id")))
    assert verifier.jwks.fetch_count == 1


@pytest.mark.parametrize("status, document", [(500, {"keys": []}), (200, {"nokeys": 1}), (200, ["x"])])
def test_broken_jwks_document_is_unavailable(key, clock, status, document):
    server = JsonServer(document)
    server.status = status
    try:
        verifier = CognitoJwtVerifier(issuer=ISSUER, user_pool_id=POOL_ID, client_ids=(CLIENT_ID,),
                                      jwks=JwksCache(server.url, clock=clock))
        with pytest.raises(AuthUnavailable):
            verifier.verify(key.sign(claims("id")))
    finally:
        server.close()


def test_slow_jwks_times_out_as_unavailable(key, clock):
    server = JsonServer({"keys": [key.jwk()]})
    server.delay = 2
    try:
        verifier = CognitoJwtVerifier(issuer=ISSUER, user_pool_id=POOL_ID, client_ids=(CLIENT_ID,),
                                      jwks=JwksCache(server.url, timeout=0.3, clock=clock))
        started = time.monotonic()
        with pytest.raises(AuthUnavailable):
            verifier.verify(key.sign(claims("id")))
        assert time.monotonic() - started < 1.5
    finally:
        server.close()


# --- where the JWKS may come from ---------------------------------------------------------------------------------
def _env(**extra):
    return {"STRIPE_SECRET_ID": "s", "STRIPE_MODE": "test", "COGNITO_USER_POOL_ID": "eu-west-1_AbCdEf123",
            "COGNITO_CLIENT_IDS": "abc123", "CUSTOMERS_TABLE": "t", "RETURN_URL": "https://shop.example.com/", **extra}


def test_a_jwks_url_on_another_host_is_refused_unless_allowed_on_purpose():
    import pytest
    from portal_gateway.config import ConfigError, Settings

    foreign = "https://keys.attacker.example/jwks.json"
    with pytest.raises(ConfigError, match="ALLOW_CUSTOM_JWKS_URL"):
        Settings.from_env(_env(COGNITO_JWKS_URL=foreign))
    assert Settings.from_env(_env(COGNITO_JWKS_URL=foreign, ALLOW_CUSTOM_JWKS_URL="true")).jwks_url == foreign
    own = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json"
    assert Settings.from_env(_env(COGNITO_JWKS_URL=own)).jwks_url == own
    local = "http://127.0.0.1:5000/eu-west-1_AbCdEf123/.well-known/jwks.json"
    assert Settings.from_env(_env(COGNITO_JWKS_URL=local)).jwks_url == local  # the local stack's moto


# --- the standard-library RS256 check, held to the cryptography library's own verifier -----------------------------
def test_rs256_verification_agrees_with_cryptography():
    import os

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from portal_gateway.identity.tokens import rsa_public_key, verify_rs256

    from tests.support.tokens import b64url

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": b64url(numbers.n.to_bytes(256, "big")), "e": b64url(numbers.e.to_bytes(3, "big"))}
    key = rsa_public_key(jwk)
    for _ in range(20):
        message = os.urandom(64)
        good = private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        candidates = [good, good[:-1] + bytes([good[-1] ^ 1]), bytes(256), b"\x00" + good[1:],
                      private.sign(message, padding.PKCS1v15(), hashes.SHA512()),
                      private.sign(message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()),
                      good + b"\x00", good[1:], (numbers.n + 1).to_bytes(257, "big")[-256:]]
        for signature in candidates:
            try:
                private.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
                expected = True
            except (InvalidSignature, ValueError):
                expected = False
            assert verify_rs256(key, message, signature) is expected
        assert not verify_rs256(key, message + b"x", good)


def test_weak_or_malformed_rsa_keys_are_not_used():
    from cryptography.hazmat.primitives.asymmetric import rsa
    from portal_gateway.identity.tokens import rsa_public_key

    from tests.support.tokens import b64url

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    assert rsa_public_key({"n": b64url(weak.n.to_bytes(128, "big")), "e": "AQAB"}) is None  # under 2048 bits
    strong_n = b64url((2**2047 + 1).to_bytes(256, "big"))
    assert rsa_public_key({"n": strong_n, "e": "Ag"}) is None  # even exponent
    assert rsa_public_key({"n": strong_n, "e": "AQ"}) is None  # e = 1
    assert rsa_public_key({"n": "not base64!", "e": "AQAB"}) is None
    assert rsa_public_key({"e": "AQAB"}) is None


# --- hostile but signed: refused, never a crash ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_time_claims_that_are_not_finite_numbers_are_malformed(verifier, key, name, value):
    # Python's json reads NaN and Infinity; a NaN exp compares as "not expired" for ever.
    assert reason(verifier, key.sign(claims("id", **{name: value}))) == "malformed"


def test_a_crit_header_is_refused_as_rfc_7515_requires(verifier, key):
    token = key.sign(claims("id"), headers={"crit": ["exp"], "exp": 1})
    assert reason(verifier, token) == "unsupported_crit"


@pytest.mark.parametrize("claimed", ["n\u00e9-123", "\u2603", "\udc80"])
def test_a_non_ascii_nonce_is_a_wrong_nonce_not_a_crash(verifier, key, claimed):
    assert reason(verifier, key.sign(claims("id", nonce=claimed)), nonce="n-123") == "wrong_nonce"


def test_a_signed_sub_with_a_lone_surrogate_is_malformed(verifier, key):
    assert reason(verifier, key.sign(claims("id", sub="abc\udc80"))) == "malformed"


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t"])
def test_a_valid_token_with_anything_after_it_is_malformed(clock, suffix):
    """Each part is matched whole. With a 3072-bit key the signature is 512 base64url characters, a multiple of 4:
    a "$"-anchored pattern let "signature\n" through and base64 decoding dropped the newline, so it verified."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.support.tokens import SigningKey

    big = SigningKey(private=rsa.generate_private_key(public_exponent=65537, key_size=3072))
    server = JsonServer({"keys": [big.jwk()]})
    try:
        verifier = CognitoJwtVerifier(issuer=ISSUER, user_pool_id=POOL_ID, client_ids=(CLIENT_ID,),
                                      jwks=JwksCache(server.url, timeout=2, clock=clock), leeway_seconds=30)
        token = big.sign(claims("id"))
        assert len(token.rsplit(".", 1)[1]) % 4 == 0
        assert verifier.verify(token).sub  # the token itself is good
        assert reason(verifier, token + suffix) == "malformed"
    finally:
        server.close()

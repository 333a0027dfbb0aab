"""Faults in every dependency end in the documented status, with nothing lost and nothing duplicated."""

from __future__ import annotations

import json

import pytest

from devstack.fault_proxy import AwsFault, FaultProxy
from devstack.stripe_standin import Fault, fake_key
from tests.support.tokens import SigningKey, claims


@pytest.fixture
def proxy(moto_server):
    fault_proxy = FaultProxy(moto_server.endpoint)
    yield fault_proxy
    fault_proxy.close()


def session_customer(stripe_standin, reply):
    return stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["customer"]


# --- Stripe ------------------------------------------------------------------------------------------------------
def test_stripe_refusing_connections_is_502(gateway, user, stripe_standin):
    _, tokens = user()
    reply = gateway(STRIPE_API_BASE="http://127.0.0.1:9").portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 502 and reply.json["error"] == "billing_provider_error"


def test_dropped_connection_on_create_is_retried_without_duplicate(gateway, user, stripe_standin):
    _, tokens = user()
    stripe_standin.inject(Fault(times=1, method="POST", path_prefix="/v1/customers", drop_connection=True))
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    assert len(stripe_standin.customers()) == 1


def test_429_burst_then_recovery_creates_one_customer(gateway, user, stripe_standin):
    _, tokens = user()
    gw = gateway()
    stripe_standin.inject(Fault(status=429, times=3, method="POST", path_prefix="/v1/customers"))
    for _ in range(3):
        reply = gw.portal(tokens["IdToken"], accept="application/json")
        assert reply.status == 502 and reply.json["error"] == "billing_provider_error"
    assert gw.portal(tokens["IdToken"]).status == 302
    assert len(stripe_standin.customers()) == 1


# --- Secrets Manager -------------------------------------------------------------------------------------------------
def test_secrets_manager_throttling_is_retried(gateway, user, proxy):
    _, tokens = user()
    proxy.inject(AwsFault(match="GetSecretValue", times=2))
    reply = gateway(AWS_ENDPOINT_URL_SECRETS_MANAGER=proxy.url).portal(tokens["IdToken"])
    assert reply.status == 302
    assert proxy.count("GetSecretValue") == 3


def test_secrets_manager_outage_keeps_serving_with_the_last_good_key(gateway, user, proxy):
    _, tokens = user()
    gw = gateway(AWS_ENDPOINT_URL_SECRETS_MANAGER=proxy.url, STRIPE_KEY_TTL_SECONDS="0")
    assert gw.portal(tokens["IdToken"]).status == 302
    proxy.down = True  # TTL 0: every request would re-read the secret
    assert gw.portal(tokens["IdToken"]).status == 302


def test_secrets_manager_outage_on_a_cold_start_is_503(gateway, user, proxy):
    _, tokens = user()
    proxy.down = True
    reply = gateway(AWS_ENDPOINT_URL_SECRETS_MANAGER=proxy.url).portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "stripe_key_unavailable"
    # Read at init (3 attempts, failing soft) and once more for the request (3 attempts), not again after.
    assert proxy.count("GetSecretValue") == 3 + 3


# --- DynamoDB -----------------------------------------------------------------------------------------------------
def test_dynamodb_outage_after_create_is_503_then_same_customer(gateway, user, proxy, stripe_standin, stack):
    sub, tokens = user()
    gw = gateway(AWS_ENDPOINT_URL_DYNAMODB=proxy.url)
    proxy.inject(AwsFault(match="PutItem", body="customer_id", times=100, status=500,
                          error_type="InternalServerError"))
    reply = gw.portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "customer_store_unavailable"
    assert len(stripe_standin.customers()) == 1  # created, but not mapped yet
    # The creation ticket's write, then the mapping's: botocore's standard retries, then a clean 503.
    assert proxy.count("PutItem") == 1 + 3
    proxy.faults.clear()
    retry = gateway(AWS_ENDPOINT_URL_DYNAMODB=proxy.url).portal(tokens["IdToken"])  # even a new environment
    assert retry.status == 302
    assert len(stripe_standin.customers()) == 1  # the idempotent create replayed the same customer
    assert session_customer(stripe_standin, retry) == stripe_standin.customers()[0]["id"]


def test_dynamodb_down_for_a_returning_user_on_a_warm_function_still_works(gateway, user, proxy, stripe_standin):
    _, tokens = user()
    gw = gateway(AWS_ENDPOINT_URL_DYNAMODB=proxy.url)
    first = gw.portal(tokens["IdToken"])
    proxy.down = True
    second = gw.portal(tokens["IdToken"])
    assert second.status == 302
    assert session_customer(stripe_standin, first) == session_customer(stripe_standin, second)


def test_dynamodb_down_on_a_cold_start_is_503_and_creates_nothing(gateway, user, proxy, stripe_standin):
    _, tokens = user()
    proxy.down = True
    reply = gateway(AWS_ENDPOINT_URL_DYNAMODB=proxy.url).portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "customer_store_unavailable"
    assert stripe_standin.customers() == []


# --- JWKS ------------------------------------------------------------------------------------------------------------
def test_flood_of_unknown_kids_fetches_jwks_at_most_once(gateway, user, proxy, stack):
    _, tokens = user()
    gw = gateway(COGNITO_JWKS_URL=f"{proxy.url}/{stack.user_pool_id}/.well-known/jwks.json")
    assert gw.portal(tokens["IdToken"]).status == 302
    forger = SigningKey()
    for index in range(100):
        forged = forger.sign(claims("id", iss=f"https://cognito-idp.us-east-1.amazonaws.com/{stack.user_pool_id}",
                                    aud=stack.client_id), headers={"kid": f"forged-{index}"})
        reply = gw.portal(forged, accept="application/json")
        assert reply.status == 401 and reply.json["error"] == "invalid_token"
    # The first forged kid downloads once (the last download had found its kid); that one lacks it, so inside
    # the next 10 s nothing more is downloaded (aws-jwt-verify's penalty box).
    assert proxy.count("jwks.json") == 2


def test_slow_jwks_is_a_bounded_503(gateway, user, proxy, stack):
    _, tokens = user()
    proxy.inject(AwsFault(match="jwks.json", delay=2.0, status=200, times=2))  # the init's download, the request's
    gw = gateway(COGNITO_JWKS_URL=f"{proxy.url}/{stack.user_pool_id}/.well-known/jwks.json", JWKS_TIMEOUT_SECONDS="0.5")
    reply = gw.portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "auth_unavailable"


# --- rotation under way ---------------------------------------------------------------------------------------
def test_key_rejected_mid_flight_on_create_is_retried_with_new_key_without_duplicate(gateway, user, stack,
                                                                                      stripe_standin):
    _, tokens = user()
    gw = gateway(STRIPE_KEY_TTL_SECONDS="3600")
    assert gw.module.portal_service().billing._keys.current() == stripe_standin.key  # key cached, no user yet
    new_key = stripe_standin.add_key(fake_key())
    stack.put_stripe_key(json.dumps({"api_key": new_key}))
    stripe_standin.revoke_key(stripe_standin.key)
    assert gw.portal(tokens["IdToken"]).status == 302
    assert len(stripe_standin.customers()) == 1


def test_forged_tokens_on_a_cold_start_read_the_secret_once_per_ttl(gateway, user, proxy):
    """Unauthenticated requests must not turn into Secrets Manager reads: 10 forged tokens while no key is
    cached (the secret cannot be read) cost one background read per TTL, not ten (after the init's own read)."""
    import time

    proxy.inject(AwsFault(match="GetSecretValue", times=100, status=400, error_type="ResourceNotFoundException"))
    gw = gateway(AWS_ENDPOINT_URL_SECRETS_MANAGER=proxy.url)
    forged = SigningKey().sign(claims())
    for _ in range(10):
        assert gw.portal(forged, accept="application/json").status == 401
        time.sleep(0.05)  # the background read of the previous request has ended
    assert proxy.count("GetSecretValue") == 1 + 1


# --- init: everything the first request needs, fetched at full CPU, failing soft ---------------------------------
def test_init_fetches_the_jwks_and_key_and_connects_to_stripe(gateway, stripe_standin):
    from portal_gateway.http_pool import POOL

    POOL.clear()
    service = gateway().module._service
    assert service is not None and service.verifier.jwks._keys and service.billing._keys._key is not None
    host, port = stripe_standin.base_url.split("//")[1].split(":")
    assert POOL._idle.get(("http", host, int(port)))  # a connection waits for the first request
    assert stripe_standin.calls() == []  # connected, not called: no Stripe request at init


def test_a_failed_init_never_crashes_the_environment_and_the_first_request_retries(gateway, user, proxy, stack):
    _, tokens = user()
    proxy.down = True  # the JWKS and Secrets Manager cannot be reached while the environment starts
    gw = gateway(COGNITO_JWKS_URL=f"{proxy.url}/{stack.user_pool_id}/.well-known/jwks.json",
                 AWS_ENDPOINT_URL_SECRETS_MANAGER=proxy.url)
    assert gw.module._service is not None
    proxy.down = False
    assert gw.portal(tokens["IdToken"]).status == 302  # no penalty left over from the failed init

"""Priming (portal_gateway/priming.py): init rehearses a whole portal request through a throwaway service whose
outbound requests are answered in memory. It must take the real request's path, leave no trace (no call to
Stripe or AWS, no metric, no log line, nothing in the real service's caches) and be refused by any real
verifier."""

from __future__ import annotations

import json

import aws_lambda_powertools.logging.logger as powertools_logging
import pytest
from portal_gateway import priming
from portal_gateway.config import Settings
from portal_gateway.errors import InvalidToken
from portal_gateway.http_pool import POOL
from portal_gateway.identity.tokens import CognitoJwtVerifier, JwksCache
from portal_gateway.service import PortalOptions

from tests.functional.test_observability import emitted


@pytest.fixture
def settings(stack, stripe_standin, monkeypatch) -> Settings:
    """The function's settings, with its environment (AWS credentials, endpoints) in place as in Lambda."""
    env = stack.service_env(stripe_api_base=stripe_standin.base_url, return_url="https://shop.example.com/")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env(env)


def test_the_rehearsal_takes_a_returning_users_path_and_nothing_else(settings, stripe_standin):
    """The throwaway service, with every outbound request answered by the priming world, opens the portal the way
    a returning user's first request does: JWKS, key, user status, mapping, portal session. A change to that path
    that the world cannot answer fails here, not silently at init."""
    world = priming.PrimingWorld(settings)
    service = priming.priming_service(settings)
    idle = POOL.idle_count()
    with priming.in_memory(world):
        assert service.open_portal(priming.PRIMING_TOKEN, PortalOptions()) == priming.PRIMING_PORTAL_URL
        assert service.open_portal(priming.PRIMING_TOKEN, PortalOptions()) == priming.PRIMING_PORTAL_URL
    # (the key is read in a thread the request starts: it too is answered in memory)
    assert sorted(world.requests) == sorted(["GET /.well-known/jwks.json", "GetSecretValue", "AdminGetUser", "GetItem",
                                             "POST /v1/billing_portal/sessions", "POST /v1/billing_portal/sessions"])
    service.resolver.clear()
    with priming.in_memory(world):
        status = service.billing_status(priming.PRIMING_TOKEN)  # the mapping, then the customer's projection
    assert [s["status"] for s in status["subscriptions"]] == ["active"] and status["entitlements"] == ["priming"]
    assert world.requests[-2:] == ["GetItem", "GetItem"]
    assert POOL.idle_count() == idle
    assert stripe_standin.calls() == []


def test_the_throwaway_service_names_no_real_resource(settings):
    """Should a request ever escape the in-memory answers, it must not reach the deployment's own resources."""
    rehearsal = priming.priming_settings(settings)
    real = {settings.customers_table, settings.stripe_secret_id, settings.user_pool_id, settings.jwks_url,
            settings.stripe_api_base, settings.issuer, *settings.client_ids}
    assert not real & {rehearsal.customers_table, rehearsal.stripe_secret_id, rehearsal.user_pool_id,
                       rehearsal.jwks_url, rehearsal.stripe_api_base, rehearsal.issuer, *rehearsal.client_ids}
    assert rehearsal.stripe_mode == settings.stripe_mode  # the same key checks as the real service's


def test_no_real_verifier_accepts_the_priming_token(settings):
    """Its key is in no JWKS but the rehearsal's: a verifier of the real pool refuses it, and so would one that
    somehow held the priming key but checks the real pool's issuer and clients."""
    real = CognitoJwtVerifier(issuer=settings.issuer, user_pool_id=settings.user_pool_id,
                              client_ids=settings.client_ids, jwks=JwksCache(settings.jwks_url))
    with pytest.raises(InvalidToken) as refused:
        real.verify(priming.PRIMING_TOKEN)
    assert refused.value.reason == "unknown_kid"
    holding_the_key = CognitoJwtVerifier(issuer=settings.issuer, user_pool_id=settings.user_pool_id,
                                         client_ids=settings.client_ids, jwks=JwksCache(priming.PRIMING_JWKS_URL))
    with priming.in_memory(priming.PrimingWorld(settings)), pytest.raises(InvalidToken) as refused:
        holding_the_key.verify(priming.PRIMING_TOKEN)
    assert refused.value.reason == "wrong_issuer"


def test_init_primes_the_first_request_without_a_trace(gateway, user, stripe_standin, capsys, monkeypatch):
    """After init the handler has served a caller (the rehearsal), yet Stripe saw nothing, nothing was logged or
    counted, the real service knows no customer, and a real click then opens the user's own portal, logged as
    the environment's cold start."""
    monkeypatch.setattr(powertools_logging, "is_cold_start", True)  # as in a new execution environment
    gw = gateway(POWERTOOLS_LOG_LEVEL="DEBUG")
    assert stripe_standin.calls() == []
    metrics, logs = emitted(capsys)
    assert metrics == []
    assert not [r for r in logs if r["message"] in ("Portal session created", "Request refused")]
    assert not [r for r in logs if "Rehearsal" in r["message"]]  # both rehearsals ended as they should
    assert set(gw.module.INIT_SECONDS) == {"warm_up", "route_rehearsal", "first_request_rehearsal"}  # all ran
    service = gw.module.portal_service()
    assert len(service.resolver.cache) == 0 and len(service.users.cache) == 0
    with pytest.raises(InvalidToken):
        service.verifier.verify(priming.PRIMING_TOKEN)  # the real verifier never learnt the priming key
    sub, tokens = user()
    reply = gw.portal(tokens["IdToken"], accept="text/html")
    assert reply.status == 302 and reply.location != priming.PRIMING_PORTAL_URL
    assert reply.location.startswith(stripe_standin.base_url)
    assert stripe_standin.calls()[-1]["path"] == "/v1/billing_portal/sessions"
    _, logs = emitted(capsys)
    created = [r for r in logs if r["message"] == "Portal session created"]
    assert len(created) == 1 and created[0]["cognito_sub"] == sub and created[0]["cold_start"] is True
    assert created[0]["function_request_id"] != "init"


def test_a_failing_rehearsal_leaves_a_warning_and_a_working_function(gateway, user, monkeypatch, capsys):
    """The rehearsal is an optimisation: when its world cannot answer (here: a portal session refused), init goes
    on, says so once, and the real service is the one that serves."""
    def refusing(self, method, url, headers, body):
        status, answer_headers, data = original(self, method, url, headers, body)
        if url.endswith("/v1/billing_portal/sessions"):
            return 500, answer_headers, json.dumps({"error": {"type": "api_error"}}).encode()
        return status, answer_headers, data

    original = priming.PrimingWorld.answer
    monkeypatch.setattr(priming.PrimingWorld, "answer", refusing)
    gw = gateway()
    metrics, logs = emitted(capsys)
    warned = [r for r in logs if r["message"] == "Rehearsal of a first request did not end as it should"]
    assert len(warned) == 1 and (warned[0]["route"], warned[0]["status"]) == ("GET /portal", 502)
    assert metrics == []  # the rehearsal's refusal was not counted as a user's
    _, tokens = user()
    assert gw.portal(tokens["IdToken"]).status == 302


def test_the_rehearsal_can_be_switched_off(gateway, user):
    """INIT_REHEARSAL=false: the escape hatch (and how `make bench` measures what the rehearsal saves)."""
    gw = gateway(INIT_REHEARSAL="false")
    assert set(gw.module.INIT_SECONDS) == {"warm_up", "route_rehearsal"}
    _, tokens = user()
    assert gw.portal(tokens["IdToken"]).status == 302

"""Stripe failures, the Stripe secret, rotation, and secrets hygiene in logs and bodies."""

from __future__ import annotations

import json

import pytest

from devstack.stripe_standin import Fault, fake_key


def test_portal_not_configured_is_503_with_admin_hint(gateway, user, stripe_standin):
    stripe_standin.remove_default_portal_configuration("test")
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503
    assert reply.json["error"] == "portal_not_configured"
    assert "Customer portal" in reply.json["message"]
    assert "dashboard.stripe.com" not in reply.json["message"]  # Stripe's own text never reaches the user


def test_explicit_portal_configuration_is_sent(gateway, user, stripe_standin):
    stripe_standin.remove_default_portal_configuration("test")
    config_id = stripe_standin.create_default_portal_configuration("test", is_default=False)
    _, tokens = user()
    reply = gateway(PORTAL_CONFIGURATION_ID=config_id).portal(tokens["IdToken"])
    assert reply.status == 302
    assert stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["configuration"] == config_id


@pytest.mark.parametrize("fault", [
    Fault(status=500, times=5, path_prefix="/v1/billing_portal"),
    Fault(status=429, times=5, path_prefix="/v1/billing_portal"),
    Fault(status=429, times=5, path_prefix="/v1/billing_portal", should_retry=False),
])
def test_stripe_failure_is_502_generic(gateway, user, stripe_standin, fault, capsys):
    _, tokens = user()
    stripe_standin.inject(fault)
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 502
    assert reply.json == {"error": "billing_provider_error",
                          "message": "The billing provider did not answer as expected. Please try again in a moment."}
    assert "Something went wrong on Stripe" not in capsys.readouterr().out


def test_429_with_should_retry_is_retried_and_succeeds(gateway, user, stripe_standin):
    _, tokens = user()
    stripe_standin.inject(Fault(status=429, times=1, path_prefix="/v1/billing_portal", should_retry=True))
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    assert len(stripe_standin.calls("POST", "/v1/billing_portal")) == 2


def test_one_transient_500_on_create_is_retried_without_duplicate(gateway, user, stripe_standin):
    sub, tokens = user()
    stripe_standin.inject(Fault(status=500, times=1, method="POST", path_prefix="/v1/customers"))
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    assert len(stripe_standin.customers()) == 1


def test_stripe_timeout_is_bounded_and_502(gateway, user, stripe_standin):
    _, tokens = user()
    stripe_standin.inject(Fault(status=200, times=3, delay=2.0, path_prefix="/v1/billing_portal"))
    reply = gateway(STRIPE_TIMEOUT_SECONDS="0.5", STRIPE_MAX_NETWORK_RETRIES="0").portal(
        tokens["IdToken"], accept="application/json")
    assert reply.status == 502


# --- the secret --------------------------------------------------------------------------------------------
def test_bare_key_in_secret_works(gateway, user, stripe_standin, stack):
    stack.put_stripe_key(stripe_standin.key)
    _, tokens = user()
    assert gateway().portal(tokens["IdToken"]).status == 302


@pytest.mark.parametrize("value, detail", [
    ("", "empty"),
    ('{"key": "sk_test_x"}', "api_key"),
    ("pk_test_abcdefghijkl", "publishable"),
    ("not a key at all", "must start with sk_test_"),
])
def test_malformed_secret_is_503_with_clear_log(gateway, user, stack, stripe_standin, value, detail, capsys):
    if value:
        stack.put_stripe_key(value)
    else:
        stack.moto.client("secretsmanager").put_secret_value(SecretId=stack.secret_id, SecretString=" ")
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "stripe_key_unavailable"
    out = capsys.readouterr().out
    assert detail in out
    assert stripe_standin.requests == []


def test_missing_secret_is_503(gateway, user, stripe_standin):
    _, tokens = user()
    reply = gateway(STRIPE_SECRET_ID="does-not-exist").portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "stripe_key_unavailable"


def test_live_key_in_test_mode_is_mode_mismatch(gateway, user, stack, stripe_standin, capsys):
    live_key = stripe_standin.add_key(fake_key("sk", "live"))
    stack.put_stripe_key(json.dumps({"api_key": live_key}))
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "stripe_mode_mismatch"
    out = capsys.readouterr().out
    assert "STRIPE_MODE is 'test' but the secret holds a live-mode key" in out
    assert live_key not in out and live_key[-8:] not in out
    assert stripe_standin.requests == []


def test_restricted_key_works(gateway, user, stack, stripe_standin):
    restricted = stripe_standin.add_key(fake_key("rk", "test"),
                                        frozenset({"customers_write", "portal_write"}))
    stack.put_stripe_key(restricted)
    _, tokens = user()
    assert gateway().portal(tokens["IdToken"]).status == 302


def test_restricted_key_missing_permission_is_503(gateway, user, stack, stripe_standin):
    restricted = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"customers_write", "portal_read"}))
    stack.put_stripe_key(restricted)
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "stripe_key_missing_permission"


def test_rotated_key_is_picked_up_at_once_on_authentication_error(gateway, user, stack, stripe_standin):
    _, tokens = user()
    gw = gateway(STRIPE_KEY_TTL_SECONDS="3600")
    assert gw.portal(tokens["IdToken"]).status == 302
    old_key = stripe_standin.key
    new_key = stripe_standin.add_key(fake_key("sk", "test"))
    stack.put_stripe_key(json.dumps({"api_key": new_key}))
    stripe_standin.revoke_key(old_key)  # the admin expired the old key in the Dashboard
    reply = gw.portal(tokens["IdToken"])
    assert reply.status == 302  # one 401 from Stripe, one re-read, one retry
    assert gw.module.portal_service().billing._keys.reads == 2


def test_rejected_key_with_no_newer_secret_is_503(gateway, user, stripe_standin):
    _, tokens = user()
    gw = gateway()
    assert gw.portal(tokens["IdToken"]).status == 302
    stripe_standin.revoke_key(stripe_standin.key)
    reply = gw.portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "stripe_key_rejected"


def test_key_is_cached_between_requests(gateway, user, stripe_standin):
    _, tokens = user()
    gw = gateway()
    for _ in range(3):
        gw.portal(tokens["IdToken"])
    assert gw.module.portal_service().billing._keys.reads == 1


# --- hygiene ---------------------------------------------------------------------------------------------------
def test_logs_and_bodies_never_carry_key_token_email_or_portal_url(gateway, user, stripe_standin, capsys):
    _, tokens = user(email="secret.person@example.com")
    gw = gateway()
    replies = [
        gw.portal(tokens["IdToken"]),
        gw.portal(tokens["AccessToken"], accept="application/json"),
        gw.form({"id_token": tokens["IdToken"]}),
        gw.portal(tokens["IdToken"] + "x"),
        gw.portal(tokens["IdToken"], query={"return_to": "https://evil.example.net/"}),
    ]
    stripe_standin.revoke_key(stripe_standin.key)
    replies.append(gw.portal(tokens["IdToken"], accept="text/html"))
    captured = capsys.readouterr()
    logs = captured.out + captured.err
    assert "Portal session created" in logs and "Request refused" in logs  # the logs really were captured
    session_urls = [s["url"] for s in stripe_standin.account.sessions.values()]
    assert session_urls
    for secret in [stripe_standin.key, tokens["IdToken"], tokens["AccessToken"], "secret.person@example.com",
                   tokens["IdToken"].split(".")[1], *session_urls]:
        assert secret not in logs
    for reply in replies[3:]:
        assert stripe_standin.key not in reply.body and tokens["IdToken"] not in reply.body
        assert "Traceback" not in reply.body


def test_invalid_configuration_fails_fast_naming_the_variable(gateway, monkeypatch):
    from portal_gateway.config import ConfigError

    with pytest.raises(ConfigError, match="STRIPE_MODE"):
        gateway(STRIPE_MODE="production")
    with pytest.raises(ConfigError, match="ALLOWED_RETURN_URLS"):
        gateway(ALLOWED_RETURN_URLS="javascript:alert(1)")


# --- AWS dependencies down -------------------------------------------------------------------------------------
def test_dynamodb_unavailable_is_clean_503_and_creates_nothing(gateway, user, stripe_standin):
    _, tokens = user()
    reply = gateway(CUSTOMERS_TABLE="no-such-table").portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "customer_store_unavailable"
    assert stripe_standin.customers() == []


def test_secrets_manager_unreachable_is_503(gateway, user, stripe_standin):
    _, tokens = user()
    reply = gateway(AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:9").portal(
        tokens["IdToken"], accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "stripe_key_unavailable"
    assert stripe_standin.requests == []


@pytest.mark.parametrize("alarms_notify, says_notified", [("false", False), ("true", True)])
def test_the_page_says_the_owner_was_notified_only_when_an_alarm_topic_notifies(gateway, user, stack, capsys,
                                                                                alarms_notify, says_notified):
    _, tokens = user()
    stack.put_stripe_key('{"api_key":"REPLACE_WITH_STRIPE_KEY"}')  # the stack's placeholder: the operator must act
    reply = gateway(ALARMS_NOTIFY=alarms_notify).portal(tokens["IdToken"], accept="text/html")
    assert reply.status == 503
    assert ("The site owner has been notified." in reply.body) == says_notified
    output = capsys.readouterr().out
    assert '"StripeKeyUnusable":[1.0]' in output  # alarmed at the first refused user

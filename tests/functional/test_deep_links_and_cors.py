"""Deep links (server-side presets only) and CORS for fetch() callers."""

from __future__ import annotations

import pytest

from devstack.stripe_standin import fake_key

RETURN_TO = "https://shop.example.com/plans"


def session_of(stripe_standin, reply):
    return stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]


def first_visit(gateway, user, stripe_standin):
    sub, tokens = user()
    gw = gateway()
    gw.portal(tokens["IdToken"])
    [customer] = stripe_standin.customers()
    return gw, tokens, customer["id"]


def test_payment_method_update_flow_returns_to_allowed_url(gateway, user, stripe_standin):
    gw, tokens, _ = first_visit(gateway, user, stripe_standin)
    reply = gw.portal(tokens["IdToken"], query={"flow": "payment_method_update", "return_to": RETURN_TO})
    assert reply.status == 302
    assert session_of(stripe_standin, reply)["flow"] == {
        "type": "payment_method_update",
        "after_completion": {"type": "redirect", "redirect": {"return_url": RETURN_TO}}}


@pytest.mark.parametrize("flow", ["subscription_cancel", "subscription_update"])
def test_subscription_flow_uses_the_customers_only_active_subscription(gateway, user, stripe_standin, flow):
    gw, tokens, customer_id = first_visit(gateway, user, stripe_standin)
    stripe_standin.add_subscription(customer_id, "canceled")
    subscription = stripe_standin.add_subscription(customer_id, "active")
    other_customer = stripe_standin.add_customer(email="someone@example.com")
    stripe_standin.add_subscription(other_customer, "active")
    reply = gw.form({"id_token": tokens["IdToken"], "flow": flow})
    assert reply.status == 303
    session = session_of(stripe_standin, reply)
    assert session["flow"]["type"] == flow
    assert session["flow"][flow] == {"subscription": subscription}
    assert session["flow"]["after_completion"]["redirect"]["return_url"] == "https://shop.example.com/account"


@pytest.mark.parametrize("statuses", [[], ["active", "trialing"], ["canceled"]])
def test_subscription_flow_without_exactly_one_opens_portal_home(gateway, user, stripe_standin, statuses, capsys):
    gw, tokens, customer_id = first_visit(gateway, user, stripe_standin)
    for status in statuses:
        stripe_standin.add_subscription(customer_id, status)
    reply = gw.portal(tokens["IdToken"], query={"flow": "subscription_cancel"})
    assert reply.status == 302
    assert session_of(stripe_standin, reply)["flow"] is None
    assert "Deep link needs exactly one active subscription" in capsys.readouterr().out


@pytest.mark.parametrize("flow", ["subscription_update_confirm", "delete_everything", '{"type":"x"}', "x" * 5000])
def test_unknown_or_raw_flow_is_400(gateway, user, stripe_standin, flow):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json", query={"flow": flow})
    assert reply.status == 400 and reply.json["error"] == "invalid_request"
    assert stripe_standin.calls("POST", "/v1/billing_portal") == []


def test_restricted_key_without_subscription_read_still_matches_by_email(gateway, user, stack, stripe_standin):
    restricted = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"customers_write", "portal_write"}))
    stack.put_stripe_key(restricted)
    legacy = stripe_standin.add_customer(email="ada@example.com")
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302 and session_of(stripe_standin, reply)["customer"] == legacy


# --- CORS ----------------------------------------------------------------------------------------------------
def test_cors_only_for_allowed_origins(gateway, user):
    _, tokens = user()
    gw = gateway(ALLOWED_ORIGINS="https://shop.example.com,https://www.example.com")
    ok = gw.portal(tokens["IdToken"], accept="application/json", origin="https://www.example.com")
    assert ok.status == 200 and ok.headers["Access-Control-Allow-Origin"] == "https://www.example.com"
    evil = gw.portal(tokens["IdToken"], accept="application/json", origin="https://evil.example.net")
    assert "Access-Control-Allow-Origin" not in evil.headers
    preflight = gw.call("OPTIONS", "/portal", headers={
        "origin": "https://shop.example.com", "access-control-request-method": "GET",
        "access-control-request-headers": "authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    refused = gw.call("OPTIONS", "/portal", headers={"origin": "https://evil.example.net",
                                                      "access-control-request-method": "GET"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    # Every answer varies by Origin, also those without CORS headers, so no cache hands one origin's answer
    # to another.
    for reply in (ok, evil, preflight, refused, gw.call("GET", "/health", headers={"origin": "https://x.example"})):
        assert "Origin" in [v.strip() for v in reply.headers.get("Vary", "").split(",")], reply.headers


def test_no_cors_headers_without_allowed_origins(gateway, user):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json", origin="https://shop.example.com")
    assert "Access-Control-Allow-Origin" not in reply.headers


def test_allowed_origins_must_be_origins(gateway):
    from portal_gateway.config import ConfigError

    with pytest.raises(ConfigError, match="ALLOWED_ORIGINS"):
        gateway(ALLOWED_ORIGINS="https://shop.example.com/path")

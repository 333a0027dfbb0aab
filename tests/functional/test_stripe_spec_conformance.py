"""The Stripe stand-in and the service held to a reference nobody here wrote: every request the service (and the
key checks) sends, and every answer the stand-in gives, checked against stripe-python's generated parameter
types and resource classes (tests/support/stripe_reference.py). A mismatch fails the test."""

from __future__ import annotations

import json

import pytest
from portal_gateway.checks.stripe_key_check import check_stripe_key

from devstack.stripe_standin import Fault, fake_key
from tests.support.stripe_reference import (
    OPERATIONS,
    Exchange,
    check_error,
    check_request,
    check_response,
    operation_name,
    problems_in,
)


def exchanges(stripe_standin) -> list[Exchange]:
    return [Exchange(r["method"], r["path"], r["params"], r["status"], r["body"])
            for r in stripe_standin.requests if r["status"] is not None]


def test_everything_the_service_sends_and_the_standin_answers_matches_stripes_types(gateway, user, stripe_standin,
                                                                                     stack):
    stripe_standin.add_product("Pro", lookup_key="pro_monthly")
    gw = gateway(CHECKOUT_PRICES="pro_monthly,team_monthly")
    # a new user (create), an email match (list with expand, then update), a returning user
    _, new_user = user("ada", email="ada@example.com", name="Ada Lovelace")
    first = gw.portal(new_user["IdToken"])
    legacy = stripe_standin.add_customer(email="grace@example.com", name="Grace", subscription_status="active")
    _, matched = user("grace", email="grace@example.com", name="Grace Hopper")
    gw.portal(matched["IdToken"])
    # every deep link, and one whose feature is off (refused, then the home page)
    stripe_standin.add_subscription(stripe_standin.account.sessions[first.location.rsplit("/", 1)[-1]]["customer"])
    for flow in ("payment_method_update", "customer_update", "subscription_cancel", "subscription_update",
                 "subscription_pause"):
        assert gw.portal(new_user["IdToken"], query={"flow": flow, "locale": "fr"}).status == 302
    stripe_standin.set_portal_feature("subscription_pause", False)
    gw.portal(new_user["IdToken"], query={"flow": "subscription_pause"})
    # Subscribe (prices by lookup key, a Checkout Session; a subscriber gets the portal), an offered key with no
    # price in Stripe, a Customer Session
    _, buyer = user("bea", email="bea@example.com", name="Bea")
    bearer = {"authorization": f"Bearer {buyer['IdToken']}", "accept": "application/json"}
    assert gw.call("GET", "/billing/checkout", query={"price": "pro_monthly"}, headers=bearer).status == 200
    assert gw.call("GET", "/billing/checkout", query={"price": "team_monthly"}, headers=bearer).status == 409
    assert gw.call("POST", "/billing/customer-session", headers=bearer).status == 200
    assert gw.call("GET", "/billing/checkout", query={"price": "pro_monthly"}, headers={
        "authorization": f"Bearer {new_user['IdToken']}", "accept": "application/json"}).json["kind"] == "portal"
    # a deleted customer (retrieve answers the deleted shape), rate limits and an outage
    stripe_standin.delete_customer(legacy)
    gw.portal(matched["IdToken"])
    stripe_standin.inject(Fault(status=429, times=1, path_prefix="/v1/billing_portal"))
    stripe_standin.inject(Fault(status=500, times=1, path_prefix="/v1/billing_portal"))
    gw.portal(new_user["IdToken"])
    # another account's key: the mapped customer is missing for it
    other = stripe_standin.add_account()
    stack.put_stripe_key(json.dumps({"api_key": stripe_standin.add_key(fake_key("sk", "test"), account=other)}))
    gateway().portal(new_user["IdToken"])
    # the key checks of rotation, rotate-key and check (account, probes, configurations)
    check_stripe_key(stripe_standin.key, expected_mode="test", api_base=stripe_standin.base_url)
    config_id = stripe_standin.account.default_configuration["test"]
    check_stripe_key(stripe_standin.key, expected_mode="test", api_base=stripe_standin.base_url,
                     portal_configuration_id=config_id)

    seen = exchanges(stripe_standin)
    exercised = {operation_name(e.method, e.path) for e in seen}
    assert exercised == {f"{method} {pattern}" for method, pattern, _, _ in OPERATIONS}  # every one we use
    assert {e.status for e in seen} >= {200, 400, 404, 429, 500}
    problems = problems_in(seen)
    assert problems == [], "\n".join(problems)


# --- the reference itself can fail ----------------------------------------------------------------------------
def test_the_reference_refuses_what_stripe_would_not_send_or_accept():
    # requests
    assert check_request("POST", "/v1/customers", {"email": "a@example.com", "nickname": "x"}) == \
        ["nickname: unknown parameter"]
    assert check_request("POST", "/v1/customers", {"name": "x" * 257})[0].startswith("name: 257 characters")
    assert check_request("POST", "/v1/billing_portal/sessions", {
        "customer": "cus_1", "flow_data": {"type": "subscription_explode"}})
    assert check_request("POST", "/v1/billing_portal/sessions", {
        "customer": "cus_1", "flow_data": {"type": "subscription_cancel", "subscription_cancel": {}}}) == \
        ["flow_data.subscription_cancel.subscription: required parameter missing"]
    assert check_request("GET", "/v1/customers", {"limit": "ten"}) == ["limit: expected an integer"]
    assert check_request("POST", "/v1/billing_portal/sessions", {"customer": "cus_1", "locale": "xx"})
    # responses
    customer = {"id": "cus_1", "object": "customer", "created": 1_760_000_000, "livemode": False}
    assert check_response("POST", "/v1/customers", 200, customer) == []
    assert check_response("POST", "/v1/customers", 200, {**customer, "created": 1_760_000_000_123}) == \
        ["created: 1760000000123 is not whole Unix seconds"]
    assert check_response("POST", "/v1/customers", 200, {k: v for k, v in customer.items() if k != "livemode"}) == \
        ["livemode: required field missing"]
    deleted = {"id": "cus_1", "object": "customer", "deleted": True}
    assert check_response("GET", "/v1/customers/cus_1", 200, deleted) == []
    assert check_response("GET", "/v1/subscriptions", 200, {"object": "list", "data": [{"id": "sub_1"}],
                                                             "has_more": False, "url": "/v1/subscriptions"})
    assert check_error({"error": {"type": "rate_limit_error", "message": "Too many requests."}})
    assert check_error({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "x"}}) == []


@pytest.mark.parametrize("status", [429, 500])
def test_standin_faults_answer_in_stripes_error_shape(gateway, user, stripe_standin, status):
    _, tokens = user()
    stripe_standin.inject(Fault(status=status, times=5, path_prefix="/v1/customers"))
    gateway().portal(tokens["IdToken"])
    faults = [e for e in exchanges(stripe_standin) if e.status == status]
    assert faults and all(check_error(e.body) == [] for e in faults)

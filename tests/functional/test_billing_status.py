"""The billing status: GET /billing/status answers from the projection the webhook function keeps, and the
webhook function applies Stripe's events as Stripe delivers them (signed, retried, duplicated, out of order).

Real parts throughout: the portal and webhook functions' handlers with their configuration in the environment,
moto for the table and the secrets, the Stripe stand-in delivering its events over HTTP to the webhook function
served on loopback, `stripe-portal-admin webhooks setup` registering the endpoint, stripe-python checking the
signatures.
"""

from __future__ import annotations

import json
import time

import pytest
import stripe
from portal_gateway.aws.mapping_store import mapping_key
from portal_gateway.aws.projection_store import projection_key
from portal_gateway.billing.status_projection import HANDLED_EVENTS, project

from devstack.aws_standin import add_webhook_secret
from devstack.http_api import load_handler_module
from devstack.stripe_standin import Fault
from devstack.stripe_webhooks import signature_header
from tests.deploy.readme_script import ROOT
from tests.functional.conftest import deliver, reset_logging, settle


def stored(stack, customer_id: str) -> dict | None:
    item = stack.moto.client("dynamodb").get_item(TableName=stack.table_name, ConsistentRead=True, Key={
        "pk": {"S": projection_key("test", customer_id)}}).get("Item")
    return item


def table_items(stack) -> list[dict]:
    return stack.moto.client("dynamodb").scan(TableName=stack.table_name)["Items"]


def test_a_user_without_a_customer_gets_the_empty_answer_and_nothing_is_created(billing, user, stripe_standin):
    _, tokens = user()
    reply = billing.status(tokens["IdToken"])
    assert reply.status == 200
    answer = reply.json
    assert answer.pop("client_reference_id").startswith("spg1_")  # for a Payment Link (test_purchases.py)
    assert answer == {"version": 1, "has_billing_account": False, "subscriptions": [], "entitlements": []}
    assert stripe_standin.customers() == [] and stripe_standin.calls("POST", "/v1/customers") == []
    calls = billing.portal_calls()
    for _ in range(3):  # a page asking on every view: Stripe is asked again only after NO_MATCH_RECHECK_SECONDS
        assert billing.status(tokens["IdToken"]).json["has_billing_account"] is False
    assert billing.portal_calls() == calls


def test_a_payment_link_buyer_is_matched_by_verified_email_and_sees_only_what_a_page_needs(billing, user, stack,
                                                                                           stripe_standin):
    price = stripe_standin.add_product("Pro", lookup_key="pro_monthly", features=("premium", "api-access"))
    bought = stripe_standin.add_customer(email="ada@example.com", name="Ada L")
    stripe_standin.add_subscription(bought, "active", price_id=price)
    sub, tokens = user()
    reply = billing.status(tokens["IdToken"])
    assert reply.status == 200, reply.body
    answer = reply.json
    assert answer["has_billing_account"] is True and answer["entitlements"] == ["api-access", "premium"]
    (subscription,) = answer["subscriptions"]
    assert subscription["status"] == "active" and subscription["items"][0]["lookup_key"] == "pro_monthly"
    assert subscription["items"][0]["price"] == price and subscription["cancel_at_period_end"] is False
    assert isinstance(subscription["current_period_end"], int)
    # Nothing else about the customer: no id, no email, no name.
    assert bought not in reply.body and "ada@" not in reply.body and "Ada" not in reply.body
    assert len(stripe_standin.customers()) == 1  # matched, not created
    mapping = stack.moto.client("dynamodb").get_item(TableName=stack.table_name, Key={
        "pk": {"S": mapping_key("test", stack.user_pool_id, sub)}})["Item"]
    assert mapping["customer_id"]["S"] == bought
    # Stored: the next status request reads one item and asks Stripe nothing.
    calls = billing.portal_calls()
    assert billing.status(tokens["IdToken"]).json == answer
    assert billing.portal_calls() == calls


def test_webhooks_keep_the_status_current_with_no_stripe_call_per_status_request(billing, user, stripe_standin):
    _, tokens = user()
    assert billing.portal.portal(tokens["IdToken"]).status == 302  # the first click creates her customer
    (customer,) = stripe_standin.customers()
    assert billing.status(tokens["IdToken"]).json["subscriptions"] == []  # filled once from Stripe
    # (With no live subscription, a status request also looks for a paying customer by email, at most every
    # NO_MATCH_RECHECK_SECONDS: this test's requests all fall within one such window.)
    billing.portal.module.portal_service().resolver._unmatched.ttl = 3600
    calls = billing.portal_calls()

    price = stripe_standin.add_product("Pro", lookup_key="pro_monthly", features=("premium",))
    subscription = stripe_standin.add_subscription(customer["id"], "active", price_id=price)
    settle(stripe_standin)
    answer = billing.status(tokens["IdToken"]).json
    assert [s["status"] for s in answer["subscriptions"]] == ["active"] and answer["entitlements"] == ["premium"]

    stripe_standin.update_subscription(subscription, cancel_at_period_end=True)
    settle(stripe_standin)
    assert billing.status(tokens["IdToken"]).json["subscriptions"][0]["cancel_at_period_end"] is True

    stripe_standin.cancel_subscription(subscription)
    settle(stripe_standin)
    answer = billing.status(tokens["IdToken"]).json
    assert answer.pop("client_reference_id").startswith("spg1_")
    assert answer == {"version": 1, "has_billing_account": True, "subscriptions": [], "entitlements": []}
    assert billing.portal_calls() == calls  # every status request above: no Stripe call
    delivered = {d.event_type for d in stripe_standin.deliverer.deliveries if d.status == 200}
    assert {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
            "entitlements.active_entitlement_summary.updated"} <= delivered


def test_the_answer_is_the_callers_own_cacheable_briefly_and_revalidated_by_etag(billing, user, stripe_standin):
    _, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    first = billing.status(tokens["IdToken"])
    assert first.headers["Cache-Control"] == "private, max-age=5"
    assert "Authorization" in first.headers["Vary"]
    etag = first.headers["ETag"]
    again = billing.status(tokens["IdToken"], **{"if-none-match": etag})
    assert again.status == 304 and again.body == "" and again.headers["ETag"] == etag
    (customer,) = stripe_standin.customers()
    stripe_standin.add_subscription(customer["id"], "trialing",
                                    price_id=stripe_standin.add_product("Pro", lookup_key="pro"))
    settle(stripe_standin)
    changed = billing.status(tokens["IdToken"], **{"if-none-match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert changed.json["subscriptions"][0]["status"] == "trialing"


def test_the_status_route_takes_no_token_in_the_url_and_refuses_a_missing_or_bad_one(billing, user):
    _, tokens = user()
    assert billing.portal.call("GET", "/billing/status", headers={"accept": "application/json"}).status == 401
    in_url = billing.portal.call("GET", "/billing/status", query={"id_token": tokens["IdToken"]},
                                 headers={"accept": "application/json"})
    assert in_url.status == 400 and in_url.json["error"] == "token_in_query_string"
    assert billing.status(tokens["IdToken"][:-4] + "AAAA").json["error"] == "invalid_token"


def test_a_deleted_customer_drops_its_mapping_and_the_next_click_resolves_again(billing, user, stack,
                                                                               stripe_standin):
    sub, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (customer,) = stripe_standin.customers()
    stripe_standin.add_subscription(customer["id"], "active", price_id=stripe_standin.add_product(
        "Pro", lookup_key="pro", features=("premium",)))
    settle(stripe_standin)
    assert billing.status(tokens["IdToken"]).json["entitlements"] == ["premium"]

    stripe_standin.delete_customer(customer["id"])
    settle(stripe_standin)
    key = mapping_key("test", stack.user_pool_id, sub)
    assert "Item" not in stack.moto.client("dynamodb").get_item(TableName=stack.table_name, Key={"pk": {"S": key}})
    assert stored(stack, customer["id"])["deleted"]["BOOL"] is True
    # This environment still remembered the mapping; the deleted projection makes it let go.
    assert billing.status(tokens["IdToken"]).json["has_billing_account"] is False
    assert billing.portal.portal(tokens["IdToken"]).status == 302
    (fresh,) = stripe_standin.customers()
    assert fresh["id"] != customer["id"]


def test_a_burst_delivered_out_of_order_and_twice_ends_in_stripes_final_state(billing, user, stripe_standin):
    deliverer = stripe_standin.deliverer
    deliverer.reorder, deliverer.duplicate_rate, deliverer.paused = True, 0.5, True
    deliverer.random.seed(20)
    prices = [stripe_standin.add_product(f"Plan {n}", lookup_key=f"plan_{n}", features=(f"feature-{n}",))
              for n in range(3)]
    customers = [stripe_standin.add_customer(email=f"burst{n}@example.com") for n in range(4)]
    stripe_standin.churn_subscriptions(customers, prices, rounds=4)
    deliverer.resume()
    settle(stripe_standin)
    webhook_module = billing.webhooks
    store = webhook_module.events.projections
    for customer in customers:
        subscriptions, entitlements = stripe_standin.billing_records(customer)
        assert store.get(customer).projection == project(subscriptions, entitlements), customer
    outcomes = [d for d in deliverer.deliveries if d.status == 200]
    assert len(outcomes) > len({d.event_id for d in outcomes})  # duplicates were delivered, and absorbed


def test_a_failed_read_of_stripe_answers_an_error_and_stripes_retry_applies_it(billing, user, stripe_standin):
    customer = stripe_standin.add_customer(email="retry@example.com")
    stripe_standin.inject(Fault(status=500, times=2, method="GET", path_prefix="/v1/subscriptions"))
    stripe_standin.add_subscription(customer, "active", price_id=stripe_standin.add_product("P", lookup_key="p"))
    settle(stripe_standin)
    statuses = [d.status for d in stripe_standin.deliverer.deliveries if d.event_type.startswith("customer.sub")]
    assert statuses[0] != 200 and statuses[-1] == 200
    subscriptions, entitlements = stripe_standin.billing_records(customer)
    assert billing.webhooks.events.projections.get(customer).projection == project(subscriptions, entitlements)


# --- signatures: the function accepts exactly what stripe-python accepts --------------------------------------------
def stored_secrets(billing, stack) -> list[str]:
    value = stack.moto.client("secretsmanager").get_secret_value(SecretId=billing.secret_id)["SecretString"]
    return json.loads(value)["signing_secrets"]


def signed_event(stripe_standin, customer: str) -> str:
    stripe_standin.deliverer.paused = True  # this test delivers by hand
    stripe_standin.add_subscription(customer, "active")
    return json.dumps(stripe_standin.events()[-1])


@pytest.mark.parametrize("case", ["valid", "tampered", "stale", "wrong_secret", "old_and_new", "future",
                                  "no_v1", "garbage", "missing"])
def test_signature_checks_agree_with_stripe_python(case, billing, stack, stripe_standin):
    (secret,) = stored_secrets(billing, stack)
    body = signed_event(stripe_standin, stripe_standin.add_customer(email="sig@example.com"))
    now = int(time.time())
    header = {
        "valid": signature_header(body.encode(), [secret], now),
        "tampered": signature_header(body.replace('"active"', '"canceled"').encode(), [secret], now),
        "stale": signature_header(body.encode(), [secret], now - 301),
        "wrong_secret": signature_header(body.encode(), ["whsec_" + "0" * 48], now),
        "old_and_new": signature_header(body.encode(), ["whsec_" + "1" * 48, secret], now),
        "future": signature_header(body.encode(), [secret], now + 3600),
        "no_v1": f"t={now},v0=" + "0" * 64,
        "garbage": "not a signature",
        "missing": None,
    }[case]
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
        reference = True
    except stripe.SignatureVerificationError:
        reference = False
    before = table_items(stack)
    status, answer = deliver(billing.webhooks, body, header)
    assert (status == 200) == reference, (case, status, answer)
    if not reference:
        assert status == 400 and answer["error"] == "webhook_signature_invalid"
        assert table_items(stack) == before  # nothing changed
    # Our stand-in signs exactly as stripe-python does.
    assert signature_header(body.encode(), [secret], now) == stripe.WebhookSignature.generate_signature_header(
        body, secret, now)


def test_during_a_roll_both_secrets_are_accepted(billing, stack, stripe_standin):
    old = stored_secrets(billing, stack)[0]
    new = "whsec_" + "2" * 48
    stack.moto.client("secretsmanager").put_secret_value(SecretId=billing.secret_id, SecretString=json.dumps(
        {"endpoint_id": billing.endpoint_id, "signing_secrets": [new, old]}))
    billing.webhooks.signing_secrets._read_at = float("-inf")  # its cache time is up (SECRET_TTL_SECONDS)
    customer = stripe_standin.add_customer(email="roll@example.com")
    for secret in (new, old):
        body = signed_event(stripe_standin, customer)
        assert deliver(billing.webhooks, body, signature_header(body.encode(), [secret]))[0] == 200
    body = signed_event(stripe_standin, customer)
    assert deliver(billing.webhooks, body, signature_header(body.encode(), ["whsec_" + "3" * 48]))[0] == 400


def test_hostile_deliveries_get_400_and_change_nothing(billing, stack, stripe_standin):
    (secret,) = stored_secrets(billing, stack)
    before = table_items(stack)

    def signed(body: str) -> tuple[int, dict]:
        return deliver(billing.webhooks, body, signature_header(body.encode(), [secret]))

    assert signed("not json")[1]["error"] == "webhook_payload_invalid"
    assert signed(json.dumps({"id": "evt_1", "type": "customer.subscription.updated",
                              "data": {"object": {"customer": "../../etc"}}}))[0] == 400
    assert signed(json.dumps({"id": "nope", "type": "customer.subscription.updated"}))[0] == 400
    assert signed(json.dumps(["a", "list"]))[0] == 400
    assert signed(json.dumps({"id": "evt_2", "type": "customer.subscription.updated", "data": "x"}))[0] == 400
    huge = json.dumps({"id": "evt_3", "type": "invoice.paid", "pad": "x" * (600 * 1024)})
    assert signed(huge)[1]["error"] == "payload_too_large"
    status, answer = deliver(billing.webhooks, "%%%", signature_header(b"%%%", [secret]), base64_body=True)
    assert status == 400
    assert table_items(stack) == before
    # Signed, but nothing for us: an unhandled type, or the other mode's event, is acknowledged and ignored.
    assert signed(json.dumps({"id": "evt_4", "type": "invoice.paid", "data": {"object": {}}})) == (
        200, {"received": True, "outcome": "ignored"})
    assert signed(json.dumps({"id": "evt_5", "type": "customer.subscription.updated", "livemode": True,
                              "data": {"object": {"customer": "cus_abc"}}}))[1]["outcome"] == "ignored"
    assert table_items(stack) == before


def test_an_event_id_seen_before_is_answered_at_once(billing, stack, stripe_standin):
    (secret,) = stored_secrets(billing, stack)
    body = signed_event(stripe_standin, stripe_standin.add_customer(email="dup@example.com"))
    header = signature_header(body.encode(), [secret])
    assert deliver(billing.webhooks, body, header)[1]["outcome"] == "processed"
    reads = billing.webhooks.reader.calls
    assert deliver(billing.webhooks, body, header)[1]["outcome"] == "duplicate"
    assert billing.webhooks.reader.calls == reads  # no Stripe read for a duplicate


def test_before_setup_deliveries_are_refused_with_503_and_nothing_is_recorded(gateway, stack, stripe_standin):
    secret_id = add_webhook_secret(stack)  # what the stack creates: no signing secret yet
    gateway(WEBHOOK_SECRET_ID=secret_id)
    reset_logging(("stripe-portal-gateway-webhooks",))
    webhooks = load_handler_module(ROOT / "functions" / "webhooks" / "app.py")
    body = json.dumps({"id": "evt_6", "type": "customer.subscription.updated"})
    before = table_items(stack)
    status, answer = deliver(webhooks, body, signature_header(body.encode(), ["whsec_" + "4" * 48]))
    assert (status, answer["error"]) == (503, "webhook_not_configured")
    assert table_items(stack) == before


def test_without_a_webhook_secret_the_code_loads_and_a_stray_delivery_is_refused_with_503(gateway, stack,
                                                                                          stripe_standin):
    """StripeWebhookEndpoint=disabled: the reconciliation and the EventBridge function get no WEBHOOK_SECRET_ID.
    The shared code loads without it, and a delivery (were one routed there) is refused, never applied."""
    gateway(WEBHOOK_SECRET_ID="")
    reset_logging(("stripe-portal-gateway-webhooks",))
    webhooks = load_handler_module(ROOT / "functions" / "webhooks" / "app.py")
    assert webhooks.SETTINGS.webhook_secret_id is None
    body = json.dumps({"id": "evt_7", "type": "customer.subscription.updated"})
    before = table_items(stack)
    status, answer = deliver(webhooks, body, signature_header(body.encode(), ["whsec_" + "4" * 48]))
    assert (status, answer["error"]) == (503, "webhook_not_configured")
    assert table_items(stack) == before


def test_a_key_that_may_not_read_entitlements_still_gets_the_subscriptions(billing, user, stack, stripe_standin):
    from devstack.stripe_standin import fake_key

    limited = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"customers_write", "portal_write",
                                                                         "subscriptions_read"}))
    stack.put_stripe_key(json.dumps({"api_key": limited}))
    portal = billing.portal
    portal.module.portal_service().billing.forget_key()
    customer = stripe_standin.add_customer(email="ada@example.com")
    stripe_standin.add_subscription(customer, "active", price_id=stripe_standin.add_product(
        "Pro", lookup_key="pro", features=("premium",)))
    stack.add_user("ada", "Correct-Horse-9", email="ada@example.com")
    tokens = stack.sign_in("ada", "Correct-Horse-9")
    answer = billing.status(tokens["IdToken"]).json
    assert answer["subscriptions"][0]["items"][0]["lookup_key"] == "pro" and answer["entitlements"] == []


def test_the_endpoint_is_subscribed_to_exactly_the_handled_events(billing, stripe_standin):
    endpoint = stripe_standin.account.webhook_endpoints[billing.endpoint_id]
    assert sorted(endpoint["enabled_events"]) == sorted(HANDLED_EVENTS)
    assert endpoint["url"] == billing.url


def test_a_listed_origin_may_ask_with_fetch_and_another_may_not(gateway, stack, user):
    portal = gateway(ALLOWED_ORIGINS="https://shop.example.com", WEBHOOK_SECRET_ID="unused")
    preflight = portal.call("OPTIONS", "/billing/status", headers={
        "origin": "https://shop.example.com", "access-control-request-method": "GET",
        "access-control-request-headers": "authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    _, tokens = user()
    answer = portal.call("GET", "/billing/status", headers={"origin": "https://shop.example.com",
                                                            "authorization": f"Bearer {tokens['IdToken']}"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert {"Authorization", "Origin"} <= {v.strip() for v in answer.headers["Vary"].split(",")}
    other = portal.call("GET", "/billing/status", headers={"origin": "https://evil.example",
                                                           "authorization": f"Bearer {tokens['IdToken']}"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_payment_link_purchase_after_a_first_click_moves_the_user_to_the_paying_customer(billing, user, stack,
                                                                                           stripe_standin):
    """The first "Manage billing" click made Ada a customer with nothing on it; then she paid through a Payment
    Link, which made another customer with her email. Her status finds the paying one, and her next click opens it."""
    sub, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (empty,) = stripe_standin.customers()
    assert billing.status(tokens["IdToken"]).json["subscriptions"] == []
    billing.portal.module.portal_service().resolver._unmatched.clear()  # the recheck window has passed
    paying = stripe_standin.add_customer(email="ada@example.com")
    stripe_standin.add_subscription(paying, "active", price_id=stripe_standin.add_product(
        "Pro", lookup_key="pro", features=("premium",)))
    settle(stripe_standin)
    answer = billing.status(tokens["IdToken"]).json
    assert answer["entitlements"] == ["premium"] and answer["subscriptions"][0]["status"] == "active"
    mapping = stack.moto.client("dynamodb").get_item(TableName=stack.table_name, Key={
        "pk": {"S": mapping_key("test", stack.user_pool_id, sub)}})["Item"]
    assert mapping["customer_id"]["S"] == paying
    opened = billing.portal.portal(tokens["IdToken"])
    assert stripe_standin.account.sessions[opened.location.rsplit("/", 1)[-1]]["customer"] == paying
    assert empty["id"] != paying


def test_no_move_to_another_users_customer_nor_on_an_unverified_email_nor_off_a_live_subscription(
        billing, user, stack, stripe_standin):
    price = stripe_standin.add_product("Pro", lookup_key="pro")
    # Grace's email is not verified: the paying customer with it is never hers.
    _, grace = user("grace", email="grace@example.com", email_verified=False)
    billing.portal.portal(grace["IdToken"])
    stripe_standin.add_subscription(stripe_standin.add_customer(email="grace@example.com"), "active", price_id=price)
    assert billing.status(grace["IdToken"]).json["subscriptions"] == []
    # Ada's paying twin is stamped as another user's: it stays theirs.
    _, ada = user("ada")
    billing.portal.portal(ada["IdToken"])
    stripe_standin.add_subscription(stripe_standin.add_customer(
        email="ada@example.com", metadata={"cognito_sub": "someone-else", "cognito_user_pool": stack.user_pool_id}),
        "active", price_id=price)
    assert billing.status(ada["IdToken"]).json["subscriptions"] == []
    # Karl pays on the customer he has: no look for another.
    _, karl = user("karl", email="karl@example.com")
    billing.portal.portal(karl["IdToken"])
    mine = next(c["id"] for c in stripe_standin.customers() if c["email"] == "karl@example.com")
    stripe_standin.add_subscription(mine, "active", price_id=price)
    settle(stripe_standin)
    listed = len(stripe_standin.calls("GET", "/v1/customers"))
    assert billing.status(karl["IdToken"]).json["subscriptions"][0]["status"] == "active"
    assert len(stripe_standin.calls("GET", "/v1/customers")) == listed



def test_while_stripe_fails_every_stored_status_is_answered(billing, user, stripe_standin):
    """A subscriber and a user whose customer has nothing live (whose status looks in Stripe for a paying
    customer now and then): with Stripe answering 500, then 429, to everything, both are answered from the
    table."""
    price = stripe_standin.add_product("Pro", lookup_key="pro", features=("premium",))
    _, paying = user("ada")
    billing.portal.portal(paying["IdToken"])
    stripe_standin.add_subscription(stripe_standin.customers()[0]["id"], "active", price_id=price)
    _, empty = user("grace", email="grace@example.com")
    billing.portal.portal(empty["IdToken"])
    stripe_standin.add_customer(email="grace@example.com")  # a candidate: her status would look in Stripe
    settle(stripe_standin)
    expected = {token: billing.status(token).json for token in (paying["IdToken"], empty["IdToken"])}
    billing.portal.module.portal_service().resolver._unmatched.clear()  # the next look is due
    for status in (500, 429):
        stripe_standin.inject(Fault(status=status, times=1000))
        for token, answer in expected.items():
            reply = billing.status(token)
            assert (reply.status, reply.json) == (200, answer)
        stripe_standin.faults.clear()
        billing.portal.module.portal_service().resolver._unmatched.clear()


def test_a_live_subscription_behind_a_hundred_ended_ones_is_found(billing, user, stack, stripe_standin):
    """Abandoned checkouts end as incomplete_expired: 120 of them, newer than the one that pays, fill more than
    a page of Stripe's list. The status (first fill and webhooks) and Subscribe read every page."""
    price = stripe_standin.add_product("Pro", lookup_key="pro", features=("premium",))
    _, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    stripe_standin.deliverer.paused = True
    stripe_standin.add_subscription(customer, "active", price_id=price)
    for _ in range(120):
        stripe_standin.add_subscription(customer, "incomplete_expired", price_id=price)
    answer = billing.status(tokens["IdToken"]).json  # no projection yet: read from Stripe, every page
    assert [s["status"] for s in answer["subscriptions"]] == ["active"] and answer["entitlements"] == ["premium"]
    stripe_standin.deliverer.resume()
    settle(stripe_standin)  # the webhook function's reads (stripe-python's auto-paging) agree
    assert billing.webhooks.events.projections.get(customer).projection == project(
        *stripe_standin.billing_records(customer))
    assert billing.portal.module.portal_service().billing.active_subscriptions(customer) != []


def test_a_backfill_from_a_machine_whose_clock_is_ten_minutes_fast_freezes_no_status(billing, user, stack,
                                                                                    stripe_standin, monkeypatch):
    """Reads are ordered by Stripe's clock: an operator's laptop 10 minutes fast stores its backfill, and the
    next change Stripe reports still lands (it used to be answered 200 and dropped for those 10 minutes)."""
    import io

    from portal_admin.webhooks import backfill
    from portal_gateway.billing import status_projection
    from portal_gateway.billing.stripe_client import StripeHttp

    price = stripe_standin.add_product("Pro", lookup_key="pro", features=("premium",))
    _, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    subscription = stripe_standin.add_subscription(customer, "active", price_id=price)
    settle(stripe_standin)
    real_now_ms = status_projection.now_ms
    monkeypatch.setattr(status_projection, "now_ms", lambda: real_now_ms() + 600_000)
    out = io.StringIO()
    assert backfill(table=stack.table_name, mode="test", user_pool_id=stack.user_pool_id,
                    stripe=StripeHttp(api_base=stripe_standin.base_url).with_key(stripe_standin.key),
                    client=stack.moto.client, out=out, progress=io.StringIO()) == 0
    assert "1 stored" in out.getvalue()
    monkeypatch.setattr(status_projection, "now_ms", real_now_ms)
    time.sleep(1.05)  # the next second by Stripe's clock: within one second, the writers' own clocks decide
    stripe_standin.update_subscription(subscription, cancel_at_period_end=True)
    settle(stripe_standin)
    assert billing.status(tokens["IdToken"]).json["subscriptions"][0]["cancel_at_period_end"] is True


def test_the_admin_checks_probe_is_refused_but_not_counted_as_a_forged_delivery(billing, capsys):
    from portal_admin.webhooks import probe_webhook_url

    status, body = probe_webhook_url(billing.url)
    assert (status, body["error"]) == (400, "webhook_signature_invalid")
    printed = capsys.readouterr().out
    assert '"WebhookProbes"' in printed and '"WebhookSignatureFailures"' not in printed
    # The same unsigned delivery without the probe's mark is counted, and so alarmed.
    code, answer = deliver(billing.webhooks, "{}", None)
    assert (code, answer["error"]) == (400, "webhook_signature_invalid")
    assert '"WebhookSignatureFailures"' in capsys.readouterr().out


def test_webhooks_roll_accepts_the_new_secret_before_the_old_stops_and_the_old_one_expires(billing, user, stack,
                                                                                          stripe_standin):
    import io

    from portal_admin.webhooks import roll
    from portal_gateway.billing.stripe_client import StripeHttp

    price = stripe_standin.add_product("Pro", lookup_key="pro", features=("premium",))
    _, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    (old_secret,) = stored_secrets(billing, stack)
    out = io.StringIO()
    assert roll(secret_id=billing.secret_id, client=stack.moto.client, out=out, keep_old_hours=1,
                stripe=StripeHttp(api_base=stripe_standin.base_url).with_key(stripe_standin.key)) == 0
    (endpoint,) = stripe_standin.account.webhook_endpoints.values()  # the new one only: no event twice for ever
    assert endpoint["id"] != billing.endpoint_id and endpoint["url"] == billing.url
    assert "whsec_" not in out.getvalue()
    billing.webhooks.signing_secrets._read_at = float("-inf")  # its cache time is up (SECRET_TTL_SECONDS)
    stripe_standin.add_subscription(customer, "active", price_id=price)  # delivered by the new endpoint
    settle(stripe_standin)
    assert billing.status(tokens["IdToken"]).json["entitlements"] == ["premium"]
    assert all(d.status == 200 for d in stripe_standin.deliverer.deliveries if d.endpoint_id == endpoint["id"])
    body = signed_event(stripe_standin, customer)  # a delivery signed before the roll, retried after it
    assert deliver(billing.webhooks, body, signature_header(body.encode(), [old_secret]))[0] == 200
    # Past its time the old secret is refused.
    document = json.loads(stack.moto.client("secretsmanager").get_secret_value(
        SecretId=billing.secret_id)["SecretString"])
    document["retired"] = [{"secret": old_secret, "until": int(time.time()) - 1}]
    stack.moto.client("secretsmanager").put_secret_value(SecretId=billing.secret_id,
                                                         SecretString=json.dumps(document))
    billing.webhooks.signing_secrets._read_at = float("-inf")
    body = signed_event(stripe_standin, customer)
    assert deliver(billing.webhooks, body, signature_header(body.encode(), [old_secret]))[0] == 400


def test_a_lost_event_and_a_silent_change_are_repaired_by_the_schedule_with_no_operator_action(
        billing, user, stack, stripe_standin):
    """The endpoint is gone (deleted, as the old secret roll did; or disabled by Stripe): a purchase's events reach
    nobody. Then a change Stripe sends no event for. The scheduled reconciliation puts both right: the first from
    Stripe's events API, the second by re-reading statuses older than the bound."""
    from devstack.http_api import new_context

    price = stripe_standin.add_product("Pro", lookup_key="pro", features=("premium",))
    _, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    assert billing.status(tokens["IdToken"]).json["subscriptions"] == []  # stored: nothing
    stripe_standin.account.webhook_endpoints.clear()
    subscription = stripe_standin.add_subscription(customer, "active", price_id=price)  # delivered nowhere
    assert billing.status(tokens["IdToken"]).json["subscriptions"] == []  # wrong, and nothing would fix it

    report = billing.webhooks.reconcile_handler({"source": "aws.scheduler"}, new_context(300))
    assert report["events_applied"] >= 1 and not report["out_of_time"]
    answer = billing.status(tokens["IdToken"]).json
    assert answer["entitlements"] == ["premium"] and answer["subscriptions"][0]["status"] == "active"
    again = billing.webhooks.reconcile_handler({"source": "aws.scheduler"}, new_context(300))
    assert again["events_applied"] == 0  # applied once: the next run resumes after it

    # A change no event reports, on a status read more than the bound (24 h by default) ago.
    stripe_standin._find_subscription(subscription)[2]["cancel_at_period_end"] = True
    stack.moto.client("dynamodb").update_item(
        TableName=stack.table_name, Key={"pk": {"S": projection_key("test", customer)}},
        UpdateExpression="SET synced_at = :old", ExpressionAttributeValues={":old": {"N": str(
            (int(time.time()) - 25 * 3600) * 1000)}})
    report = billing.webhooks.reconcile_handler({"source": "aws.scheduler"}, new_context(300))
    assert report["stale_read"] == 1 and report["stale_repaired"] == 1 and report["pass_completed"]
    assert billing.status(tokens["IdToken"]).json["subscriptions"][0]["cancel_at_period_end"] is True


def test_a_renamed_lookup_key_and_new_features_reach_the_statuses_that_show_them(billing, user, stripe_standin):
    from devstack.http_api import new_context

    price = stripe_standin.add_product("Pro", lookup_key="pro_monthly", features=("premium",))
    other = stripe_standin.add_product("Team", lookup_key="team_monthly", features=("team",))
    _, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    stripe_standin.add_subscription(customer, "active", price_id=price)
    bystander = stripe_standin.add_customer(email="b@example.com")
    stripe_standin.add_subscription(bystander, "active", price_id=other)
    settle(stripe_standin)
    assert billing.status(tokens["IdToken"]).json["subscriptions"][0]["items"][0]["lookup_key"] == "pro_monthly"
    stripe_standin.update_price(price, lookup_key="pro_monthly_2027")  # "Transfer lookup key" in the Dashboard
    stripe_standin.set_product_features(price, ("premium", "api-access"))
    settle(stripe_standin)  # price.updated and product.updated: noted, answered at once
    report = billing.webhooks.reconcile_handler({"source": "aws.scheduler"}, new_context(300))
    assert report["catalog_read"] == 2  # her status, once per change; not the bystander's
    answer = billing.status(tokens["IdToken"]).json
    assert answer["subscriptions"][0]["items"][0]["lookup_key"] == "pro_monthly_2027"
    assert answer["entitlements"] == ["api-access", "premium"]
    assert billing.webhooks.reconcile_handler({"source": "aws.scheduler"}, new_context(300))["catalog_read"] == 0


def test_every_log_line_of_a_delivery_names_its_stripe_event(caplog, billing, stripe_standin):
    import logging

    customer = stripe_standin.add_customer(email="log@example.com")
    body = signed_event(stripe_standin, customer)
    (secret,) = json.loads(stripe_standin_secret(billing))
    caplog.set_level(logging.INFO, logger="portal_gateway")
    code, _ = deliver(billing.webhooks, body, signature_header(body.encode(), [secret]))
    assert code == 200
    # As the webhook function writes them: its Powertools formatter, with the keys the handler appended.
    formatter = billing.webhooks.logger.registered_formatter
    applied = [json.loads(formatter.format(record)) for record in caplog.records
               if record.getMessage() == "Stripe event applied"]
    event_id = json.loads(body)["id"]
    assert applied and all(line.get("stripe_event_id") == event_id for line in applied)
    assert applied[0]["stripe_event_type"] == "customer.subscription.created"


def test_a_delivery_logs_its_lag_and_what_stripe_and_the_table_took(caplog, billing, stripe_standin):
    """The dashboard's webhook lag and Stripe time come from this line (tests/template/test_dashboard.py)."""
    import logging

    customer = stripe_standin.add_customer(email="lag@example.com")
    body = signed_event(stripe_standin, customer)
    (secret,) = json.loads(stripe_standin_secret(billing))
    caplog.set_level(logging.INFO)
    code, _ = deliver(billing.webhooks, body, signature_header(body.encode(), [secret]))
    assert code == 200
    # As the webhook function writes it: its Powertools formatter, with the keys the handler appended.
    formatter = billing.webhooks.logger.registered_formatter
    (line,) = [json.loads(formatter.format(record)) for record in caplog.records
               if record.getMessage() == "Delivery answered"]
    assert line["status"] == 200 and line["stripe_event_id"] == json.loads(body)["id"]
    assert 0 <= line["lag_s"] < 60
    # The re-read went through stripe-python, the ordered write through the layer's DynamoDB client: both timed.
    assert line["dependencies"]["Stripe"]["calls"] >= 1 and line["dependencies"]["DynamoDB"]["calls"] >= 1
    from tests.functional.test_observability import held_to
    from tests.support.dashboard import fields_named, log_queries

    for query in log_queries()["WebhookFunction"]:
        assert held_to(fields_named(query), [line]) == [], query


def stripe_standin_secret(billing) -> str:
    return json.dumps(billing.webhooks.signing_secrets.current())


def test_an_event_the_catch_up_cannot_apply_is_passed_over_not_stuck_on(billing, user, stripe_standin):
    """An event in Stripe's list that names no customer would fail every run, and hold back every event after it."""
    from devstack.http_api import new_context
    from devstack.stripe_standin import new_id

    price = stripe_standin.add_product("Pro", lookup_key="pro", features=("premium",))
    _, tokens = user()
    billing.portal.portal(tokens["IdToken"])
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    billing.status(tokens["IdToken"])
    stripe_standin.account.webhook_endpoints.clear()  # nothing is delivered: the catch-up must find both
    stripe_standin.account.events.append({
        "id": new_id("evt_"), "object": "event", "api_version": "2026-10-28.endive", "created": int(time.time()),
        "data": {"object": {"id": "sub_orphan", "object": "subscription"}}, "livemode": False,
        "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None},
        "type": "customer.subscription.updated"})
    stripe_standin.add_subscription(customer, "active", price_id=price)
    report = billing.webhooks.reconcile_handler({"source": "aws.scheduler"}, new_context(300))
    assert report["events_applied"] >= 1
    assert billing.status(tokens["IdToken"]).json["entitlements"] == ["premium"]

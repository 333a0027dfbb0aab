"""Purchases bound to the signed-in user: the checkout route, Customer Sessions for embedded components, Payment
Links that carry the user's signed reference, and email matching only where it is safe.

Real parts throughout: the portal and webhook functions' handlers, moto for Cognito and the table, the Stripe
stand-in's Checkout (its hosted page completes a session and sends checkout.session.completed over HTTP to the
webhook function, signed, as Stripe does).
"""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlencode, urlsplit

import pytest
from portal_gateway.aws.mapping_store import mapping_key

from tests.functional.conftest import settle

PRICE = "pro_monthly"


@pytest.fixture
def portal_overrides():
    return {"CHECKOUT_PRICES": f"{PRICE},team_monthly"}


@pytest.fixture
def pro(stripe_standin):
    """The offered price (and an offered one Stripe has no price for: team_monthly)."""
    return stripe_standin.add_product("Pro", lookup_key=PRICE, features=("premium",))


def subscribe(billing, token: str | None, *, price: str | None = PRICE, accept: str = "text/html", **query):
    headers = {"accept": accept}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return billing.portal.call("GET", "/billing/checkout", query={**({"price": price} if price else {}), **query},
                               headers=headers)


def checkout_session(stripe_standin, url: str) -> dict:
    return stripe_standin.account.checkout_sessions[urlsplit(url).path.rsplit("/", 1)[-1]]


def portal_customer(billing, stripe_standin, token: str) -> str:
    opened = billing.portal.portal(token)
    assert opened.status == 302, opened.body
    return stripe_standin.account.sessions[opened.location.rsplit("/", 1)[-1]]["customer"]


def mapped(stack, sub: str) -> str | None:
    item = stack.moto.client("dynamodb").get_item(TableName=stack.table_name, ConsistentRead=True, Key={
        "pk": {"S": mapping_key("test", stack.user_pool_id, sub)}}).get("Item")
    return item["customer_id"]["S"] if item else None


def pay_on_payment_link(stripe_standin, link_url: str, *, email: str, reference: str | None = None) -> None:
    """A buyer fills in the Payment Link's page (its URL carrying client_reference_id, as a site adds it)."""
    parts = urlsplit(link_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    form = {"email": email, **({"client_reference_id": reference} if reference else {})}
    connection.request("POST", parts.path, body=urlencode(form),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert connection.getresponse().status == 303
    connection.close()


def users_customers(stripe_standin, sub: str) -> list[str]:
    return [c["id"] for c in stripe_standin.customers() if c["metadata"].get("cognito_sub") == sub]


def test_subscribe_opens_checkout_for_the_customer_the_portal_opens_and_the_plan_shows(billing, user, stack,
                                                                                      stripe_standin, pro):
    sub, tokens = user()
    reply = subscribe(billing, tokens["IdToken"], return_to="https://shop.example.com/welcome")
    assert reply.status == 303 and reply.headers["Cache-Control"] == "no-store"
    session = checkout_session(stripe_standin, reply.location)
    assert session["mode"] == "subscription" and session["_lines"] == [{"price": pro, "quantity": 1}]
    assert session["success_url"] == "https://shop.example.com/welcome"
    assert session["cancel_url"] == "https://shop.example.com/welcome"
    assert session["customer"] == mapped(stack, sub) == portal_customer(billing, stripe_standin, tokens["IdToken"])
    status = billing.status(tokens["IdToken"]).json
    assert session["client_reference_id"] == status["client_reference_id"] and sub in status["client_reference_id"]
    assert status["subscriptions"] == []
    stripe_standin.complete_checkout(session["id"])
    settle(stripe_standin)
    answer = billing.status(tokens["IdToken"]).json
    assert answer["entitlements"] == ["premium"] and answer["subscriptions"][0]["items"][0]["lookup_key"] == PRICE
    assert users_customers(stripe_standin, sub) == [session["customer"]] and len(stripe_standin.customers()) == 1


def test_a_fetch_gets_json_and_a_form_post_gets_303(billing, user, stripe_standin, pro):
    _, tokens = user()
    reply = subscribe(billing, tokens["IdToken"], accept="application/json")
    assert reply.status == 200 and reply.json["kind"] == "checkout" and "/c/pay/" in reply.json["url"]
    form = billing.portal.call("POST", "/billing/checkout", body=urlencode({
        "id_token": tokens["IdToken"], "price": PRICE, "cancel_to": "https://shop.example.com/plans"}),
        headers={"content-type": "application/x-www-form-urlencoded", "accept": "text/html"})
    assert form.status == 303
    assert checkout_session(stripe_standin, form.location)["cancel_url"] == "https://shop.example.com/plans"


def test_a_double_click_opens_one_session_and_buys_once(billing, user, stripe_standin, pro):
    _, tokens = user()
    stripe_standin.latency = 0.3  # the second click arrives while the first still holds the idempotency key
    replies: list = [None, None]

    def click(index: int) -> None:
        replies[index] = subscribe(billing, tokens["IdToken"])

    threads = [threading.Thread(target=click, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stripe_standin.latency = 0
    assert [r.status for r in replies] == [303, 303] and replies[0].location == replies[1].location
    assert len(stripe_standin.account.checkout_sessions) == 1
    session = checkout_session(stripe_standin, replies[0].location)
    stripe_standin.complete_checkout(session["id"])
    with pytest.raises(ValueError):
        stripe_standin.complete_checkout(session["id"])  # the same session cannot be paid twice
    settle(stripe_standin)
    # A later Subscribe of a subscriber opens the portal's plan change, not a second subscription.
    again = subscribe(billing, tokens["IdToken"], accept="application/json")
    assert again.json["kind"] == "portal"
    portal_session = stripe_standin.account.sessions[again.json["url"].rsplit("/", 1)[-1]]
    assert portal_session["flow"]["type"] == "subscription_update"
    (customer,) = stripe_standin.customers()
    assert [s["status"] for s in customer["_subscriptions"]] == ["active"]


def test_an_operator_may_allow_several_subscriptions(gateway, stack, user, stripe_standin, pro):
    gw = gateway(CHECKOUT_PRICES=PRICE, ALLOW_MULTIPLE_SUBSCRIPTIONS="true")
    _, tokens = user()
    first = gw.call("GET", "/billing/checkout", query={"price": PRICE},
                    headers={"authorization": f"Bearer {tokens['IdToken']}"})
    stripe_standin.complete_checkout(checkout_session(stripe_standin, first.location)["id"])
    second = gw.call("GET", "/billing/checkout", query={"price": PRICE},
                     headers={"authorization": f"Bearer {tokens['IdToken']}"})
    assert second.status == 303 and "/c/pay/" in second.location


@pytest.mark.parametrize(("query", "status", "code"), [
    ({"price": "enterprise"}, 400, "price_not_offered"),
    ({}, 400, "price_not_offered"),  # two are offered: which one must be said
    ({"price": PRICE, "return_to": "https://evil.example.net/"}, 400, "return_url_not_allowed"),
    ({"price": PRICE, "cancel_to": "https://evil.example.net/"}, 400, "return_url_not_allowed"),
    ({"price": "team_monthly"}, 409, "price_unavailable"),  # offered, but Stripe has no such price
])
def test_only_the_operators_prices_and_addresses_reach_stripe(billing, user, stripe_standin, pro, query, status, code):
    _, tokens = user()
    before = len(stripe_standin.calls())
    reply = billing.portal.call("GET", "/billing/checkout", query=query, headers={
        "authorization": f"Bearer {tokens['IdToken']}", "accept": "application/json"})
    assert (reply.status, reply.json["error"]) == (status, code)
    assert stripe_standin.calls("POST", "/v1/checkout") == []
    if status == 400:
        assert len(stripe_standin.calls()) == before  # refused before anything, the token included


def test_an_archived_price_is_refused_and_looked_up_again(billing, user, stripe_standin, pro):
    _, tokens = user()
    assert subscribe(billing, tokens["IdToken"]).status == 303
    stripe_standin.set_price_active(pro, False)  # archived in the Dashboard while the lookup is cached
    assert subscribe(billing, tokens["IdToken"], return_to="https://shop.example.com/x").status == 409
    stripe_standin.set_price_active(pro, True)
    assert subscribe(billing, tokens["IdToken"], return_to="https://shop.example.com/y").status == 303


def test_without_offered_prices_there_is_no_subscribe(gateway, user):
    _, tokens = user()
    reply = gateway().call("GET", "/billing/checkout", query={"price": PRICE}, headers={
        "authorization": f"Bearer {tokens['IdToken']}", "accept": "application/json"})
    assert (reply.status, reply.json["error"]) == (404, "checkout_not_offered")


def test_subscribe_needs_a_valid_token_and_takes_none_in_the_url(billing, user, stripe_standin, pro):
    _, tokens = user()
    assert subscribe(billing, None, accept="application/json").status == 401
    assert subscribe(billing, "not-a-token", accept="application/json").status == 401
    assert billing.portal.call("GET", "/billing/checkout", query={"price": PRICE, "id_token": tokens["IdToken"]},
                               headers={"accept": "application/json"}).status == 400
    assert stripe_standin.calls("POST", "/v1/c") == []  # no customer, no checkout session


def test_a_customer_session_is_for_the_callers_own_customer_and_never_cached(billing, user, stack, stripe_standin):
    sub, tokens = user()
    reply = billing.portal.call("POST", "/billing/customer-session", headers={
        "authorization": f"Bearer {tokens['IdToken']}", "accept": "application/json"})
    assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store"
    secret = reply.json["client_secret"]
    session = stripe_standin.account.customer_sessions[secret]
    assert session["customer"] == mapped(stack, sub) == portal_customer(billing, stripe_standin, tokens["IdToken"])
    assert session["components"]["pricing_table"]["enabled"] and session["components"]["buy_button"]["enabled"]
    assert reply.json["client_reference_id"] == billing.status(tokens["IdToken"]).json["client_reference_id"]
    assert billing.portal.call("POST", "/billing/customer-session", headers={"accept": "application/json"}).status \
        == 401


def test_a_payment_link_with_the_users_reference_binds_a_purchase_paid_with_another_email(
        billing, user, stack, stripe_standin, pro):
    """Ada clicked "Manage billing" first (an empty customer), then paid on a Payment Link with her work address."""
    sub, tokens = user()
    empty = portal_customer(billing, stripe_standin, tokens["IdToken"])
    reference = billing.status(tokens["IdToken"]).json["client_reference_id"]
    link = stripe_standin.add_payment_link(pro, after_completion_url="https://shop.example.com/thanks")
    pay_on_payment_link(stripe_standin, link, email="ada@work.example.org", reference=reference)
    settle(stripe_standin)
    (paying,) = [c["id"] for c in stripe_standin.customers() if c["email"] == "ada@work.example.org"]
    assert mapped(stack, sub) == paying != empty
    assert stripe_standin.customers()[-1]["metadata"]["cognito_sub"] == sub  # stamped as hers
    billing.portal.module.portal_service().resolver._unmatched.clear()  # the recheck window has passed
    assert billing.status(tokens["IdToken"]).json["entitlements"] == ["premium"]
    assert portal_customer(billing, stripe_standin, tokens["IdToken"]) == paying


def test_a_forged_or_foreign_reference_binds_nothing(billing, user, stack, stripe_standin, pro):
    """Mallory writes Ada's sub into a Payment Link URL (no valid signature), then a reference of Grace's, who
    already pays: neither purchase is attached to the user it names."""
    ada_sub, ada = user("ada")
    grace_sub, grace = user("grace", email="grace@example.com")
    link = stripe_standin.add_payment_link(pro, after_completion_url="https://shop.example.com/thanks")
    pay_on_payment_link(stripe_standin, link, email="mallory@example.net", reference=f"spg1_{ada_sub}_{'0' * 32}")
    pay_on_payment_link(stripe_standin, link, email="mallory@example.net", reference=ada_sub)
    first = subscribe(billing, grace["IdToken"])
    stripe_standin.complete_checkout(checkout_session(stripe_standin, first.location)["id"])
    settle(stripe_standin)
    grace_customer = mapped(stack, grace_sub)
    pay_on_payment_link(stripe_standin, link, email="mallory@example.net",
                        reference=billing.status(grace["IdToken"]).json["client_reference_id"])
    settle(stripe_standin)
    assert mapped(stack, ada_sub) is None and billing.status(ada["IdToken"]).json["has_billing_account"] is False
    assert mapped(stack, grace_sub) == grace_customer  # she pays there: not moved onto the new customer
    assert [c["email"] for c in stripe_standin.customers() if c["metadata"].get("cognito_sub") == ada_sub] == []


def test_two_users_with_one_address_never_get_each_others_purchase(billing, user, stack, stripe_standin, pro):
    """A pool that does not keep emails unique: Ada and Eve both hold ada@example.com verified."""
    ada_sub, ada = user("ada")
    eve_sub, eve = user("eve", email="ada@example.com", name="Eve")
    # Someone paid on a Payment Link with that address, naming no user: bound to neither.
    link = stripe_standin.add_payment_link(pro, after_completion_url="https://shop.example.com/thanks")
    pay_on_payment_link(stripe_standin, link, email="ada@example.com")
    settle(stripe_standin)
    (paid,) = [c["id"] for c in stripe_standin.customers()]
    for token in (eve["IdToken"], ada["IdToken"]):
        assert billing.status(token).json["subscriptions"] == []
        assert portal_customer(billing, stripe_standin, token) != paid  # a first click: a new customer, not it
    assert paid not in (mapped(stack, ada_sub), mapped(stack, eve_sub))
    # Ada subscribes herself: hers alone.
    reply = subscribe(billing, ada["IdToken"])
    stripe_standin.complete_checkout(checkout_session(stripe_standin, reply.location)["id"])
    settle(stripe_standin)
    assert billing.status(ada["IdToken"]).json["entitlements"] == ["premium"]
    assert billing.status(eve["IdToken"]).json["entitlements"] == []


def test_a_purchase_naming_no_user_goes_to_the_one_user_with_that_address(billing, user, stack, stripe_standin, pro):
    """The same Payment Link purchase with an address exactly one user holds verified is theirs."""
    sub, tokens = user()
    link = stripe_standin.add_payment_link(pro, after_completion_url="https://shop.example.com/thanks")
    pay_on_payment_link(stripe_standin, link, email="ada@example.com")
    settle(stripe_standin)
    (paid,) = [c["id"] for c in stripe_standin.customers()]
    assert mapped(stack, sub) == paid
    assert billing.status(tokens["IdToken"]).json["entitlements"] == ["premium"]


def test_email_matching_uses_the_users_current_address_not_the_tokens(billing, user, stack, stripe_standin, pro):
    sub, tokens = user("ada", email="ada@old.example.com")
    cognito = stack.moto.client("cognito-idp")
    cognito.admin_update_user_attributes(UserPoolId=stack.user_pool_id, Username="ada", UserAttributes=[
        {"Name": "email", "Value": "ada@new.example.com"}, {"Name": "email_verified", "Value": "true"}])
    old = stripe_standin.add_customer(email="ada@old.example.com")
    stripe_standin.add_subscription(old, "active", price_id=pro)
    new = stripe_standin.add_customer(email="ada@new.example.com")
    settle(stripe_standin)
    # The token still says ada@old.example.com; Cognito says ada@new.example.com.
    assert portal_customer(billing, stripe_standin, tokens["IdToken"]) == new == mapped(stack, sub)
    assert stripe_standin.customers()[0]["metadata"] == {}  # the old address's customer stays unclaimed


def test_a_deleted_customer_gets_a_new_one_at_checkout_and_never_two(billing, user, stack, stripe_standin, pro):
    sub, tokens = user()
    first = portal_customer(billing, stripe_standin, tokens["IdToken"])
    stripe_standin.delete_customer(first)
    settle(stripe_standin)
    reply = subscribe(billing, tokens["IdToken"])
    assert reply.status == 303
    session = checkout_session(stripe_standin, reply.location)
    assert session["customer"] != first and session["customer"] == mapped(stack, sub)
    assert users_customers(stripe_standin, sub) == [session["customer"]]


@pytest.mark.parametrize("value", ["pro monthly", "pro;team", ",".join(f"p{i}" for i in range(11)), "pro\u00e9"])
def test_a_malformed_price_list_stops_the_function_at_start_up_naming_the_variable(gateway, value):
    from portal_gateway.config import ConfigError

    with pytest.raises(ConfigError, match="CHECKOUT_PRICES"):
        gateway(CHECKOUT_PRICES=value)


def test_a_cross_origin_fetch_of_a_customer_session_gets_cors_only_for_listed_origins(gateway, user, stripe_standin):
    _, tokens = user()
    gw = gateway(ALLOWED_ORIGINS="https://shop.example.com")
    for origin, allowed in (("https://shop.example.com", True), ("https://evil.example.net", False)):
        reply = gw.call("POST", "/billing/customer-session", headers={
            "authorization": f"Bearer {tokens['IdToken']}", "accept": "application/json", "origin": origin})
        assert reply.status == 200
        assert (reply.headers.get("Access-Control-Allow-Origin") == origin) is allowed
        preflight = gw.call("OPTIONS", "/billing/customer-session", headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization"})
        assert (preflight.headers.get("Access-Control-Allow-Origin") == origin) is allowed


def test_subscribe_asks_stripe_once_and_still_finds_a_subscription_behind_many_ended_ones(billing, user,
                                                                                          stripe_standin, pro):
    """Warm, Subscribe makes one Stripe call (the session, with the customer's subscriptions expanded in its
    answer). A subscriber whose live subscription is behind more than the 10 the answer embeds is still found
    (every page asked) and sent to the portal."""
    _, tokens = user()
    assert subscribe(billing, tokens["IdToken"], return_to="https://shop.example.com/a").status == 303  # warms up
    service = billing.portal.module.portal_service()
    before = service.billing.calls
    assert subscribe(billing, tokens["IdToken"], return_to="https://shop.example.com/b").status == 303
    assert service.billing.calls - before == 1
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    stripe_standin.add_subscription(customer, "active", price_id=pro)
    for _ in range(12):
        stripe_standin.add_subscription(customer, "incomplete_expired", price_id=pro)
    settle(stripe_standin)  # the two functions share this process (and Powertools' current event) here, not on AWS
    reply = subscribe(billing, tokens["IdToken"], accept="application/json", return_to="https://shop.example.com/c")
    assert reply.status == 200 and reply.json["kind"] == "portal", (reply.status, reply.body[:300])

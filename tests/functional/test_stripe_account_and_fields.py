"""Right with the real Stripe: another account's key never remaps anyone, customer fields within Stripe's limits,
idempotency keys that follow the parameters, a defined tie-break, and the current portal flows."""

from __future__ import annotations

import json

import pytest

from devstack.stripe_standin import Fault, fake_key


def session_of(stripe_standin, reply) -> dict:
    return stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]


def mapping(stack, sub: str) -> str | None:
    item = stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"test#{stack.user_pool_id}#{sub}"}}).get("Item")
    return item["customer_id"]["S"] if item else None


# --- 1. another Stripe account's key ---------------------------------------------------------------------------
def test_key_of_another_account_never_remaps_or_creates(gateway, user, stripe_standin, stack, capsys):
    sub, tokens = user()
    paid = session_of(stripe_standin, gateway().portal(tokens["IdToken"]))["customer"]
    stripe_standin.add_subscription(paid, "active")

    other = stripe_standin.add_account()
    other.configurations.update(stripe_standin.account.configurations)  # a fully set-up account, just not ours
    other.default_configuration.update(stripe_standin.account.default_configuration)
    stack.put_stripe_key(json.dumps({"api_key": stripe_standin.add_key(fake_key("sk", "test"), account=other)}))
    gw = gateway()  # a new execution environment reads the wrong key
    reply = gw.portal(tokens["IdToken"], accept="application/json")

    assert reply.status == 503
    assert reply.json["error"] == "stripe_account_mismatch"
    assert "stack trace" not in reply.body.lower() and "acct_" not in reply.body
    assert mapping(stack, sub) == paid  # the mapping to the paid customer is untouched
    assert stripe_standin.customers(account=other) == []  # no customer (and no email or name) sent there
    assert not [c for c in stripe_standin.calls("POST", "/v1/customers") if c["path"] == "/v1/customers"][1:]
    logs = capsys.readouterr().out
    assert '"StripeAccountMismatch":[1.0]' in logs.replace(" ", "")

    # The key is put back: the same user lands on the same paid customer again, nothing was lost.
    stack.put_stripe_key(json.dumps({"api_key": stripe_standin.key}))
    back = gateway().portal(tokens["IdToken"])
    assert back.status == 302
    assert session_of(stripe_standin, back)["customer"] == paid
    assert len(stripe_standin.customers()) == 1


def test_only_a_customer_stripe_reports_deleted_is_replaced(gateway, user, stripe_standin, stack):
    sub, tokens = user()
    first = session_of(stripe_standin, gateway().portal(tokens["IdToken"]))["customer"]
    stripe_standin.delete_customer(first)
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    assert mapping(stack, sub) == session_of(stripe_standin, reply)["customer"] != first
    retrieves = [c for c in stripe_standin.calls("GET", f"/v1/customers/{first}")]
    assert retrieves and retrieves[0]["body"] == {"id": first, "object": "customer", "deleted": True}


def test_mapping_to_an_id_that_never_existed_is_left_alone(gateway, user, stripe_standin, stack):
    sub, tokens = user()
    stack.moto.client("dynamodb").put_item(TableName=stack.table_name, Item={
        "pk": {"S": f"test#{stack.user_pool_id}#{sub}"}, "customer_id": {"S": "cus_doesnotexist"}})
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert (reply.status, reply.json["error"]) == (503, "stripe_account_mismatch")
    assert mapping(stack, sub) == "cus_doesnotexist"
    assert stripe_standin.customers() == []


# --- 2. field limits, verified email, idempotency, tie-break ----------------------------------------------------
def created_params(stripe_standin) -> list[dict]:
    return [c["params"] for c in stripe_standin.calls("POST", "/v1/customers") if c["path"] == "/v1/customers"]


def test_long_name_is_trimmed_to_stripes_limit_without_splitting_a_character(gateway, user, stripe_standin):
    name = "A" * 255 + "\U0001F600" + "B" * 60  # the emoji straddles the limit in UTF-16
    _, tokens = user(name=name)
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    sent = created_params(stripe_standin)[0]["name"]
    assert sent == "A" * 255  # the emoji is dropped whole, never half a surrogate pair
    assert len(sent.encode("utf-16-le")) // 2 <= 256


def test_overlong_email_is_not_sent_rather_than_cut(gateway, user, stripe_standin, stack):
    sub, tokens = user(email=("x" * 520) + "@example.com")
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    assert "email" not in created_params(stripe_standin)[0]


def test_unverified_email_is_not_sent_to_stripe(gateway, user, stripe_standin):
    _, tokens = user("eve", email="eve@example.com", email_verified=False)
    assert gateway().portal(tokens["IdToken"]).status == 302
    params = created_params(stripe_standin)[0]
    assert "email" not in params
    assert stripe_standin.customers()[0]["email"] is None


def test_changed_profile_after_a_failed_mapping_write_is_not_an_idempotency_error(gateway, user, stripe_standin,
                                                                                  stack, monkeypatch):
    """First visit: Stripe creates the customer, then DynamoDB fails. The user renames themselves and comes back
    within 24 h: the new request must not reuse the old key with other parameters (Stripe: idempotency_error)."""
    from devstack.fault_proxy import AwsFault, FaultProxy

    sub, _ = user("ada", name="Ada Lovelace")
    proxy = FaultProxy(stack.moto.endpoint)
    try:
        proxy.inject(AwsFault(match="PutItem", body="customer_id", times=100, status=500,
                                  error_type="InternalServerError"))
        # Email matching off: nothing but the idempotency key could find the orphaned customer again.
        failing = gateway(AWS_ENDPOINT_URL_DYNAMODB=proxy.url, MATCH_EXISTING_BY_EMAIL="false")
        first = failing.portal(stack.sign_in("ada", "Correct-Horse-9")["IdToken"], accept="application/json")
        assert first.status == 503
        assert len(stripe_standin.customers()) == 1  # Stripe created it; the mapping write failed
    finally:
        proxy.close()
    stack.moto.client("cognito-idp").admin_update_user_attributes(
        UserPoolId=stack.user_pool_id, Username="ada", UserAttributes=[{"Name": "name", "Value": "Ada King"}])
    tokens = stack.sign_in("ada", "Correct-Horse-9")
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB")
    reply = gateway(MATCH_EXISTING_BY_EMAIL="false").portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 200, reply.body
    assert not [c for c in stripe_standin.requests if c["status"] == 400]
    customer = mapping(stack, sub)
    assert stripe_standin.account.customers[customer]["name"] == "Ada King"


def test_same_parameters_share_one_key_so_retries_create_one_customer(gateway, user, stripe_standin):
    _, tokens = user()
    stripe_standin.inject(Fault(status=500, times=1, method="POST", path_prefix="/v1/customers"))
    assert gateway().portal(tokens["IdToken"]).status == 302
    assert len(stripe_standin.customers()) == 1


def test_tie_in_created_second_is_broken_by_the_documented_rule(gateway, user, stripe_standin, stack):
    """Stripe's `created` is whole seconds: three customers in one second. Ours (stamped for this user) wins over
    unstamped ones; among the rest the smallest id wins, whatever order Stripe lists them in."""
    second = 1_760_000_000
    sub = stack.add_user("ada", "Correct-Horse-9", email="ada@example.com", email_verified=True, name="Ada")
    stripe_standin.add_customer(email="ada@example.com", created=second, customer_id="cus_ZZZZunstamped01")
    mine = stripe_standin.add_customer(email="ada@example.com", created=second, customer_id="cus_AAAAstamped0001",
                                       metadata={"cognito_sub": sub, "cognito_user_pool": stack.user_pool_id})
    stripe_standin.add_customer(email="ada@example.com", created=second - 1, customer_id="cus_00000older0001")
    tokens = stack.sign_in("ada", "Correct-Horse-9")
    assert session_of(stripe_standin, gateway().portal(tokens["IdToken"]))["customer"] == mine


def test_tie_without_a_stamp_picks_the_smallest_id_in_any_list_order(gateway, user, stripe_standin, stack):
    second = 1_760_000_000
    for customer_id in ("cus_M000000000001", "cus_B000000000001", "cus_X000000000001"):
        stripe_standin.add_customer(email="ada@example.com", created=second, customer_id=customer_id)
    _, tokens = user(email="ada@example.com")
    assert session_of(stripe_standin, gateway().portal(tokens["IdToken"]))["customer"] == "cus_B000000000001"


# --- 3. the current portal flows ----------------------------------------------------------------------------
def test_customer_update_flow_opens_that_flow(gateway, user, stripe_standin):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], query={"flow": "customer_update"})
    assert reply.status == 302
    flow = session_of(stripe_standin, reply)["flow"]
    assert flow["type"] == "customer_update"
    assert flow["after_completion"]["redirect"]["return_url"] == "https://shop.example.com/account"


def test_subscription_pause_flow_uses_the_customers_own_subscription(gateway, user, stripe_standin):
    _, tokens = user()
    gw = gateway()
    customer = session_of(stripe_standin, gw.portal(tokens["IdToken"]))["customer"]
    subscription = stripe_standin.add_subscription(customer, "active")
    stripe_standin.add_subscription(stripe_standin.add_customer(email="other@example.com"), "active")
    reply = gw.portal(tokens["IdToken"], query={"flow": "subscription_pause"})
    flow = session_of(stripe_standin, reply)["flow"]
    assert flow["type"] == "subscription_pause"
    assert flow["subscription_pause"] == {"subscription": subscription}


@pytest.mark.parametrize("flow, feature", [("customer_update", "customer_update"),
                                           ("subscription_pause", "subscription_pause"),
                                           ("payment_method_update", "payment_method_update")])
def test_flow_whose_feature_is_disabled_opens_the_portal_home(gateway, user, stripe_standin, flow, feature):
    _, tokens = user()
    gw = gateway()
    customer = session_of(stripe_standin, gw.portal(tokens["IdToken"]))["customer"]
    stripe_standin.add_subscription(customer, "active")
    stripe_standin.set_portal_feature(feature, False)
    reply = gw.portal(tokens["IdToken"], query={"flow": flow})
    assert reply.status == 302
    assert session_of(stripe_standin, reply)["flow"] is None
    refused = [c for c in stripe_standin.calls("POST", "/v1/billing_portal/sessions") if c["status"] == 400]
    assert len(refused) == 1  # Stripe did refuse the deep link once; the home page followed


def test_subscription_flow_with_a_key_that_cannot_read_subscriptions_opens_home(gateway, user, stack, stripe_standin):
    key = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"customers_write", "portal_write"}))
    stack.put_stripe_key(key)
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], query={"flow": "subscription_cancel"})
    assert reply.status == 302
    assert session_of(stripe_standin, reply)["flow"] is None


def test_sessions_do_not_use_after_expiration(gateway, user, stripe_standin):
    """Decided: an expired session does not fall back to Stripe's own customer login (a second way in that
    Cognito does not control); the customer clicks "Manage billing" again for a fresh session."""
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], query={"flow": "payment_method_update"})
    assert reply.status == 302
    sent = stripe_standin.calls("POST", "/v1/billing_portal/sessions")[-1]["params"]
    assert "after_expiration" not in sent

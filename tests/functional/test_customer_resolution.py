"""The heart of the service: the right customer, never someone else's, never duplicates."""

from __future__ import annotations

import threading

from devstack.http_api import load_handler_module
from tests.functional.conftest import Gateway


def session_customer(stripe_standin, reply):
    return stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["customer"]


def test_existing_unowned_customer_with_verified_email_is_reused_and_claimed(gateway, user, stripe_standin, stack):
    legacy = stripe_standin.add_customer(email="ada@example.com", name="Ada (from WordPress)")
    sub, tokens = user(email="ada@example.com")
    reply = gateway().portal(tokens["IdToken"])
    assert session_customer(stripe_standin, reply) == legacy
    assert len(stripe_standin.customers()) == 1  # nothing created
    claimed = stripe_standin.account.customers[legacy]["metadata"]
    assert claimed == {"cognito_sub": sub, "cognito_user_pool": stack.user_pool_id}


def test_email_match_ignores_case_of_the_stored_address(gateway, user, stripe_standin):
    legacy = stripe_standin.add_customer(email="ada@example.com")
    _, tokens = user(email="Ada@Example.com")
    assert session_customer(stripe_standin, gateway().portal(tokens["IdToken"])) == legacy


def test_customer_owned_by_another_user_is_never_matched(gateway, user, stripe_standin, stack):
    other = stripe_standin.add_customer(email="ada@example.com",
                                        metadata={"cognito_sub": "someone-else",
                                                  "cognito_user_pool": stack.user_pool_id})
    other_pool = stripe_standin.add_customer(email="ada@example.com",
                                             metadata={"cognito_user_pool": "us-east-1_OtherPool"})
    sub, tokens = user(email="ada@example.com")
    chosen = session_customer(stripe_standin, gateway().portal(tokens["IdToken"]))
    assert chosen not in (other, other_pool)
    assert stripe_standin.account.customers[chosen]["metadata"]["cognito_sub"] == sub
    assert stripe_standin.account.customers[other]["metadata"]["cognito_sub"] == "someone-else"


def test_unverified_email_is_never_matched(gateway, user, stripe_standin):
    victim = stripe_standin.add_customer(email="ceo@example.com", subscription_status="active")
    sub, tokens = user("mallory", email="ceo@example.com", email_verified=False)
    chosen = session_customer(stripe_standin, gateway().portal(tokens["IdToken"]))
    assert chosen != victim
    assert stripe_standin.account.customers[victim]["metadata"] == {}
    assert not [c for c in stripe_standin.calls("GET", "/v1/customers")]  # not even looked up


def test_matching_can_be_switched_off(gateway, user, stripe_standin):
    legacy = stripe_standin.add_customer(email="ada@example.com")
    _, tokens = user(email="ada@example.com")
    chosen = session_customer(stripe_standin, gateway(MATCH_EXISTING_BY_EMAIL="false").portal(tokens["IdToken"]))
    assert chosen != legacy


def test_several_matches_prefer_active_subscription_then_newest(gateway, user, stripe_standin):
    older_with_sub = stripe_standin.add_customer(email="ada@example.com", subscription_status="active")
    stripe_standin.add_customer(email="ada@example.com", subscription_status="canceled")
    stripe_standin.add_customer(email="ada@example.com")
    _, tokens = user(email="ada@example.com")
    assert session_customer(stripe_standin, gateway().portal(tokens["IdToken"])) == older_with_sub


def test_several_matches_without_subscription_pick_newest(gateway, user, stripe_standin):
    stripe_standin.add_customer(email="ada@example.com", created=1_700_000_000)
    newest = stripe_standin.add_customer(email="ada@example.com", created=1_700_000_001)  # one second later
    stripe_standin.add_customer(email="ada@example.com", created=1_699_999_999)
    _, tokens = user(email="ada@example.com")
    assert session_customer(stripe_standin, gateway().portal(tokens["IdToken"])) == newest


def test_creation_disabled_and_no_match_is_403_no_billing_account(gateway, user, stripe_standin):
    _, tokens = user(email="nobody@example.com")
    reply = gateway(ALLOW_CUSTOMER_CREATION="false").portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 403
    assert reply.json["error"] == "no_billing_account"
    assert "billing account" in reply.json["message"]
    assert stripe_standin.customers() == []


def test_creation_disabled_still_matches_existing(gateway, user, stripe_standin):
    legacy = stripe_standin.add_customer(email="ada@example.com")
    _, tokens = user(email="ada@example.com")
    reply = gateway(ALLOW_CUSTOMER_CREATION="false").portal(tokens["IdToken"])
    assert session_customer(stripe_standin, reply) == legacy


def test_deleted_mapped_customer_is_resolved_again(gateway, user, stripe_standin, stack):
    sub, tokens = user()
    gw = gateway()
    first = session_customer(stripe_standin, gw.portal(tokens["IdToken"]))
    stripe_standin.delete_customer(first)
    reply = gw.portal(tokens["IdToken"])
    assert reply.status == 302
    second = session_customer(stripe_standin, reply)
    assert second != first
    item = stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"test#{stack.user_pool_id}#{sub}"}})["Item"]
    assert item["customer_id"]["S"] == second
    # Another execution environment (cold cache) also lands on the replacement, and nothing more is created.
    assert session_customer(stripe_standin, gateway().portal(tokens["IdToken"])) == second
    assert len(stripe_standin.customers()) == 1


def test_concurrent_first_requests_create_exactly_one_customer(gateway, user, stripe_standin, monkeypatch):
    sub, tokens = user()
    gateway()  # sets the environment
    # Each thread is its own execution environment (own caches), as concurrent Lambda invocations are.
    environments = [Gateway(load_handler_module()) for _ in range(8)]
    stripe_standin.latency = 0.05  # widen the race window
    barrier = threading.Barrier(len(environments))
    replies = [None] * len(environments)

    def first_visit(index):
        barrier.wait()
        replies[index] = environments[index].portal(tokens["IdToken"])

    threads = [threading.Thread(target=first_visit, args=(i,)) for i in range(len(environments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status for r in replies] == [302] * len(environments)
    assert len(stripe_standin.customers()) == 1
    assert {session_customer(stripe_standin, r) for r in replies} == {stripe_standin.customers()[0]["id"]}
    creates = stripe_standin.calls("POST", "/v1/customers")
    assert len(creates) >= 2  # the race really happened: several creates, all but one replayed or refused


def test_customer_claimed_by_another_user_at_the_same_time_is_not_shared(gateway, user, stripe_standin, stack):
    """Two Cognito users with the same verified email (two pools, or a recreated user) race for one unowned
    customer: the DynamoDB claim lets exactly one of them have it."""
    legacy = stripe_standin.add_customer(email="ada@example.com")
    stack.moto.client("dynamodb").put_item(TableName=stack.table_name, Item={
        "pk": {"S": f"test#claim#{legacy}"}, "owner": {"S": f"test#{stack.user_pool_id}#someone-else"}})
    sub, tokens = user(email="ada@example.com")
    chosen = session_customer(stripe_standin, gateway().portal(tokens["IdToken"]))
    assert chosen != legacy
    assert stripe_standin.account.customers[legacy]["metadata"] == {}  # not stamped either
    assert stripe_standin.account.customers[chosen]["metadata"]["cognito_sub"] == sub


def test_claim_is_recorded_and_reentrant(gateway, user, stripe_standin, stack):
    legacy = stripe_standin.add_customer(email="ada@example.com")
    sub, tokens = user(email="ada@example.com")
    assert session_customer(stripe_standin, gateway().portal(tokens["IdToken"])) == legacy
    claim = stack.moto.client("dynamodb").get_item(TableName=stack.table_name,
                                                   Key={"pk": {"S": f"test#claim#{legacy}"}})["Item"]
    assert claim["owner"]["S"] == f"test#{stack.user_pool_id}#{sub}"


def test_unicode_case_folding_never_claims_another_address(gateway, user, stripe_standin, stack):
    """KELVIN SIGN (U+212A) lower-cases to "k" in Python: a verified "\u212aarl@…" is not karl@…"""
    karl = stripe_standin.add_customer(email="karl@example.com", subscription_status="active")
    sub, tokens = user("mallory", email="\u212aarl@example.com", email_verified=True)
    chosen = session_customer(stripe_standin, gateway().portal(tokens["IdToken"]))
    assert chosen != karl
    assert stripe_standin.account.customers[karl]["metadata"] == {}
    claims = stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"test#claim#{karl}"}}).get("Item")
    assert claims is None

"""The status projection from Stripe's own objects: stripe-python's fixture-shaped subscriptions (API 2026-10-28,
period on the items), the older shape (period on the subscription), what is left out, and the same answer from
stripe-python objects and from plain JSON (the webhook function and the status route feed it each way)."""

from __future__ import annotations

import json

import stripe
from portal_gateway.billing.status_projection import HANDLED_EVENTS, answer, encode, etag, project


def subscription(status="active", *, price="price_1", product="prod_1", lookup_key="pro", period_end=1_800_000_000,
                 created=1_700_000_000, on_items=True, **extra):
    item = {"id": "si_1", "object": "subscription_item", "quantity": 1,
            "price": {"id": price, "object": "price", "product": product, "lookup_key": lookup_key}}
    top = {}
    if on_items:
        item["current_period_end"] = period_end
    else:
        top["current_period_end"] = period_end
    return {"id": "sub_1", "object": "subscription", "status": status, "created": created, "customer": "cus_1",
            "cancel_at_period_end": False, "cancel_at": None, "trial_end": None,
            "items": {"object": "list", "data": [item]}, "default_payment_method": "pm_secret", **top, **extra}


def test_what_a_page_needs_and_nothing_else():
    projected = project([subscription(cancel_at_period_end=True, trial_end=1_790_000_000)],
                        [{"object": "entitlements.active_entitlement", "lookup_key": "premium", "feature": "feat_1"}])
    assert projected == {"subscriptions": [{
        "status": "active", "current_period_end": 1_800_000_000, "cancel_at_period_end": True, "cancel_at": None,
        "trial_end": 1_790_000_000,
        "items": [{"price": "price_1", "product": "prod_1", "lookup_key": "pro", "quantity": 1}]}],
        "entitlements": ["premium"]}
    text = encode(answer(projected))
    for secret in ("cus_1", "sub_1", "pm_secret", "si_1"):
        assert secret not in text


def test_ended_subscriptions_are_left_out_and_the_newest_comes_first():
    projected = project([subscription("canceled"), subscription("incomplete_expired"),
                         subscription("past_due", price="price_old", created=1),
                         subscription("trialing", price="price_new", created=2)], [])
    assert [(s["status"], s["items"][0]["price"]) for s in projected["subscriptions"]] == [
        ("trialing", "price_new"), ("past_due", "price_old")]


def test_the_period_end_of_older_api_versions_and_an_expanded_product():
    legacy = subscription(on_items=False)
    legacy["items"]["data"][0]["price"]["product"] = {"id": "prod_9", "object": "product", "name": "x"}
    (only,) = project([legacy], [])["subscriptions"]
    assert only["current_period_end"] == 1_800_000_000 and only["items"][0]["product"] == "prod_9"


def test_entitlements_are_sorted_and_unique_and_junk_is_ignored():
    assert project([], [{"lookup_key": "b"}, {"lookup_key": "a"}, {"lookup_key": "b"}, {"lookup_key": None},
                        "junk"])["entitlements"] == ["a", "b"]


def test_stripe_python_objects_and_plain_json_give_the_same_projection_and_etag():
    raw = [subscription(), subscription("trialing", price="price_2", created=1_700_000_500)]
    entitlements = [{"id": "ent_1", "object": "entitlements.active_entitlement", "lookup_key": "premium",
                     "feature": "feat_1", "livemode": False}]
    as_objects = [stripe.Subscription.construct_from(s, "sk_test_x").to_dict() for s in raw]
    as_entitlements = [stripe.entitlements.ActiveEntitlement.construct_from(e, "sk_test_x").to_dict()
                       for e in entitlements]
    from_json = encode(answer(project(json.loads(json.dumps(raw)), entitlements)))
    from_objects = encode(answer(project(as_objects, as_entitlements)))
    assert from_json == from_objects and etag(from_json) == etag(from_objects)


def test_the_etag_changes_with_the_state_only():
    one = encode(answer(project([subscription()], [])))
    assert etag(one) == etag(encode(answer(project([subscription()], []))))
    assert etag(one) != etag(encode(answer(project([subscription(cancel_at_period_end=True)], []))))


def test_every_handled_event_and_every_stand_in_event_is_one_stripe_accepts():
    """stripe-python's parameter types list the event types POST /v1/webhook_endpoints accepts."""
    import typing

    from stripe.params import WebhookEndpointCreateParams

    from devstack.stripe_standin import EVENT_TYPES

    (literal,) = typing.get_args(WebhookEndpointCreateParams.__annotations__["enabled_events"])
    accepted = set(typing.get_args(literal))
    assert len(accepted) > 100
    assert set(HANDLED_EVENTS) <= accepted and set(EVENT_TYPES) <= accepted

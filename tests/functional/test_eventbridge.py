"""Stripe's events through Amazon EventBridge (template: StripeEventSourceName): the rule takes exactly the
handled event types of Stripe's partner source (moto's own EventBridge pattern matching), and the
StripeEventsFunction's handler applies them with the webhook's core: reordered and duplicated, they end in
Stripe's final state; a failure raises, so Lambda retries and then the dead-letter queue keeps the event."""

from __future__ import annotations

import datetime
import json
import random
import uuid

import pytest
from moto.events.models import EventPattern
from portal_gateway.billing.status_projection import HANDLED_EVENTS as HANDLED
from portal_gateway.billing.status_projection import project
from portal_gateway.errors import WebhookPayloadInvalid

from devstack.cfn import load_template
from devstack.http_api import new_context
from devstack.stripe_standin import Fault

SOURCE = "aws.partner/stripe.com/ed_61RehearsalSourceId"
HANDLED_EVENTS = set(HANDLED)


def envelope(stripe_event: dict, *, source: str = SOURCE) -> dict:
    """A Stripe event as EventBridge hands it to a rule's Lambda target (documented for partner events:
    `detail-type` is the Stripe event type, `detail` the event)."""
    created = datetime.datetime.fromtimestamp(stripe_event.get("created", 0), datetime.UTC)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": stripe_event["type"], "source": source,
            "account": "123456789012", "time": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "eu-west-1",
            "resources": [], "detail": stripe_event}


def rule() -> EventPattern:
    events = load_template()["Resources"]["StripeEventsFunction"]["Properties"]["Events"]
    return EventPattern.load(json.dumps(events["StripeEvents"]["Properties"]["Pattern"]))


def changes(standin, customers: int = 4, rounds: int = 4) -> list[str]:
    prices = [standin.add_product(f"Plan {n}", lookup_key=f"plan_{n}", features=(f"feature-{n}",)) for n in range(3)]
    made = [standin.add_customer(email=f"bus{n}@example.com") for n in range(customers)]
    for round_ in range(rounds):
        for n, customer in enumerate(made):
            subscription = standin.add_subscription(customer, "active", price_id=prices[(n + round_) % 3])
            if (n + round_) % 2:
                standin.update_subscription(subscription, cancel_at_period_end=True)
            if (n + round_) % 3 == 0:
                standin.cancel_subscription(subscription)
    standin.update_price(prices[0], lookup_key="plan_0_2027")
    return made


def test_the_rule_takes_exactly_the_handled_events_of_stripes_partner_source(stripe_standin):
    stripe_standin.deliverer.paused = True
    changes(stripe_standin, customers=2, rounds=2)
    stripe_standin.delete_customer(stripe_standin.add_customer(email="gone@example.com"))
    # What the stand-in emits, and events of types Stripe sends that the destination should not have been given.
    emitted = stripe_standin.events()
    emitted += [{**emitted[0], "type": other} for other in ("invoice.paid", "customer.created", "customer.updated",
                                                            "payment_intent.succeeded", "customer.subscription")]
    pattern = rule()
    for event in emitted:
        assert pattern.matches_event(envelope(event)) == (event["type"] in HANDLED_EVENTS), event["type"]
        assert not pattern.matches_event(envelope(event, source="aws.partner/example.com/ed_1"))
    declared = set(load_template()["Resources"]["StripeEventsFunction"]["Properties"]["Events"]["StripeEvents"][
        "Properties"]["Pattern"]["detail-type"])
    assert declared == HANDLED_EVENTS


def test_a_burst_reordered_and_twice_through_eventbridge_ends_in_stripes_final_state(billing, stripe_standin):
    stripe_standin.deliverer.paused = True  # the webhook endpoint delivers nothing: EventBridge alone
    customers = changes(stripe_standin)
    pattern = rule()
    taken = [envelope(e) for e in stripe_standin.events() if pattern.matches_event(envelope(e))]
    shuffle = random.Random(31)
    deliveries = taken + shuffle.sample(taken, len(taken) // 2)  # EventBridge delivers at least once
    shuffle.shuffle(deliveries)
    handler = billing.webhooks.eventbridge_handler
    outcomes = [handler(delivery, new_context())["outcome"] for delivery in deliveries]
    store = billing.webhooks.events.projections
    for customer in customers:
        subscriptions, entitlements = stripe_standin.billing_records(customer)
        assert store.get(customer).projection == project(subscriptions, entitlements), customer
    assert outcomes.count("duplicate") >= len(taken) // 2
    assert outcomes.count("processed") == len({d["detail"]["id"] for d in deliveries})


def test_what_is_not_stripes_is_refused_and_a_failure_raises_for_lambdas_retry(billing, stripe_standin):
    handler = billing.webhooks.eventbridge_handler
    customer = stripe_standin.add_customer(email="retry@example.com")
    stripe_standin.deliverer.paused = True
    stripe_standin.add_subscription(customer, "active", price_id=stripe_standin.add_product(
        "Pro", lookup_key="pro", features=("premium",)))
    (created,) = [e for e in stripe_standin.events() if e["type"] == "customer.subscription.created"]
    with pytest.raises(WebhookPayloadInvalid):
        handler(envelope(created, source="aws.events"), new_context())
    stripe_standin.inject(Fault(status=500, times=10, method="GET", path_prefix="/v1/subscriptions"))
    with pytest.raises(Exception):  # noqa: B017 - whatever Stripe's failure becomes, Lambda must see it fail
        handler(envelope(created), new_context())
    assert billing.webhooks.events.projections.get(customer) is None  # nothing half-applied
    stripe_standin.faults.clear()
    assert handler(envelope(created), new_context())["outcome"] == "processed"  # the retry applies it
    subscriptions, entitlements = stripe_standin.billing_records(customer)
    assert billing.webhooks.events.projections.get(customer).projection == project(subscriptions, entitlements)

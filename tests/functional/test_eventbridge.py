"""Stripe's events through Amazon EventBridge (template: StripeEventSourceName). The Stripe stand-in models the
v2 event destination API (read back by stripe-python's own v2 client and types) and puts each event on the
partner event bus once a bus is associated, as EventBridge hands it to a rule's target: at least once, in no
promised order. The template's rule (checked with moto's own event-pattern matching) takes exactly the handled
event types of Stripe's partner source, and the StripeEventsFunction's handler applies them with the webhook's
core: reordered and duplicated, they end in Stripe's final state; a failure raises, so Lambda retries and then
the dead-letter queue keeps the event."""

from __future__ import annotations

import json

import pytest
import stripe
from moto.events.models import EventPattern
from portal_gateway.billing.status_projection import HANDLED_EVENTS as HANDLED
from portal_gateway.billing.status_projection import project
from portal_gateway.errors import WebhookPayloadInvalid

from devstack.cfn import load_template
from devstack.http_api import new_context
from devstack.stripe_eventbridge import envelope, source_name
from devstack.stripe_standin import Fault
from tests.support.stripe_reference import _check_object

HANDLED_EVENTS = set(HANDLED)


def rule() -> EventPattern:
    events = load_template()["Resources"]["StripeEventsFunction"]["Properties"]["Events"]
    return EventPattern.load(json.dumps(events["StripeEvents"]["Properties"]["Pattern"]))


def destination(standin, events: list[str] | None = None) -> stripe.v2.core.EventDestination:
    """What the Workbench (or `POST /v2/core/event_destinations`) makes for this account and region."""
    client = stripe.StripeClient(standin.key, base_addresses={"api": standin.base_url})
    return client.v2.core.event_destinations.create({
        "name": "stripe-portal-gateway", "type": "amazon_eventbridge", "event_payload": "snapshot",
        "enabled_events": events or sorted(HANDLED_EVENTS),
        "amazon_eventbridge": {"aws_account_id": "123456789012", "aws_region": "eu-west-1"}})


def changes(standin, customers: int = 4, rounds: int = 4) -> list[str]:
    prices = [standin.add_product(f"Plan {n}", lookup_key=f"plan_{n}", features=(f"feature-{n}",)) for n in range(3)]
    made = [standin.add_customer(email=f"bus{n}@example.com") for n in range(customers)]
    standin.churn_subscriptions(made, prices, rounds=rounds)
    standin.update_price(prices[0], lookup_key="plan_0_2027")
    return made


def test_the_standin_answers_the_v2_event_destination_api_as_stripe_python_reads_it(stripe_standin):
    made = destination(stripe_standin)
    raw = json.loads(made.last_response.body)
    assert _check_object(stripe.v2.core.EventDestination, raw, "") == []  # every field of stripe-python's type
    assert raw["amazon_eventbridge"]["aws_event_source_status"] == "pending"  # until a bus is associated
    assert source_name(raw) == f"aws.partner/stripe.com/{made.id}"
    client = stripe.StripeClient(stripe_standin.key, base_addresses={"api": stripe_standin.base_url})
    service = client.v2.core.event_destinations
    assert [d.id for d in service.list().data] == [made.id]
    assert service.disable(made.id).status == "disabled" and service.enable(made.id).status == "enabled"
    assert service.update(made.id, {"enabled_events": ["customer.deleted"]}).enabled_events == ["customer.deleted"]
    with pytest.raises(stripe.InvalidRequestError) as refused:  # v2's JSON error, read by stripe-python
        service.create({"name": "x", "type": "amazon_eventbridge", "event_payload": "snapshot",
                        "enabled_events": ["customer.deleted"], "amazon_eventbridge": {"aws_region": "eu-west-1"}})
    assert refused.value.http_status == 400 and "aws_account_id" in str(refused.value)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        service.retrieve("ed_nothing")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_the_rule_takes_exactly_the_handled_events_of_stripes_partner_source(stripe_standin):
    stripe_standin.deliverer.paused = True
    made = json.loads(destination(stripe_standin, ["*"]).last_response.body)
    changes(stripe_standin, customers=2, rounds=2)
    stripe_standin.delete_customer(stripe_standin.add_customer(email="gone@example.com"))
    # What the stand-in emits, and events of types Stripe sends that the destination should not have been given.
    emitted = stripe_standin.events()
    emitted += [{**emitted[0], "type": other} for other in ("invoice.paid", "customer.created", "customer.updated",
                                                            "payment_intent.succeeded", "customer.subscription")]
    pattern = rule()
    for event in emitted:
        assert pattern.matches_event(envelope(event, made)) == (event["type"] in HANDLED_EVENTS), event["type"]
        other = {**envelope(event, made), "source": "aws.partner/example.com/ed_1"}
        assert not pattern.matches_event(other)
    declared = set(load_template()["Resources"]["StripeEventsFunction"]["Properties"]["Events"]["StripeEvents"][
        "Properties"]["Pattern"]["detail-type"])
    assert declared == HANDLED_EVENTS


def test_a_burst_through_eventbridge_reordered_and_twice_ends_in_stripes_final_state(billing, stripe_standin):
    stripe_standin.deliverer.paused = True  # the webhook endpoint delivers nothing: EventBridge alone
    made = json.loads(destination(stripe_standin).last_response.body)
    early = stripe_standin.add_customer(email="early@example.com")  # before the bus exists: dropped, as AWS does
    stripe_standin.add_subscription(early, "active", price_id=stripe_standin.add_product("Early", lookup_key="e"))
    pattern, handler = rule(), billing.webhooks.eventbridge_handler

    def lambda_target(message: dict):  # the rule: its pattern, then the function
        return handler(message, new_context())["outcome"] if pattern.matches_event(message) else None

    assert stripe_standin.associate_event_bus(source_name(made), lambda_target)["amazon_eventbridge"][
        "aws_event_source_status"] == "active"
    stripe_standin.eventbridge.reorder, stripe_standin.eventbridge.duplicate_rate = True, 0.5
    customers = changes(stripe_standin)
    outcomes = stripe_standin.eventbridge.deliver()
    store = billing.webhooks.events.projections
    for customer in customers:
        subscriptions, entitlements = stripe_standin.billing_records(customer)
        assert store.get(customer).projection == project(subscriptions, entitlements), customer
    delivered = stripe_standin.eventbridge.delivered
    assert len(delivered) > len({m["detail"]["id"] for m in delivered})  # duplicates came, and were absorbed
    assert outcomes.count("processed") == len({m["detail"]["id"] for m in delivered})
    assert store.get(early) is None  # nothing reached a bus that did not exist yet


def test_what_is_not_stripes_is_refused_and_a_failure_raises_for_lambdas_retry(billing, stripe_standin):
    handler = billing.webhooks.eventbridge_handler
    stripe_standin.deliverer.paused = True
    made = json.loads(destination(stripe_standin).last_response.body)
    customer = stripe_standin.add_customer(email="retry@example.com")
    stripe_standin.add_subscription(customer, "active", price_id=stripe_standin.add_product(
        "Pro", lookup_key="pro", features=("premium",)))
    (created,) = [e for e in stripe_standin.events() if e["type"] == "customer.subscription.created"]
    with pytest.raises(WebhookPayloadInvalid):
        handler({**envelope(created, made), "source": "aws.events"}, new_context())
    stripe_standin.inject(Fault(status=500, times=10, method="GET", path_prefix="/v1/subscriptions"))
    with pytest.raises(Exception):  # noqa: B017 - whatever Stripe's failure becomes, Lambda must see it fail
        handler(envelope(created, made), new_context())
    assert billing.webhooks.events.projections.get(customer) is None  # nothing half-applied
    stripe_standin.faults.clear()
    assert handler(envelope(created, made), new_context())["outcome"] == "processed"  # the retry applies it
    subscriptions, entitlements = stripe_standin.billing_records(customer)
    assert billing.webhooks.events.projections.get(customer).projection == project(subscriptions, entitlements)


def test_a_wiped_status_table_replayed_from_the_archive_ends_equal_to_stripes_records(billing, stack, stripe_standin):
    """The recovery the webhook path lacks: every projection and handled event id deleted from the table, then
    the archive replayed since before the burst; the statuses are whole again, as Stripe has them."""
    from portal_gateway.aws.projection_store import event_key, projection_key

    stripe_standin.deliverer.paused = True
    made = json.loads(destination(stripe_standin).last_response.body)
    pattern, handler = rule(), billing.webhooks.eventbridge_handler
    stripe_standin.associate_event_bus(source_name(made), lambda message: handler(message, new_context())[
        "outcome"] if pattern.matches_event(message) else None)
    before = stripe_standin.eventbridge.archive[-1][0] if stripe_standin.eventbridge.archive else 0.0
    customers = changes(stripe_standin, customers=3, rounds=3)
    stripe_standin.eventbridge.deliver()
    dynamodb, table = stack.moto.client("dynamodb"), stack.table_name
    wiped = 0
    projection_prefix, event_prefix = projection_key("test", ""), event_key("test", "")
    for item in dynamodb.scan(TableName=table)["Items"]:
        if item["pk"]["S"].startswith((projection_prefix, event_prefix)):
            dynamodb.delete_item(TableName=table, Key={"pk": item["pk"]})
            wiped += 1
    store = billing.webhooks.events.projections
    assert wiped and all(store.get(c) is None for c in customers)
    replayed = stripe_standin.eventbridge.replay("after-the-wipe", since=before)
    outcomes = stripe_standin.eventbridge.deliver()
    assert replayed == len(outcomes) and "processed" in outcomes
    for customer in customers:
        subscriptions, entitlements = stripe_standin.billing_records(customer)
        assert store.get(customer).projection == project(subscriptions, entitlements), customer


def test_an_applied_event_logs_every_field_the_dashboards_lag_widget_reads(caplog, billing, stripe_standin):
    """The dashboard's lag widget reads the StripeEventsFunction's "Event applied" lines too
    (tests/support/dashboard.py): each field it names must be in a real line."""
    import logging

    from tests.functional.test_observability import held_to
    from tests.support.dashboard import fields_named, log_queries

    stripe_standin.deliverer.paused = True
    made = json.loads(destination(stripe_standin).last_response.body)
    customer = stripe_standin.add_customer(email="lag-bus@example.com")
    stripe_standin.add_subscription(customer, "active", price_id=stripe_standin.add_product("Lag", lookup_key="lag"))
    (created,) = [e for e in stripe_standin.events() if e["type"] == "customer.subscription.created"]
    caplog.set_level(logging.INFO)
    assert billing.webhooks.eventbridge_handler(envelope(created, made), new_context())["outcome"] == "processed"
    formatter = billing.webhooks.logger.registered_formatter
    (line,) = [json.loads(formatter.format(r)) for r in caplog.records if r.getMessage() == "Event applied"]
    assert line["stripe_event_id"] == created["id"] and 0 <= line["lag_s"] < 60
    for query in log_queries()["StripeEventsFunction"]:
        assert held_to(fields_named(query), [line]) == [], query

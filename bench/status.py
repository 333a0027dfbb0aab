"""Benchmark of the billing status (issue: webhook-fed status and entitlements). Prints a markdown table.

  1. GET /billing/status, warm, for a mapped user whose projection is stored: the handler's own time (total less
     outbound I/O, as bench/run.py measures it), p50 and p99, and its Stripe and AWS calls per request.
  2. Webhook to visible status: a subscription changes in the Stripe stand-in, which delivers the signed events
     over HTTP to the webhook function; the time until GET /billing/status answers the change.
  3. A burst of events (duplicates and reordering switched on in the stand-in's delivery): once every delivery is
     done, each customer's stored projection is compared with the projection of the stand-in's own records.

Everything runs on loopback in this process: moto (through a keep-alive proxy, as AWS keeps connections),
the Stripe stand-in, both functions' real handlers. Run: `.venv/bin/python bench/status.py`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core"), str(ROOT / "cli")]

from bench.outbound import timed  # noqa: E402 - the handler's own time: total less its outbound wait
from bench.run import percentile  # noqa: E402 - the one percentile both benchmarks report


def main() -> int:
    import contextlib

    table = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):  # the functions' metric lines (EMF) go to stdout
        code = run(table)
    print(table.getvalue(), end="")
    return code


def run(table) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="warm status requests")
    parser.add_argument("--changes", type=int, default=30, help="subscription changes timed to visible status")
    parser.add_argument("--burst", type=int, default=1000, help="events in the burst (at least)")
    parser.add_argument("--duplicate-rate", type=float, default=0.2, help="share of events delivered twice")
    parser.add_argument("--limit-seconds", type=float, default=10,
                        help="seconds of clicks and status reads at twice Stripe's test-mode rate limit")
    parser.add_argument("--reconcile-customers", type=int, default=1000,
                        help="stale statuses the scheduled reconciliation reads again, under the rate limit")
    args = parser.parse_args()

    from portal_admin.webhooks import setup
    from portal_gateway.billing.status_projection import project
    from portal_gateway.billing.stripe_client import StripeHttp

    from devstack.aws_standin import MotoServer, add_webhook_secret, provision
    from devstack.fault_proxy import FaultProxy
    from devstack.http_api import build_event, load_handler_module, new_context, serve
    from devstack.stripe_standin import StripeStandin, fake_key

    moto = MotoServer()
    stripe = StripeStandin().start()
    key = stripe.add_key(fake_key())
    stripe.create_default_portal_configuration()
    stack = provision(moto, stripe_key=key)
    aws_proxy = FaultProxy(moto.endpoint)
    env = stack.service_env(stripe_api_base=stripe.base_url, return_url="https://shop.example.com/",
                            WEBHOOK_SECRET_ID=add_webhook_secret(stack), POWERTOOLS_LOG_LEVEL="WARNING",
                            POWERTOOLS_METRICS_DISABLED="true", RECONCILE_RATE=str(RECONCILE_RATE))
    os.environ.update({name: value.replace(moto.endpoint, aws_proxy.url) for name, value in env.items()})
    portal = load_handler_module()
    webhooks = load_handler_module(ROOT / "functions" / "webhooks" / "app.py")
    server = serve(webhooks.lambda_handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    setup(url=f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe", secret_id=env["WEBHOOK_SECRET_ID"],
          client=moto.client, out=io.StringIO(),
          stripe=StripeHttp(api_base=stripe.base_url, timeout_seconds=5).with_key(key))
    stripe.deliverer.retry_delays = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
    price = stripe.add_product("Pro", lookup_key="pro_monthly", features=("premium",))

    def status(token: str) -> tuple[dict, float, float]:
        event = build_event("GET", "/billing/status", headers={"authorization": f"Bearer {token}",
                                                               "accept": "application/json"})
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        result, total, outbound = timed(lambda: portal.lambda_handler(event, new_context()))
        assert result["statusCode"] == 200, result
        return json.loads(result["body"]), total, outbound

    stack.add_user("bench", "Bench-Password-1", email="bench@example.com")
    token = stack.sign_in("bench", "Bench-Password-1")["IdToken"]
    customer = stripe.add_customer(email="bench@example.com")
    subscription = stripe.add_subscription(customer, "active", price_id=price)
    assert stripe.deliverer.idle(30)
    status(token)  # maps the user (verified email) and reads the projection once
    service = portal.portal_service()
    dynamodb_calls = {"n": 0}
    store_client = service.projections._client
    original_call = store_client.call

    def counted_call(action, params):
        dynamodb_calls["n"] += 1
        return original_call(action, params)

    store_client.call = counted_call
    stripe_before = service.billing.calls
    totals, own = [], []
    for _ in range(args.requests):
        _, total, outbound = status(token)
        totals.append(total)
        own.append(total - outbound)
    stripe_calls = (service.billing.calls - stripe_before) / args.requests
    aws_calls = dynamodb_calls["n"] / args.requests

    visible = []
    for n in range(args.changes):
        cancel = n % 2 == 0
        started = time.perf_counter()
        stripe.update_subscription(subscription, cancel_at_period_end=cancel)
        while status(token)[0]["subscriptions"][0]["cancel_at_period_end"] is not cancel:
            if time.perf_counter() - started > 10:
                raise SystemExit("a change did not become visible within 10 s")
        visible.append(time.perf_counter() - started)

    deliverer = stripe.deliverer
    deliverer.paused, deliverer.reorder, deliverer.duplicate_rate = True, True, args.duplicate_rate
    deliverer.random.seed(1)
    customers = [stripe.add_customer(email=f"burst{n}@example.com") for n in range(50)]
    prices = [price] + [stripe.add_product(f"Plan {n}", lookup_key=f"plan_{n}", features=(f"f{n}",))
                        for n in range(3)]
    emitted = burst_of_changes(stripe, customers, prices, args.burst)
    delivered_before = len(deliverer.deliveries)
    reads_before = webhooks.reader.calls
    started = time.perf_counter()
    deliverer.resume()
    assert deliverer.idle(600), "the burst did not drain"
    drained = time.perf_counter() - started
    attempts = deliverer.deliveries[delivered_before:]
    store = webhooks.events.projections
    matching = sum(store.get(c).projection == project(*stripe.billing_records(c)) for c in customers)
    unique_ok = len({d.event_id for d in attempts if d.status == 200})
    webhook_reads_per_event = (webhooks.reader.calls - reads_before) / max(1, unique_ok)
    bus = eventbridge_burst(stripe, key, webhooks, prices, args.burst, args.duplicate_rate)

    limit = under_rate_limit(stripe, stack, portal, args.limit_seconds)
    reconciled = reconcile_stale_table(stripe, webhooks, args.reconcile_customers)

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f} ms"

    def print(*line, **_):  # noqa: A001 - the table, not the functions' stdout
        table.write(" ".join(line) + "\n")

    print("| Billing status | Result |")
    print("|---|---|")
    print(f"| Warm status request, handler's own time p50 / p99 ({args.requests} requests) | "
          f"{ms(statistics.median(own))} / {ms(percentile(own, 99))} |")
    print(f"| Warm status request, total p50 (moto on loopback) | {ms(statistics.median(totals))} |")
    print(f"| Stripe calls / DynamoDB calls per warm status request | {stripe_calls:g} / {aws_calls:g} |")
    print(f"| Webhook to visible status, p50 / p95 / max ({args.changes} changes) | "
          f"{ms(statistics.median(visible))} / {ms(percentile(visible, 95))} / {ms(max(visible))} |")
    print(f"| Burst: events emitted / delivery attempts / events applied | {emitted} / {len(attempts)} / "
          f"{unique_ok} |")
    duplicates = sum(1 for d in attempts if d.status == 200) - unique_ok
    print(f"| Burst: successful deliveries of an event already applied (duplicates) / drained in | "
          f"{duplicates} / {drained:.1f} s |")
    print(f"| Burst: customers whose projection equals the stand-in's records | {matching} of {len(customers)} |")
    print(f"| The same burst through EventBridge: events put on the bus / deliveries / events applied | "
          f"{bus['emitted']} / {bus['deliveries']} / {bus['applied']} |")
    print(f"| EventBridge burst: customers whose projection equals the stand-in's records | {bus['matching']} of "
          f"{bus['customers']} |")
    print(f"| Stripe calls per applied event: webhook / EventBridge | {webhook_reads_per_event:.2f} / "
          f"{bus['reads_per_event']:.2f} |")
    print(f"| 2x Stripe's rate limit ({limit['rate']}/s for {args.limit_seconds:g} s): clicks / status reads | "
          f"{limit['clicks']} / {limit['reads']} |")
    print(f"| 2x rate limit: clicks answered 302 / 502 with Retry-After / other | {limit['click_302']} / "
          f"{limit['click_502']} / {limit['click_other']} |")
    print(f"| 2x rate limit: status reads of stored users answered 200 | {limit['reads_200']} of {limit['reads']} |")
    print(f"| 2x rate limit: Stripe requests / requests made (429s from Stripe) | {limit['stripe_calls']} / "
          f"{limit['clicks'] + limit['reads']} ({limit['rate_limited']}) |")
    print(f"| 2x rate limit: slowest answer / the function's budget | {ms(limit['slowest'])} / 14.5 s |")
    print(f"| Reconciliation: stale statuses read again / runs / seconds (at {RECONCILE_RATE} Stripe calls/s) | "
          f"{reconciled['read']} of {args.reconcile_customers} / {reconciled['runs']} / "
          f"{reconciled['seconds']:.0f} s |")
    print(f"| Reconciliation: Stripe calls per customer / 429s from Stripe (limit {TEST_MODE_RATE_LIMIT}/s) | "
          f"{reconciled['calls_per_customer']:.2f} / {reconciled['rate_limited']} |")
    stripe.close()
    server.shutdown()
    moto.stop()
    held = (limit["reads_200"] == limit["reads"] and limit["click_other"] == 0
            and reconciled["read"] == args.reconcile_customers and reconciled["rate_limited"] == 0)
    return 0 if matching == len(customers) and bus["matching"] == bus["customers"] and held else 1


def burst_of_changes(stripe, customers: list[str], prices: list[str], at_least: int) -> int:
    """Subscriptions made, cancelled at period end and cancelled, round after round, until `at_least` events."""
    first_event = len(stripe.events())
    round_ = 0
    while len(stripe.events()) - first_event < at_least:
        stripe.churn_subscriptions(customers, prices, rounds=1, first_round=round_)
        round_ += 1
    return len(stripe.events()) - first_event


def eventbridge_burst(stripe, key: str, webhooks, prices: list[str], at_least: int, duplicate_rate: float) -> dict:
    """The burst again, for 50 other customers, through Stripe's amazon_eventbridge destination (made with
    stripe-python's own v2 client) and the template's rule (moto's pattern matching) to the StripeEventsFunction's
    handler; EventBridge's at-least-once, unordered delivery as the stand-in models it. The webhook endpoint is
    paused meanwhile: EventBridge alone."""
    import stripe as stripe_python
    from moto.events.models import EventPattern
    from portal_gateway.billing.status_projection import HANDLED_EVENTS, project

    from devstack.cfn import load_template
    from devstack.http_api import new_context
    from devstack.stripe_eventbridge import source_name

    stripe.deliverer.paused = True
    client = stripe_python.StripeClient(key, base_addresses={"api": stripe.base_url})
    made = client.v2.core.event_destinations.create({
        "name": "bench", "type": "amazon_eventbridge", "event_payload": "snapshot",
        "enabled_events": sorted(HANDLED_EVENTS),
        "amazon_eventbridge": {"aws_account_id": "123456789012", "aws_region": "eu-west-1"}})
    rule = load_template()["Resources"]["StripeEventsFunction"]["Properties"]["Events"]["StripeEvents"]
    pattern = EventPattern.load(json.dumps(rule["Properties"]["Pattern"]))

    def target(message: dict):
        if pattern.matches_event(message):
            return webhooks.eventbridge_handler(message, new_context())["outcome"]
        return None

    stripe.associate_event_bus(source_name(json.loads(made.last_response.body)), target)
    bus = stripe.eventbridge
    bus.reorder, bus.duplicate_rate = True, duplicate_rate
    customers = [stripe.add_customer(email=f"bus{n}@example.com") for n in range(50)]
    emitted = burst_of_changes(stripe, customers, prices, at_least)
    reads_before = webhooks.reader.calls
    outcomes = bus.deliver()
    applied = outcomes.count("processed")
    stripe.deliverer.resume()  # the webhook endpoint's queued deliveries: each event again, recognised by its id
    assert stripe.deliverer.idle(600), "the webhook deliveries did not drain"
    store = webhooks.events.projections
    return {"emitted": emitted, "deliveries": len(outcomes), "applied": applied, "customers": len(customers),
            "matching": sum(store.get(c).projection == project(*stripe.billing_records(c)) for c in customers),
            "reads_per_event": (webhooks.reader.calls - reads_before) / max(1, applied)}


# Stripe's test-mode rate limit: 25 requests a second per account (docs.stripe.com/rate-limits).
TEST_MODE_RATE_LIMIT = 25


def under_rate_limit(stripe, stack, portal, seconds: float) -> dict:
    """Clicks and status reads at twice Stripe's test-mode rate limit, against a stand-in that enforces it: every
    request gets a clear answer (a click: the portal, or 502 with Retry-After; a status read of a stored user: 200),
    the client does not retry a rate-limited call (no storm), nothing waits past the function's budget."""
    from concurrent.futures import ThreadPoolExecutor

    from devstack.http_api import build_event, new_context

    users = []
    price = stripe.add_product("Burst", lookup_key="burst", features=("burst",))
    for n in range(12):
        stack.add_user(f"limit{n}", "Bench-Password-1", email=f"limit{n}@example.com")
        token = stack.sign_in(f"limit{n}", "Bench-Password-1")["IdToken"]
        first = portal.lambda_handler(build_event("GET", "/portal", headers={
            "authorization": f"Bearer {token}", "accept": "application/json"}), new_context())
        assert first["statusCode"] == 200, first
        if n % 3:  # two in three pay; the others have nothing live (their status looks in Stripe now and then)
            stripe.add_subscription(_customer_of(stripe, n), "active", price_id=price)
        users.append(token)
    assert stripe.deliverer.idle(60)
    for token in users:  # every status stored
        portal.lambda_handler(build_event("GET", "/billing/status", headers={
            "authorization": f"Bearer {token}", "accept": "application/json"}), new_context())
    portal.portal_service().resolver._unmatched.clear()
    stripe.rate_limit = TEST_MODE_RATE_LIMIT
    rate = 2 * TEST_MODE_RATE_LIMIT
    total = int(rate * seconds)
    calls_before, limited_before = len(stripe.requests), stripe.rate_limited
    started = time.perf_counter()

    def one(index: int) -> tuple[str, int, dict, float]:
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        token = users[index % len(users)]
        kind = "click" if index % 4 else "read"  # three clicks (one Stripe call each) to one status read
        path = "/portal" if kind == "click" else "/billing/status"
        sent = time.perf_counter()
        answer = portal.lambda_handler(build_event("GET", path, headers={
            "authorization": f"Bearer {token}", "accept": "text/html" if kind == "click" else "application/json"}),
            new_context())
        return kind, answer["statusCode"], answer.get("headers") or {}, time.perf_counter() - sent

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(total)))
    stripe.rate_limit = None
    clicks = [r for r in results if r[0] == "click"]
    reads = [r for r in results if r[0] == "read"]
    return {
        "rate": rate, "clicks": len(clicks), "reads": len(reads),
        "click_302": sum(1 for r in clicks if r[1] == 302),
        "click_502": sum(1 for r in clicks if r[1] == 502 and r[2].get("Retry-After")),
        "click_other": sum(1 for r in clicks if r[1] not in (302, 502)),
        "reads_200": sum(1 for r in reads if r[1] == 200),
        "stripe_calls": len(stripe.requests) - calls_before, "rate_limited": stripe.rate_limited - limited_before,
        "slowest": max(r[3] for r in results),
    }


# What the scheduled reconciliation is given here: under test mode's 25 a second, as the template's 10 is (this
# benchmark's table is larger than a quarter hour's run at 10).
RECONCILE_RATE = 20


def reconcile_stale_table(stripe, webhooks, count: int) -> dict:
    """`count` customers whose stored status is older than the bound, read again by the scheduled function (its
    real handler, in runs of its 5-minute budget) against a stand-in enforcing Stripe's rate limit."""
    from devstack.http_api import new_context

    store = webhooks.events.projections
    old = (int(time.time()) - 48 * 3600) * 1000
    customers = [stripe.add_customer(email=f"stale{n}@example.com") for n in range(count)]
    for customer in customers:
        store.put(customer, {"subscriptions": [], "entitlements": []}, synced_at_ms=old)
    stripe.rate_limit = TEST_MODE_RATE_LIMIT
    calls_before, limited_before = len(stripe.requests), stripe.rate_limited
    started, runs, read = time.perf_counter(), 0, 0
    while read < count and runs < 10:
        report = webhooks.reconcile_handler({}, new_context(300))
        read += report["stale_read"]
        runs += 1
    seconds = time.perf_counter() - started
    stripe.rate_limit = None
    reads = [r for r in stripe.requests[calls_before:] if r["path"].startswith(("/v1/subscriptions",
                                                                              "/v1/entitlements"))]
    return {"read": read, "runs": runs, "seconds": seconds, "calls_per_customer": len(reads) / max(read, 1),
            "rate_limited": stripe.rate_limited - limited_before}


def _customer_of(stripe, n: int) -> str:
    return next(c["id"] for c in stripe.customers() if c["email"] == f"limit{n}@example.com")


if __name__ == "__main__":
    sys.exit(main())

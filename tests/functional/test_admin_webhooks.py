"""stripe-portal-admin's billing status commands against moto and the Stripe stand-in: `webhooks setup` (create,
update in place, replace an endpoint whose secret is unknown), the webhook checks in `check`, and `backfill`
(every mapped customer, at a bounded rate, never over a newer projection)."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from portal_admin import cli as admin
from portal_admin.webhooks import ProgressBar, RateLimiter, backfill
from portal_gateway.aws.mapping_store import mapping_key
from portal_gateway.aws.projection_store import ProjectionStore, now_ms
from portal_gateway.billing.status_projection import HANDLED_EVENTS, project
from portal_gateway.billing.stripe_client import StripeHttp

from devstack.aws_standin import add_webhook_secret
from devstack.http_api import serve
from devstack.stripe_standin import Fault, fake_key
from tests.functional.test_admin_cli import ids, run

URL = "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/webhooks/stripe"


@pytest.fixture
def webhook_secret(stack, stripe_standin, monkeypatch):
    monkeypatch.setenv("STRIPE_API_BASE", stripe_standin.base_url)
    return add_webhook_secret(stack)


def setup_args(stack, secret_id, url=URL):
    return ["webhooks", "setup", *ids(stack), "--webhook-url", url, "--webhook-secret-id", secret_id]


def stored(stack, secret_id) -> dict:
    return json.loads(stack.moto.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])


def test_setup_creates_the_endpoint_and_stores_its_secret_then_updates_it_in_place(stack, stripe_standin,
                                                                                   webhook_secret):
    code, out, err = run(setup_args(stack, webhook_secret), stack=stack)
    assert code == 0, err
    (endpoint,) = stripe_standin.account.webhook_endpoints.values()
    assert endpoint["url"] == URL and sorted(endpoint["enabled_events"]) == sorted(HANDLED_EVENTS)
    secret = stored(stack, webhook_secret)
    assert secret == {"endpoint_id": endpoint["id"], "signing_secrets": endpoint["_signing_secrets"], "retired": []}
    assert "whsec_" not in out + err  # the signing secret is never printed

    # Someone narrowed its events and disabled it in the Dashboard: setup puts it right, same endpoint and secret.
    endpoint["enabled_events"], endpoint["status"] = ["customer.deleted"], "disabled"
    code, out, _ = run(setup_args(stack, webhook_secret), stack=stack)
    assert code == 0 and "updated" in out
    assert list(stripe_standin.account.webhook_endpoints) == [endpoint["id"]]
    assert endpoint["status"] == "enabled" and sorted(endpoint["enabled_events"]) == sorted(HANDLED_EVENTS)
    assert stored(stack, webhook_secret) == secret


def test_setup_for_a_new_url_retires_the_old_endpoint_and_keeps_its_secret_for_a_while(stack, stripe_standin,
                                                                                      webhook_secret):
    assert run(setup_args(stack, webhook_secret), stack=stack)[0] == 0
    (old,) = stripe_standin.account.webhook_endpoints.values()
    old_secret = old["_signing_secrets"][0]
    code, out, _ = run([*setup_args(stack, webhook_secret, "https://new.example.com/webhooks/stripe"),
                        "--keep-old-hours", "2"], stack=stack)
    assert code == 0 and f"retired webhook endpoint {old['id']}" in out
    (new,) = stripe_standin.account.webhook_endpoints.values()  # the old one no longer delivers (or retries)
    assert new["url"] == "https://new.example.com/webhooks/stripe"
    secret = stored(stack, webhook_secret)
    assert secret["endpoint_id"] == new["id"] and secret["signing_secrets"] == new["_signing_secrets"]
    (retired,) = secret["retired"]
    assert retired["secret"] == old_secret and 7000 < retired["until"] - time.time() <= 7200


def test_an_endpoint_at_the_url_with_an_unknown_secret_is_replaced_not_doubled(stack, stripe_standin, webhook_secret):
    manual = stripe_standin.add_webhook_endpoint(URL, ["*"])  # made in the Dashboard; its secret never stored
    code, out, _ = run(setup_args(stack, webhook_secret), stack=stack)
    assert code == 0 and f"removed webhook endpoint {manual['id']}" in out
    (endpoint,) = stripe_standin.account.webhook_endpoints.values()
    assert endpoint["id"] != manual["id"] and stored(stack, webhook_secret)["endpoint_id"] == endpoint["id"]


def test_a_key_that_may_not_manage_endpoints_is_refused_with_the_fix_and_another_can_be_piped(stack, stripe_standin,
                                                                                              webhook_secret):
    limited = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"customers_write", "portal_write"}))
    stack.put_stripe_key(json.dumps({"api_key": limited}))
    code, _, err = run(setup_args(stack, webhook_secret), stack=stack)
    assert code == admin.EXIT_FAILED and "Stripe refused the key (PermissionError)" in err and "--key-stdin" in err
    assert stripe_standin.account.webhook_endpoints == {}
    writer = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"webhook_endpoints_write"}))
    code, _, err = run([*setup_args(stack, webhook_secret), "--key-stdin"], stack=stack, stdin_text=writer + "\n")
    assert code == 0, err
    assert len(stripe_standin.account.webhook_endpoints) == 1
    assert writer not in err


def test_webhooks_setup_without_a_url_is_a_usage_error(stack, webhook_secret):
    code, _, err = run(["webhooks", "setup", *ids(stack)], stack=stack)
    assert code == admin.EXIT_USAGE and "no webhook URL or secret" in err


@pytest.fixture
def live_webhook(stack, stripe_standin, webhook_secret):
    """A loopback stand-in for the deployed route: answers an unsigned delivery as the function does."""
    def handler(event, context):
        return {"statusCode": 400, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"error": "webhook_signature_invalid", "message": "x"})}

    server = serve(handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    server.shutdown()
    server.server_close()


def webhook_lines(out: str) -> dict[str, str]:
    return {line.split("  ")[1].strip(): line[:4] for line in out.splitlines()
            if line.startswith(("PASS", "FAIL")) and " webhook " in f" {line[6:]}"}


def test_check_follows_the_endpoint_through_setup_and_dashboard_changes(stack, stripe_standin, webhook_secret,
                                                                       live_webhook):
    check = ["check", *ids(stack), "--client-ids", stack.client_id, "--webhook-url", live_webhook,
             "--webhook-secret-id", webhook_secret]
    code, out, _ = run(check, stack=stack)
    assert code == 1 and "webhook endpoint" in out and "not set up" in out and "step 6" in out
    run(setup_args(stack, webhook_secret, live_webhook), stack=stack)
    code, out, _ = run(check, stack=stack)
    assert set(webhook_lines(out).values()) == {"PASS"}, out
    assert len(webhook_lines(out)) == 4
    (endpoint,) = stripe_standin.account.webhook_endpoints.values()
    endpoint["status"] = "disabled"
    endpoint["enabled_events"] = [e for e in endpoint["enabled_events"] if e != "customer.deleted"]
    code, out, _ = run(check, stack=stack)
    lines = webhook_lines(out)
    assert lines["webhook endpoint"] == "FAIL" and lines["webhook events"] == "FAIL" and code == 1
    assert "missing customer.deleted" in out
    stripe_standin.account.webhook_endpoints.clear()
    code, out, _ = run(check, stack=stack)
    assert "no longer exists in Stripe" in out


def test_check_says_when_the_url_does_not_answer_as_the_webhook_function(stack, stripe_standin, webhook_secret):
    run(setup_args(stack, webhook_secret, "http://127.0.0.1:9/webhooks/stripe"), stack=stack)
    code, out, _ = run(["check", *ids(stack), "--client-ids", stack.client_id, "--webhook-url",
                        "http://127.0.0.1:9/webhooks/stripe", "--webhook-secret-id", webhook_secret], stack=stack)
    assert webhook_lines(out)["webhook reachable"] == "FAIL" and "answered nothing" in out


# --- backfill ------------------------------------------------------------------------------------------------------
def map_user(stack, sub: str, customer_id: str) -> None:
    stack.moto.client("dynamodb").put_item(TableName=stack.table_name, Item={
        "pk": {"S": mapping_key("test", stack.user_pool_id, sub)}, "customer_id": {"S": customer_id}})


def test_backfill_fills_every_mapped_customer_and_keeps_a_newer_projection(stack, stripe_standin, webhook_secret):
    price = stripe_standin.add_product("Pro", lookup_key="pro", features=("premium",))
    customers = [stripe_standin.add_customer(email=f"b{n}@example.com") for n in range(5)]
    for n, customer in enumerate(customers):
        if n % 2 == 0:
            stripe_standin.add_subscription(customer, "active", price_id=price)
        map_user(stack, f"00000000-0000-4000-8000-00000000000{n}", customer)
    unmapped = stripe_standin.add_customer(email="nobody@example.com")
    store = ProjectionStore(stack.table_name, stripe_mode="test", client=_boto(stack))
    newer = {"subscriptions": [], "entitlements": ["written-by-a-webhook"]}
    assert store.put(customers[0], newer, synced_at_ms=now_ms() + 60_000)  # a read that started later

    code, out, err = run(["backfill", *ids(stack), "--rate", "100"], stack=stack)
    assert code == 0, err
    assert "5 mapped customers; 4 stored, 1 already newer, 0 failed" in out
    assert "5/5 customers" in err  # progress, on stderr
    for customer in customers[1:]:
        subscriptions, entitlements = stripe_standin.billing_records(customer)
        assert store.get(customer).projection == project(subscriptions, entitlements)
    assert store.get(customers[0]).projection == newer
    assert store.get(unmapped) is None


def test_backfill_waits_out_stripes_rate_limit_and_paces_itself(stack, stripe_standin):
    customers = [stripe_standin.add_customer(email=f"r{n}@example.com") for n in range(3)]
    for n, customer in enumerate(customers):
        map_user(stack, f"00000000-0000-4000-8000-00000000001{n}", customer)
    stripe_standin.inject(Fault(status=429, times=2, method="GET", path_prefix="/v1/subscriptions"))
    now, slept = [0.0], []

    def sleep(seconds):  # a clock that only moves when the backfill waits: every wait is visible
        slept.append(seconds)
        now[0] += seconds

    out = io.StringIO()
    code = backfill(table=stack.table_name, mode="test", user_pool_id=stack.user_pool_id,
                    stripe=StripeHttp(api_base=stripe_standin.base_url, max_network_retries=0).with_key(
                        stripe_standin.key), client=stack.moto.client, out=out, progress=io.StringIO(),
                    rate=4, sleep=sleep, clock=lambda: now[0])
    assert code == 0 and "3 stored" in out.getvalue()
    # 8 requests (2 per customer, 2 of them asked again after a 429): the two 429s waited 1 s then 2 s, and every
    # other request waited its 0.25 s turn at 4 per second.
    assert sorted(slept) == [0.25] * 5 + [1, 2]
    assert now[0] == pytest.approx(4.25)


def test_the_rate_limiter_spaces_requests_evenly():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, sleep=sleep, clock=lambda: now[0])
    for _ in range(11):
        limiter.wait()
    assert now[0] == pytest.approx(1.0) and len(slept) == 10


def test_the_progress_bar_draws_on_a_terminal_and_prints_tenths_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        bar = ProgressBar(20, stream)
        for _ in range(20):
            bar.advance()
        bar.done()
    assert terminal.getvalue().endswith("\r[" + "#" * 30 + "] 20/20\n")
    assert log.getvalue().splitlines() == [f"{n}/20 customers" for n in range(2, 21, 2)]


def test_backfill_refuses_a_rate_over_stripes_limit(stack, webhook_secret):
    code, _, err = run(["backfill", *ids(stack), "--rate", "500"], stack=stack)
    assert code == admin.EXIT_USAGE and "--rate" in err


def _boto(stack):
    from portal_admin.webhooks import BotoJson

    return BotoJson(stack.moto.client("dynamodb"))


def test_check_names_the_status_permissions_a_restricted_key_lacks(stack, stripe_standin, webhook_secret,
                                                                   live_webhook):
    run(setup_args(stack, webhook_secret, live_webhook), stack=stack)
    portal_only = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"customers_write", "portal_write"}))
    stack.put_stripe_key(json.dumps({"api_key": portal_only}))
    check = ["check", *ids(stack), "--client-ids", stack.client_id, "--webhook-url", live_webhook,
             "--webhook-secret-id", webhook_secret]
    code, out, _ = run(check, stack=stack)
    assert code == 1 and "FAIL  permission: Subscriptions read" in out and "FAIL  permission: Entitlements read" in out
    assert "step 2: prepare Stripe" in out
    complete = stripe_standin.add_key(fake_key("rk", "test"), frozenset({
        "customers_write", "portal_write", "subscriptions_read", "entitlements_read", "webhook_endpoints_read"}))
    stack.put_stripe_key(json.dumps({"api_key": complete}))
    code, out, _ = run(check, stack=stack)
    assert "PASS  permission: Subscriptions read" in out and "PASS  permission: Entitlements read" in out


def test_the_stand_in_holds_webhook_endpoints_to_stripes_rules(stripe_standin):
    """Live mode takes https endpoints only; 16 endpoints per mode at most; only event types Stripe knows."""
    from portal_gateway.billing.stripe_client import StripeApiError

    live = StripeHttp(api_base=stripe_standin.base_url, max_network_retries=0).with_key(
        stripe_standin.add_key(fake_key("sk", "live")))
    with pytest.raises(StripeApiError) as refused:
        live("POST", "/v1/webhook_endpoints", {"url": "http://example.com/hook", "enabled_events": ["*"]})
    assert refused.value.param == "url"
    test = StripeHttp(api_base=stripe_standin.base_url, max_network_retries=0).with_key(stripe_standin.key)
    with pytest.raises(StripeApiError) as unknown:
        test("POST", "/v1/webhook_endpoints", {"url": "https://example.com/hook", "enabled_events": ["nope.event"]})
    assert unknown.value.param == "enabled_events"
    for n in range(16):
        test("POST", "/v1/webhook_endpoints", {"url": f"https://example.com/{n}", "enabled_events": ["*"]})
    with pytest.raises(StripeApiError) as full:
        test("POST", "/v1/webhook_endpoints", {"url": "https://example.com/17", "enabled_events": ["*"]})
    assert full.value.http_status == 400
    assert len(live("GET", "/v1/webhook_endpoints")["data"]) == 0  # per mode


def test_webhooks_roll_from_the_command_line_replaces_the_endpoint_and_keeps_the_old_secret_for_a_while(
        stack, stripe_standin, webhook_secret):
    assert run(setup_args(stack, webhook_secret), stack=stack)[0] == 0
    (old,) = stripe_standin.account.webhook_endpoints.values()
    old_secret = old["_signing_secrets"][0]
    code, out, err = run(["webhooks", "roll", *ids(stack), "--webhook-url", URL, "--webhook-secret-id",
                          webhook_secret, "--keep-old-hours", "1"], stack=stack)
    assert code == 0, err
    assert f"replaces {old['id']}" in out and "whsec_" not in out + err
    (new,) = stripe_standin.account.webhook_endpoints.values()
    assert new["id"] != old["id"] and new["url"] == URL
    secret = stored(stack, webhook_secret)
    assert secret["signing_secrets"] == new["_signing_secrets"]
    assert [r["secret"] for r in secret["retired"]] == [old_secret]

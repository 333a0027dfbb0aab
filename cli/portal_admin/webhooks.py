"""Billing status set-up: the Stripe webhook endpoint, its signing secret, and filling the projections.

  webhooks setup  creates (or updates) the endpoint for exactly the events the webhook function handles, and
                  stores its signing secret in the stack's webhook secret; an endpoint this deployment made
                  before, at the same URL, is updated in place (its secret is already stored).
  backfill        reads every mapped customer's subscriptions and entitlements from Stripe, at a bounded rate,
                  and stores their projections (a deploy onto an existing account, or after missed events).
  check           (webhook_checks) the endpoint is enabled, subscribed to the right events, at the stack's
                  URL, and that URL answers as the webhook function does.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

from portal_gateway.aws.client import AwsError
from portal_gateway.aws.projection_store import ProjectionStore
from portal_gateway.billing.status_projection import HANDLED_EVENTS, read_billing_state, refresh
from portal_gateway.billing.stripe_client import KeyedStripe, StripeApiError, path_of
from portal_gateway.checks.stripe_key_check import Check

from portal_admin.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, AdminError, current_secret, scan_items

StripeCall = Callable[..., dict]
WEBHOOK_DESCRIPTION = "stripe-portal-gateway: billing status (stripe-portal-admin webhooks setup)"
# Stripe's documented rate limits are 100 operations per second in live mode and 25 in test mode (sandboxes);
# the backfill stays under the test-mode limit unless told otherwise, leaving room for live traffic.
DEFAULT_BACKFILL_RATE = 20.0


def stored_secret(client: Callable[[str], Any], secret_id: str) -> dict:
    """What the webhook secret holds: {"endpoint_id": "we_...", "signing_secrets": [...]} ({} if unset)."""
    try:
        raw = current_secret(client, secret_id)
    except Exception as exc:  # noqa: BLE001 - a secret with no value yet is the normal first-run state
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
            return {}
        raise
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# After a roll, or a setup for a new URL, the previous signing secret is still accepted this long: deliveries
# already signed with it (Stripe retries a failed one for up to 3 days in live mode) are not refused.
DEFAULT_KEEP_OLD_HOURS = 72.0


def setup(*, url: str, secret_id: str, stripe: StripeCall, client: Callable[[str], Any], out: TextIO,
          keep_old_hours: float = DEFAULT_KEEP_OLD_HOURS, now: Callable[[], float] = time.time) -> int:
    """Create or update the endpoint; store a new endpoint's signing secret. The endpoint this deployment made
    before at another URL is retired (deleted; its secret still accepted for `keep_old_hours`), so events are
    neither retried for ever at the old URL nor delivered twice. An endpoint at the same URL that this deployment
    did not record (its secret unknown) is removed once the new one's secret is stored."""
    stored = stored_secret(client, secret_id)
    events = sorted(HANDLED_EVENTS)
    endpoint_id = stored.get("endpoint_id")
    ours = _endpoint(stripe, endpoint_id) if endpoint_id and _secrets(stored) else None
    if ours is not None and ours.get("url") == url:
        stripe("POST", path_of("v1", "webhook_endpoints", ours["id"]),
               {"enabled_events": events, "disabled": "false", "description": WEBHOOK_DESCRIPTION})
        print(f"updated webhook endpoint {ours['id']}: {len(events)} events, enabled; signing secret unchanged",
              file=out)
        return EXIT_OK
    strays = [e for e in _all_endpoints(stripe) if e.get("url") == url]
    created = _create_endpoint(stripe, url, events)
    _store(client, secret_id, created, stored, keep_old_hours, now())
    print(f"created webhook endpoint {created['id']} for {url}: {len(events)} events; its signing secret is "
          f"stored in the webhook secret", file=out)
    if ours is not None:
        stripe("DELETE", path_of("v1", "webhook_endpoints", ours["id"]))
        print(f"retired webhook endpoint {ours['id']} at {ours.get('url')} (its secret is accepted for "
              f"{keep_old_hours:g} more hours)", file=out)
    for stray in strays:
        stripe("DELETE", path_of("v1", "webhook_endpoints", stray["id"]))
        print(f"removed webhook endpoint {stray['id']} (same URL, signing secret not stored)", file=out)
    return EXIT_OK


def roll(*, secret_id: str, stripe: StripeCall, client: Callable[[str], Any], out: TextIO,
         keep_old_hours: float = DEFAULT_KEEP_OLD_HOURS, now: Callable[[], float] = time.time) -> int:
    """Roll the signing secret without losing an event: a new endpoint (same URL, same events) is made and its
    secret stored first, so both secrets are accepted; only then is the old endpoint deleted. Until that, both
    deliver every event (the function applies each once, by event id). The old secret stays accepted for
    `keep_old_hours`, for deliveries already signed with it; the scheduled catch-up covers any event the old
    endpoint had not delivered yet."""
    stored = stored_secret(client, secret_id)
    endpoint_id = stored.get("endpoint_id")
    ours = _endpoint(stripe, endpoint_id) if endpoint_id else None
    if ours is None or not _secrets(stored):
        raise AdminError("no webhook endpoint of this deployment to roll", "Run webhooks setup first", EXIT_FAILED)
    created = _create_endpoint(stripe, ours["url"], sorted(HANDLED_EVENTS))
    _store(client, secret_id, created, stored, keep_old_hours, now())
    stripe("DELETE", path_of("v1", "webhook_endpoints", ours["id"]))
    print(f"rolled the signing secret: endpoint {created['id']} replaces {ours['id']} at {ours['url']}; the old "
          f"secret is accepted for {keep_old_hours:g} more hours", file=out)
    return EXIT_OK


def _create_endpoint(stripe: StripeCall, url: str, events: list[str]) -> dict:
    created = stripe("POST", "/v1/webhook_endpoints", {"url": url, "enabled_events": events,
                                                       "description": WEBHOOK_DESCRIPTION})
    secret = created.get("secret")
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise AdminError("Stripe did not return the new endpoint's signing secret", "Run webhooks setup again")
    return created


def _secrets(stored: dict) -> list[str]:
    return [s for s in stored.get("signing_secrets") or [] if isinstance(s, str)]


def _store(client: Callable[[str], Any], secret_id: str, created: dict, stored: dict, keep_old_hours: float,
           now: float) -> None:
    """The new endpoint's secret first; the ones it replaces accepted until a time, then no more (the function
    ignores a retired secret past its time; the next setup or roll drops it)."""
    until = int(now + keep_old_hours * 3600)
    retired = [r for r in stored.get("retired") or [] if isinstance(r, dict) and r.get("until", 0) > now]
    retired += [{"secret": old, "until": until} for old in _secrets(stored)]
    client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(
        {"endpoint_id": created["id"], "signing_secrets": [created["secret"]], "retired": retired}))


def _endpoint(stripe: StripeCall, endpoint_id: str) -> dict | None:
    try:
        return stripe("GET", path_of("v1", "webhook_endpoints", endpoint_id))
    except StripeApiError as exc:
        if exc.kind == "InvalidRequestError" and exc.code == "resource_missing":
            return None
        raise


def _all_endpoints(stripe: StripeCall) -> list[dict]:
    return stripe("GET", "/v1/webhook_endpoints", {"limit": 100}).get("data") or []


def webhook_checks(*, url: str | None, secret_id: str | None, stripe: StripeCall | None,
                   client: Callable[[str], Any], probe: Callable[[str], tuple[int, dict]] | None = None) -> list[Check]:
    """The billing status's part of `check`: the endpoint is set up, enabled, subscribed to the right events, at
    the stack's URL, and that URL answers as the function."""
    if not url or not secret_id:
        return []
    if stripe is None:
        return [Check("webhook endpoint", False, "cannot be checked without a usable Stripe key",
                      "Check the Stripe key first")]
    # (The key's permissions for what the status reads are checked with the key itself: check_stripe_key.)
    return _endpoint_checks(url, secret_id, stripe, client, probe or probe_webhook_url)


def _endpoint_checks(url: str, secret_id: str, stripe: StripeCall, client: Callable[[str], Any],
                     probe: Callable[[str], tuple[int, dict]]) -> list[Check]:
    name = "webhook endpoint"
    fix = "stripe-portal-admin webhooks setup --stack <stack> (docs/deploy.md, step 6)"
    stored = stored_secret(client, secret_id)
    if not stored.get("endpoint_id") or not stored.get("signing_secrets"):
        return [Check(name, False, "not set up: the webhook secret holds no endpoint yet", fix)]
    try:
        endpoint = _endpoint(stripe, stored["endpoint_id"])
    except StripeApiError as exc:
        return [Check(name, False, f"Stripe refused to show it ({exc.kind})",
                      "Use a key that may read webhook endpoints")]
    if endpoint is None:
        return [Check(name, False, f"{stored['endpoint_id']} no longer exists in Stripe", fix)]
    checks = [Check(name, endpoint.get("status") == "enabled", f"{endpoint['id']} {endpoint.get('status')}",
                    fix if endpoint.get("status") != "enabled" else "")]
    subscribed = set(endpoint.get("enabled_events") or [])
    missing, extra = set(HANDLED_EVENTS) - subscribed - {"*"}, subscribed - set(HANDLED_EVENTS)
    if "*" in subscribed:
        missing = set()
    exact = not missing and not extra
    checks.append(Check("webhook events", exact, "exactly the handled events" if exact else
                        f"missing {', '.join(sorted(missing)) or 'none'}; "
                        f"not handled {', '.join(sorted(extra)) or 'none'}", fix))
    checks.append(Check("webhook URL", endpoint.get("url") == url,
                        "the stack's WebhookUrl" if endpoint.get("url") == url else "another URL than the stack's",
                        fix))
    status, body = probe(url)
    reachable = status == 400 and body.get("error") == "webhook_signature_invalid"
    checks.append(Check("webhook reachable", reachable,
                        "answers an unsigned delivery with 400 webhook_signature_invalid" if reachable else
                        f"answered {status or 'nothing'} to an unsigned delivery",
                        "" if reachable else "Deploy the stack; check the API's WebhookFunction route"))
    return checks


def probe_webhook_url(url: str) -> tuple[int, dict]:
    """POST an unsigned, empty event, marked as this command's probe: a live webhook function refuses it (400),
    changes nothing, and counts it as a probe, not as a forged delivery (which would raise its alarm)."""
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={  # noqa: S310 - https or loopback
        "Content-Type": "application/json", "X-Portal-Gateway-Probe": "check"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310 - the stack's own URL
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    return status, body if isinstance(body, dict) else {}


class BotoJson:
    """boto3's DynamoDB client behind the layer's `call(action, params)` interface, so the CLI writes
    projections with the very code the functions use."""

    def __init__(self, dynamodb):
        self._dynamodb = dynamodb

    def call(self, operation: str, params: dict) -> dict:
        method = getattr(self._dynamodb, "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_"))
        try:
            return method(**params)
        except Exception as exc:  # noqa: BLE001 - a ClientError: its code, as the layer's client reports it
            response = getattr(exc, "response", {})
            error = response.get("Error", {})
            if not error:
                raise
            raise AwsError(error.get("Code", "Unknown"), response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", 0)) from None


def mapped_customers(client: Callable[[str], Any], table: str, mode: str, user_pool_id: str) -> list[str]:
    """Every customer a user of this pool and mode is mapped to (mapping items only: `<mode>#<pool>#<sub>`)."""
    items = scan_items(client, table, "begins_with(pk, :p) AND attribute_exists(customer_id)",
                       {":p": {"S": f"{mode}#{user_pool_id}#"}}, projection="pk, customer_id")
    found = {item["customer_id"]["S"] for item in items if item["pk"]["S"].count("#") == 2}
    return sorted(found)


def backfill(*, table: str, mode: str, user_pool_id: str, stripe: KeyedStripe, client: Callable[[str], Any],
             out: TextIO, progress: TextIO | None = None, rate: float = DEFAULT_BACKFILL_RATE,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    progress = progress or sys.stderr
    if not 0 < rate <= 100:
        raise AdminError("--rate must be between 0 and 100 Stripe requests per second",
                         "Stripe allows 100 per second in live mode and 25 in test mode", EXIT_USAGE)
    customers = mapped_customers(client, table, mode, user_pool_id)
    store = ProjectionStore(table, stripe_mode=mode, client=BotoJson(client("dynamodb")))
    limiter = RateLimiter(rate, sleep=sleep, clock=clock)
    bar = ProgressBar(len(customers), progress)
    stored = unchanged = failed = 0
    def paced(method: str, path: str, params: dict):
        return _limited(limiter, sleep, stripe.exchange, method, path, params)  # with Stripe's Date: the order

    def read_state(customer_id: str):
        # As the functions do: a key that may not read entitlements lists none.
        return read_billing_state(customer_id, paced, denied=lambda exc: isinstance(exc, StripeApiError)
                                  and exc.kind == "PermissionError")

    for customer_id in customers:
        try:
            if refresh(store, customer_id, read_state)[1]:
                stored += 1
            else:
                unchanged += 1  # a later read (a webhook's) was stored meanwhile
        except StripeApiError as exc:
            failed += 1
            print(f"\n{customer_id}: Stripe refused ({exc.kind}); left as it was", file=progress)
        bar.advance()
    bar.done()
    print(f"backfill: {len(customers)} mapped customers; {stored} stored, {unchanged} already newer, "
          f"{failed} failed", file=out)
    return EXIT_OK if not failed else EXIT_FAILED


def _limited(limiter: RateLimiter, sleep: Callable[[float], None], call: Callable[..., Any], *args: Any,
             attempts: int = 5):
    """One Stripe request under the rate limit; a 429 (rate_limit) waits and asks again, as Stripe advises."""
    for attempt in range(attempts):
        limiter.wait()
        try:
            return call(*args)
        except StripeApiError as exc:
            if exc.http_status != 429 or attempt == attempts - 1:
                raise
            sleep(min(2 ** attempt, 8))
    raise AssertionError("unreachable")


class RateLimiter:
    """At most `rate` requests per second, evenly spaced (no bursts for Stripe's limiter to count)."""

    def __init__(self, rate: float, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate
        self._sleep, self._clock = sleep, clock
        self._next = clock()

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
        self._next = max(now, self._next) + self.interval


class ProgressBar:
    """A bar on a terminal; on anything else (a log, CI) a line every 10%."""

    def __init__(self, total: int, stream: TextIO, width: int = 30):
        self.total, self.stream, self.width, self.count = total, stream, width, 0
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last_tenth = 0

    def advance(self) -> None:
        self.count += 1
        if self.tty:
            filled = self.width * self.count // max(self.total, 1)
            print(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.count}/{self.total}", end="",
                  file=self.stream, flush=True)
            return
        tenth = 10 * self.count // max(self.total, 1)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(f"{self.count}/{self.total} customers", file=self.stream, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=self.stream)

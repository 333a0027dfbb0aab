"""HTTP function: POST /webhooks/stripe. Stripe's events keep the billing status projections current.

Thin by design: check the signature with the official library (stripe.WebhookSignature, against every signing
secret in WEBHOOK_SECRET_ID, so a roll loses nothing), hand the event to the core (billing/webhook_events.py),
answer 2xx once the result is stored. Any failure answers an error and Stripe delivers the event again.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time

import stripe
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from portal_gateway.aws.mapping_store import CustomerMappingStore
from portal_gateway.aws.projection_store import ProjectionStore
from portal_gateway.aws.secrets import SecretsManagerReader
from portal_gateway.aws.user_directory import CognitoUserDirectory
from portal_gateway.billing.status_projection import HANDLED_EVENTS, BillingRead
from portal_gateway.billing.stripe_client import http_date_ms
from portal_gateway.billing.stripe_key import StripeKeyProvider
from portal_gateway.billing.webhook_events import WebhookEvents
from portal_gateway.config import ConfigError, WebhookSettings
from portal_gateway.errors import (
    GatewayError,
    PayloadTooLarge,
    StripeKeyRejected,
    StripeKeyUnavailable,
    StripeUnavailable,
    WebhookNotConfigured,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from portal_gateway.metrics import count_event
from portal_gateway.tracing import TIMINGS
from portal_gateway.web import answers

SERVICE = "stripe-portal-gateway-webhooks"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="StripePortalGateway", service=SERVICE)
copy_config_to_registered_loggers(source_logger=logger, include={"portal_gateway"})
# Stripe's events are small (tens of KB); anything far larger is not one.
MAX_BODY_BYTES = 512 * 1024
# After a signature matches no secret, the secret is read again (a roll may just have happened), at most this
# often: a flood of forged deliveries must not become a flood of Secrets Manager reads.
SECRET_REREAD_SECONDS = 10
SECRET_TTL_SECONDS = 300
LIVE_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid"})

try:
    SETTINGS = WebhookSettings.from_env()
except ConfigError as exc:
    logger.error("Invalid configuration", extra={"problem": str(exc)})
    raise

app = APIGatewayHttpResolver()


class SigningSecrets:
    """The endpoint's signing secrets (whsec_...), from a secret holding {"signing_secrets": [...]} (newest
    first; more than one while a roll is under way) or a bare whsec_ string."""

    def __init__(self, secret_id: str | None, read=None, clock=time.monotonic):
        self._secret_id = secret_id
        self._read = read or SecretsManagerReader(unavailable=WebhookNotConfigured, transient=WebhookNotConfigured,
                                                  label="the webhook signing secret", variable="WEBHOOK_SECRET_ID")
        self._clock = clock
        self._secrets: tuple[str, ...] = ()
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self, *, reread: bool = False) -> tuple[str, ...]:
        if not self._secret_id:  # not deployed so (StripeWebhookEndpoint=disabled); said rather than crashing
            raise WebhookNotConfigured(log_detail="WEBHOOK_SECRET_ID is not set: the webhook endpoint is switched off")
        with self._lock:
            age = self._clock() - self._read_at
            if not self._secrets or age >= SECRET_TTL_SECONDS or (reread and age >= SECRET_REREAD_SECONDS):
                self._secrets = parse_signing_secrets(self._read(self._secret_id))
                self._read_at = self._clock()
            return self._secrets


def parse_signing_secrets(raw: str, now: float | None = None) -> tuple[str, ...]:
    """The secrets a delivery may be signed with: {"signing_secrets": [...], "retired": [{"secret", "until"}]}
    (a retired one is accepted until its time: a roll or a move to a new URL), or a bare whsec_ string."""
    value = raw.strip()
    now = time.time() if now is None else now
    if value.startswith("{"):
        try:
            document = json.loads(value)
            listed = document.get("signing_secrets")
            retired = document.get("retired")
        except (ValueError, AttributeError):
            listed = retired = None
        candidates = listed if isinstance(listed, list) else []
        for entry in retired if isinstance(retired, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("until"), (int, float)) and entry["until"] > now:
                candidates.append(entry.get("secret"))
    else:
        candidates = [value]
    found = tuple(s.strip() for s in candidates if isinstance(s, str) and s.strip().startswith("whsec_"))
    if not found:
        raise WebhookNotConfigured(log_detail="the webhook signing secret holds no whsec_ secret yet "
                                              "(stripe-portal-admin webhooks setup)")
    return found


def verified_event(payload: str, header: str | None, secrets: tuple[str, ...]) -> dict:
    """The event, if the header carries a valid, recent signature by any of the secrets."""
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret,
                                                  tolerance=SETTINGS.signature_tolerance_seconds)
        except stripe.SignatureVerificationError:
            continue
        try:
            return json.loads(payload)
        except ValueError:
            raise WebhookPayloadInvalid(log_detail="signed, but not JSON") from None
    raise WebhookSignatureInvalid(log_detail="no signing secret matches the Stripe-Signature header")


class TimedRequestsClient(stripe.RequestsClient):
    """stripe-python's HTTP client, each call timed for the delivery's log line and trace (portal_gateway.tracing)
    like the layer's own calls to DynamoDB."""

    def request(self, method, url, headers, post_data=None):
        with TIMINGS.timed("Stripe", method.upper(), url) as call:
            content, status, answer_headers = super().request(method, url, headers, post_data)
            call.status = status
        return content, status, answer_headers


class StripeLibraryReader:
    """The customer's state, read with stripe-python (the official library: start-up cost matters little here)."""

    def __init__(self, keys: StripeKeyProvider, api_base: str | None):
        self._keys = keys
        self._api_base = api_base
        # One connection pool for the environment; each call bounded (connect, read) so the three reads of one
        # delivery end inside the function's Timeout. No retries here: Stripe delivers a failed event again.
        self._http = TimedRequestsClient(timeout=(2, 4))
        self._clients: dict[str, stripe.StripeClient] = {}
        self.calls = 0

    def billing_state(self, customer_id: str):
        def read(client: stripe.StripeClient):
            # Every page (the library's auto-paging): the not-canceled subscriptions and the active entitlements.
            subscriptions = client.v1.subscriptions.list({"customer": customer_id, "limit": 100})
            try:
                entitlements = [e.to_dict() for e in client.v1.entitlements.active_entitlements.list(
                    {"customer": customer_id, "limit": 100}).auto_paging_iter()]
            except stripe.PermissionError:
                logger.warning("The Stripe key may not read entitlements; the status lists none")
                entitlements = []
            answered = http_date_ms((subscriptions.last_response.headers or {}).get("Date")
                                    if subscriptions.last_response else None)
            return BillingRead([s.to_dict() for s in subscriptions.auto_paging_iter()], entitlements, answered)

        return self._with_client(read)

    def customer(self, customer_id: str) -> dict:
        return self._with_client(lambda client: client.v1.customers.retrieve(customer_id).to_dict())

    def has_live_subscription(self, customer_id: str) -> bool:
        """Whether the customer pays now (a subscription active, trialing, past due or unpaid)."""
        def read(client: stripe.StripeClient) -> bool:
            listed = client.v1.subscriptions.list({"customer": customer_id, "limit": 100})
            return any(s.status in LIVE_STATUSES for s in listed.auto_paging_iter())

        return self._with_client(read)

    def stamp_owner(self, customer_id: str, metadata: dict) -> None:
        self._with_client(lambda client: client.v1.customers.update(customer_id, {"metadata": metadata}))

    def events_since(self, created_at_or_after: int) -> list[dict]:
        """The handled events Stripe created at or after this Unix time, every page, oldest first."""
        def read(client: stripe.StripeClient) -> list[dict]:
            listed = client.v1.events.list({"created": {"gte": created_at_or_after}, "types": list(HANDLED_EVENTS),
                                            "limit": 100})
            return [e.to_dict() for e in listed.auto_paging_iter()][::-1]  # Stripe lists newest first

        return self._with_client(read)

    def customer_deleted(self, customer_id: str) -> bool:
        def read(client: stripe.StripeClient):
            try:
                return client.v1.customers.retrieve(customer_id).to_dict().get("deleted") is True
            except stripe.InvalidRequestError as exc:
                if exc.code == "resource_missing":
                    return True  # not there at all for this key: nothing of it to keep either
                raise

        return self._with_client(read)

    def _with_client(self, read):
        key = self._keys.current()
        try:
            return self._attempt(read, key)
        except stripe.AuthenticationError:
            fresh = self._keys.refresh(key)  # a rotated key: read the secret again, once
            if fresh is None:
                raise StripeKeyRejected(log_detail="Stripe rejected the API key; rotate it") from None
            try:
                return self._attempt(read, fresh)
            except stripe.AuthenticationError:
                raise StripeKeyRejected(log_detail="Stripe rejected the freshly read API key too") from None

    def _attempt(self, read, key: str):
        client = self._clients.get(key)
        if client is None:
            self._clients = {key: stripe.StripeClient(  # the previous key's client goes: it will not be used again
                key, base_addresses={"api": self._api_base} if self._api_base else None, max_network_retries=0,
                http_client=self._http)}
            client = self._clients[key]
        self.calls += 1
        try:
            return read(client)
        except stripe.AuthenticationError:
            raise
        except stripe.StripeError as exc:
            raise StripeUnavailable(log_detail=f"Stripe call failed: {type(exc).__name__} "
                                               f"http_status={exc.http_status} code={exc.code}") from None


def count(name: str, times: int = 1, **dimensions: str) -> None:
    count_event(metrics, "StripePortalGateway", SERVICE, name, times, **dimensions)


_keys = StripeKeyProvider(SETTINGS.stripe_secret_id, expected_mode=SETTINGS.stripe_mode,
                          ttl_seconds=SETTINGS.stripe_key_ttl_seconds, read_secret=SecretsManagerReader())
reader = StripeLibraryReader(_keys, SETTINGS.stripe_api_base)
signing_secrets = SigningSecrets(SETTINGS.webhook_secret_id)
directory = CognitoUserDirectory(SETTINGS.user_pool_id, SETTINGS.region)
events = WebhookEvents(
    projections=ProjectionStore(SETTINGS.customers_table, stripe_mode=SETTINGS.stripe_mode),
    mappings=CustomerMappingStore(SETTINGS.customers_table, stripe_mode=SETTINGS.stripe_mode),
    stripe=reader, stripe_mode=SETTINGS.stripe_mode, user_pool_id=SETTINGS.user_pool_id, count=count,
    only_user_with_email=directory.only_user_with_verified_email if SETTINGS.match_existing_by_email else None)


# `stripe-portal-admin check` asks whether this URL answers as the function does: an unsigned delivery it marks
# with this header. It is refused like any unsigned one, but not counted as a forged delivery (no alarm).
PROBE_HEADER = "x-portal-gateway-probe"


class ProbeRefused(WebhookSignatureInvalid):
    """The admin command's probe: refused as every unsigned delivery is."""


@app.post("/webhooks/stripe")
def stripe_webhook():
    payload = _body()
    header = app.current_event.headers.get("stripe-signature")
    if not header and app.current_event.headers.get(PROBE_HEADER) == "check":
        raise ProbeRefused(log_detail="stripe-portal-admin check's probe (unsigned, as it should be)")
    try:
        event = verified_event(payload, header, signing_secrets.current())
    except WebhookSignatureInvalid:
        event = verified_event(payload, header, signing_secrets.current(reread=True))
    if isinstance(event, dict) and isinstance(event.get("id"), str):
        # Every line of this delivery names the event (Stripe's Dashboard and `stripe events resend` find it by id).
        logger.append_keys(stripe_event_id=event["id"][:64], stripe_event_type=str(event.get("type"))[:80])
        if isinstance(event.get("created"), int):  # how late the delivery is (the dashboard's webhook lag)
            logger.append_keys(lag_s=max(0, int(time.time()) - event["created"]))
    outcome = events.handle(event)
    count(f"WebhookEvents{outcome.title()}")
    return Response(status_code=200, content_type="application/json", headers=dict(answers.BASE_HEADERS),
                    body=json.dumps({"received": True, "outcome": outcome}))


def _body() -> str:
    event = app.current_event
    raw = event.body or ""
    if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:
        raise PayloadTooLarge()
    if event.is_base64_encoded:
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise WebhookSignatureInvalid(log_detail="body is not valid base64 UTF-8") from None
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    return raw


@app.exception_handler(GatewayError)
def gateway_error(err: GatewayError):
    status = answers.status_for(err.code)
    (logger.error if status >= 500 else logger.warning)(
        "Webhook delivery refused", extra={"error_code": err.code, "status": status, "detail": err.log_detail})
    if isinstance(err, ProbeRefused):
        count("WebhookProbes")
    elif isinstance(err, WebhookSignatureInvalid):
        count("WebhookSignatureFailures")  # alarmed: a wrong secret after a roll, or someone forging events
    elif status >= 500 or isinstance(err, StripeKeyUnavailable):
        count("WebhookProcessingFailed")  # alarmed: Stripe will retry, but the status is stale meanwhile
    return answers.error_for(err.code, err.message, wants_html=False, back_url=None, title=err.title)


@app.exception_handler(Exception)
def unexpected_error(err: Exception):
    logger.exception("Unexpected error handling a webhook")
    count("WebhookProcessingFailed")
    return answers.error_for(GatewayError.code, GatewayError.message, wants_html=False, back_url=None)


@app.not_found
def not_found(_err):
    return answers.error_for("not_found", "There is nothing here.", wants_html=False, back_url=None)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event, context):
    TIMINGS.begin(os.environ.get("_X_AMZN_TRACE_ID"))  # set by Lambda per invocation under active tracing
    started = time.perf_counter()
    result = app.resolve(event, context)
    logger.info("Delivery answered", extra={"status": result.get("statusCode"),
                                            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                                            "dependencies": TIMINGS.summary()})
    return result


# --- Stripe's events through Amazon EventBridge (StripeEventsFunction: this code, another handler) -------------------
# Stripe's event destination of type amazon_eventbridge puts each event on the partner event bus; the rule invokes
# this handler with EventBridge's envelope around the Stripe event (`detail`). No signature: IAM is the check (only
# the rule may invoke the function), and the source names Stripe's partner source. The same core applies it.
STRIPE_PARTNER_SOURCE = "aws.partner/stripe.com/"


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def eventbridge_handler(event, context):
    """Apply one Stripe event from EventBridge. Raises on failure: Lambda retries the asynchronous invocation,
    then the event goes to the dead-letter queue (alarmed), from which nothing is lost."""
    TIMINGS.begin(os.environ.get("_X_AMZN_TRACE_ID"))
    started = time.perf_counter()
    source = event.get("source") if isinstance(event, dict) else None
    if not isinstance(source, str) or not source.startswith(STRIPE_PARTNER_SOURCE):
        count("EventBridgeEventsRefused")
        raise WebhookPayloadInvalid(log_detail="not an event of Stripe's partner event source")
    stripe_event = event.get("detail")
    if isinstance(stripe_event, dict) and isinstance(stripe_event.get("id"), str):
        logger.append_keys(stripe_event_id=stripe_event["id"][:64],
                           stripe_event_type=str(stripe_event.get("type"))[:80])
        if isinstance(stripe_event.get("created"), int):
            logger.append_keys(lag_s=max(0, int(time.time()) - stripe_event["created"]))
    try:
        outcome = events.handle(stripe_event)
    except Exception:
        count("EventBridgeEventsFailed")
        logger.exception("Stripe event from EventBridge not applied; Lambda retries it, then the dead-letter queue")
        raise
    count(f"WebhookEvents{outcome.title()}")
    logger.info("Event applied", extra={"outcome": outcome, "via": "eventbridge",
                                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                                        "dependencies": TIMINGS.summary()})
    return {"outcome": outcome}


# --- the scheduled reconciliation (ReconcileFunction: this code, another handler) ------------------------------------
# What is left of the invocation's time when the reconciliation stops starting reads (one read takes seconds at most).
RECONCILE_RESERVE_SECONDS = 15


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def reconcile_handler(event, context):
    """EventBridge's schedule: apply the events no delivery brought, re-read the statuses older than the bound."""
    from portal_gateway.billing.reconciliation import Pacer, Reconciler

    remaining = getattr(context, "get_remaining_time_in_millis", lambda: 60_000)
    reconciler = Reconciler(events=events, projections=events.projections, list_events=reader.events_since,
                            max_age_seconds=SETTINGS.reconcile_max_age_seconds,
                            pacer=Pacer(SETTINGS.reconcile_rate), count=count)
    TIMINGS.begin(os.environ.get("_X_AMZN_TRACE_ID"))
    report = reconciler.run(lambda: remaining() / 1000 - RECONCILE_RESERVE_SECONDS)
    logger.info("Reconciliation's outbound calls", extra={"dependencies": TIMINGS.summary()})
    return report.__dict__

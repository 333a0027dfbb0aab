"""Stripe adapter: the only module of the portal function that talks to Stripe (through stripe_client).

Every call goes through `_call`, which (1) retries once with a freshly read key when Stripe rejects the key,
so a rotated key is picked up at once, and (2) maps Stripe errors to the service's own errors. Stripe's raw
messages are never passed on to users; only their type, code and request id reach the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portal_gateway.billing.status_projection import BillingRead, ListTooLong, list_all, read_billing_state
from portal_gateway.billing.stripe_client import StripeApiError, StripeHttp, StripeResult, path_of
from portal_gateway.billing.stripe_key import SecretUnreadable, StripeKeyProvider
from portal_gateway.errors import (
    CustomerMissing,
    PortalConfigurationInvalid,
    PortalNotConfigured,
    PriceUnavailable,
    StripeKeyPermissions,
    StripeKeyRejected,
    StripeKeyUnavailable,
    StripeTimeout,
    StripeUnavailable,
)
from portal_gateway.text import has_lone_surrogate, replace_lone_surrogates

logger = logging.getLogger(__name__)
ACTIVE_SUBSCRIPTION_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid"})
# Stripe's limits for customer fields (OpenAPI spec, POST /v1/customers: name maxLength 256, email 512).
CUSTOMER_NAME_MAX = 256
CUSTOMER_EMAIL_MAX = 512


class StripeRequestRefused(StripeUnavailable):
    """Stripe refused the request's parameters (400), as opposed to failing (5xx, timeouts)."""


class StripeSavedFailure(StripeUnavailable):
    """Stripe failed (5xx) on a request with an idempotency key: it saves that answer for 24 h and replays it
    to every request with the same key, so only a new key can succeed."""


@dataclass(frozen=True)
class CreatedCustomer:
    id: str
    replayed: bool  # Stripe answered from the idempotency key's saved result: made earlier, maybe for someone else


def fit_customer_name(name: str | None) -> str | None:
    """The name cut to Stripe's limit. Counted in UTF-16 code units (the strictest way Stripe could count), cut
    between code points, so a character outside the BMP is dropped whole, never split into half a pair. A lone
    surrogate (no character at all) becomes U+FFFD, as a browser shows it."""
    if not name:
        return None
    name = replace_lone_surrogates(name).strip()
    while len(name.encode("utf-16-le")) // 2 > CUSTOMER_NAME_MAX:
        name = name[:-1]
    return name.strip() or None


def fit_customer_email(email: str | None) -> str | None:
    """An address longer than Stripe accepts is not sent at all: a cut address would be someone else's. Nor is
    one with a lone surrogate: no mailbox has that name, and a repaired one would be another address."""
    if not email or len(email) > CUSTOMER_EMAIL_MAX or has_lone_surrogate(email):
        return None
    return email


@dataclass(frozen=True)
class CheckoutSessionCreated:
    url: str
    live_subscriptions: list[str] | None  # the customer's, from the same answer; None: not known from it


@dataclass(frozen=True)
class CustomerRecord:
    id: str
    created: int
    metadata: dict[str, str] = field(default_factory=dict)
    has_active_subscription: bool = False
    email: str | None = None


class StripeBilling:
    def __init__(
        self,
        keys: StripeKeyProvider,
        *,
        api_base: str | None = None,
        timeout_seconds: float = 4.0,
        max_network_retries: int = 1,
        on_key_refresh: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        http: StripeHttp | None = None,
    ):
        self._keys = keys
        self._http = http or StripeHttp(api_base=api_base, timeout_seconds=timeout_seconds,
                                        max_network_retries=max_network_retries)
        self._on_key_refresh = on_key_refresh or (lambda: None)
        self._on_error = on_error or (lambda error_type: None)  # metrics: Stripe errors by type
        self.calls = 0  # outbound Stripe API calls made by this adapter, for benchmarks and tests

    @property
    def api_base(self) -> str:
        return self._http.api_base

    def forget_key(self) -> None:
        self._keys.forget()

    def warm_key(self) -> bool:
        """Read the Stripe key now (at init), failing soft; True if a key is in memory."""
        return self._keys.warm()

    def key_missing(self) -> bool:
        """True when the secret holds no key this service could use (still the placeholder the stack created,
        empty, malformed, another mode) and none is in memory. Secrets Manager being unreachable is not that."""
        try:
            self._keys.current()
        except SecretUnreadable:
            return False
        except StripeKeyUnavailable:
            return True
        return False

    def prefetch_key(self) -> None:
        """Start reading the Stripe key in the background if none is in memory yet (a cold start)."""
        self._keys.prefetch()

    # --- operations -------------------------------------------------------------------------------------
    def customers_with_email(self, email: str) -> list[CustomerRecord]:
        """Customers whose email is exactly `email` (list is consistent; search is not). Their subscriptions
        come along when the key may read them; a restricted key without Subscriptions read still matches."""
        try:
            page = self._call("GET", "/v1/customers",
                              {"email": email, "limit": 20, "expand": ["data.subscriptions"]})
        except StripeKeyPermissions:
            page = self._call("GET", "/v1/customers", {"email": email, "limit": 20})
        records = []
        for customer in page.get("data") or []:
            subscriptions = (customer.get("subscriptions") or {}).get("data") or []
            active = any(s.get("status") in ACTIVE_SUBSCRIPTION_STATUSES for s in subscriptions)
            records.append(CustomerRecord(customer["id"], int(customer["created"]), _plain(customer.get("metadata")),
                                          active, customer.get("email")))
        return records

    def create_customer(self, *, metadata: dict[str, str], idempotency_key: str, email: str | None = None,
                        name: str | None = None) -> CreatedCustomer:
        params: dict[str, Any] = {"metadata": metadata}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        try:
            result = self._exchange("POST", "/v1/customers", params, idempotency_key=idempotency_key)
        except StripeUnavailable as exc:
            if exc.http_status is not None and exc.http_status >= 500:
                raise StripeSavedFailure(log_detail=exc.log_detail, http_status=exc.http_status) from None
            raise
        return CreatedCustomer(result.data["id"], result.replayed)

    def customer_deleted(self, customer_id: str) -> bool:
        """True if Stripe reports the customer deleted; raises CustomerMissing if it does not exist at all for
        this key (another account's customer, or an id that never existed)."""
        return self.customer(customer_id).get("deleted") is True

    def customer(self, customer_id: str) -> dict[str, Any]:
        """The customer as Stripe has it now ({"id", "deleted": true} once deleted)."""
        return self._call("GET", path_of("v1", "customers", customer_id))

    def active_subscriptions(self, customer_id: str) -> list[str]:
        """The customer's live subscriptions, from every page of the list (not one of them may be missed: a
        subscriber is not sold a second subscription)."""
        try:
            listed, _ = list_all(self._exchange, "/v1/subscriptions", {"customer": customer_id})
        except ListTooLong as exc:
            raise StripeUnavailable(log_detail=str(exc)) from None
        return [s["id"] for s in listed if s.get("status") in ACTIVE_SUBSCRIPTION_STATUSES]

    def billing_state(self, customer_id: str) -> BillingRead:
        """The customer's subscriptions and active entitlements as Stripe has them now (status_projection.py)."""
        def denied(exc: Exception) -> bool:
            if isinstance(exc, StripeKeyPermissions):
                logger.warning("The Stripe key may not read entitlements; the status lists none")
                return True
            return False

        try:
            return read_billing_state(customer_id, self._exchange, denied=denied)
        except ListTooLong as exc:
            raise StripeUnavailable(log_detail=str(exc)) from None

    def prices_by_lookup_key(self, lookup_keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The prices named by these lookup keys (Stripe's filter takes up to 10), by lookup key, active or not."""
        page = self._call("GET", "/v1/prices", {"lookup_keys": list(lookup_keys), "limit": 100})
        return {p["lookup_key"]: p for p in page.get("data") or [] if isinstance(p, dict) and p.get("lookup_key")}

    def create_checkout_session(self, *, customer_id: str, price_id: str, success_url: str, cancel_url: str,
                                client_reference_id: str, metadata: dict[str, str], idempotency_key: str,
                                with_live_subscriptions: bool = False) -> CheckoutSessionCreated:
        """A Checkout Session in subscription mode for this customer and one price. With `with_live_subscriptions`
        the answer also says, in the same request (the customer and its subscriptions expanded), which live
        subscriptions the customer has (None when Stripe's first page does not hold them all, or the answer is a
        replay of an earlier one)."""
        params: dict[str, Any] = {
            "mode": "subscription", "customer": customer_id, "client_reference_id": client_reference_id,
            "line_items": [{"price": price_id, "quantity": 1}], "success_url": success_url,
            "cancel_url": cancel_url, "metadata": metadata, "subscription_data": {"metadata": metadata},
        }
        if with_live_subscriptions:
            params["expand"] = ["customer.subscriptions"]
        result = self._exchange("POST", "/v1/checkout/sessions", params, idempotency_key=idempotency_key)
        session = result.data
        live: list[str] | None = None
        customer = session.get("customer")
        # A replayed answer (a second click within the key's window) shows the subscriptions of then: not known.
        if with_live_subscriptions and isinstance(customer, dict) and not result.replayed:
            listed = found if isinstance(found := customer.get("subscriptions"), dict) else {}
            if not listed.get("has_more"):
                live = [s["id"] for s in listed.get("data") or []
                        if isinstance(s, dict) and s.get("status") in ACTIVE_SUBSCRIPTION_STATUSES]
        return CheckoutSessionCreated(session["url"], live)

    def create_customer_session(self, customer_id: str) -> dict[str, Any]:
        """A Customer Session for the pricing table and buy button: its client secret and when it expires."""
        created = self._call("POST", "/v1/customer_sessions", {
            "customer": customer_id,
            "components": {"pricing_table": {"enabled": True}, "buy_button": {"enabled": True}}})
        return {"client_secret": created["client_secret"], "expires_at": created.get("expires_at")}

    def claim_customer(self, customer_id: str, metadata: dict[str, str]) -> None:
        """Stamp an existing customer with its owner, so no other user can ever match it by email."""
        self._call("POST", path_of("v1", "customers", customer_id), {"metadata": metadata})

    def create_portal_session(self, *, customer_id: str, return_url: str, locale: str,
                              configuration: str | None = None, flow_data: dict | None = None) -> str:
        params: dict[str, Any] = {"customer": customer_id, "return_url": return_url, "locale": locale}
        if configuration:
            params["configuration"] = configuration
        if flow_data:
            try:
                return self._call("POST", "/v1/billing_portal/sessions", {**params, "flow_data": flow_data})["url"]
            except StripeRequestRefused as exc:
                # The deep link is refused (its feature is off in the portal configuration, or the subscription
                # cannot take that flow): the portal home is the next best place, not an error page.
                logger.warning("Stripe refused the deep link; opening the portal home",
                               extra={"flow": flow_data.get("type"), "detail": exc.log_detail})
        return self._call("POST", "/v1/billing_portal/sessions", params)["url"]

    # --- plumbing -----------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, params: dict[str, Any] | None = None, *,
              idempotency_key: str | None = None) -> dict[str, Any]:
        return self._exchange(method, path, params, idempotency_key=idempotency_key).data

    def _exchange(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                  idempotency_key: str | None = None) -> StripeResult:
        key = self._keys.current()
        try:
            return self._attempt(method, path, params, key, idempotency_key)
        except StripeApiError:  # only an AuthenticationError leaves _attempt unmapped
            fresh = self._keys.refresh(key)
            self._on_key_refresh()
            if fresh is None:
                logger.error("Stripe rejected the API key and the secret holds no newer key")
                raise StripeKeyRejected(
                    log_detail="Stripe rejected the API key; rotate it in Secrets Manager") from None
            logger.info("Stripe rejected the cached API key; retrying once with the key just read")
            try:
                return self._attempt(method, path, params, fresh, idempotency_key)
            except StripeApiError:
                raise StripeKeyRejected(log_detail="Stripe rejected the freshly read API key too") from None

    def _attempt(self, method: str, path: str, params: dict[str, Any] | None, key: str,
                 idempotency_key: str | None) -> StripeResult:
        self.calls += 1
        try:
            return self._http.exchange(method, path, params, api_key=key, idempotency_key=idempotency_key)
        except StripeApiError as exc:
            self._on_error(exc.kind)
            if exc.kind == "AuthenticationError":
                raise  # handled by _call: re-read the secret once
            raise _mapped(exc) from None


def _mapped(exc: StripeApiError) -> Exception:
    if exc.kind == "PermissionError":
        return StripeKeyPermissions(log_detail=f"the Stripe key lacks a permission: {_describe(exc)}")
    if exc.kind == "InvalidRequestError":
        return _invalid_request(exc)
    if exc.timed_out:
        return StripeTimeout(log_detail=f"Stripe did not answer within the request's time budget: {_describe(exc)}")
    return StripeUnavailable(log_detail=f"Stripe call failed: {_describe(exc)}", http_status=exc.http_status)


def _invalid_request(exc: StripeApiError) -> Exception:
    text = exc.stripe_message
    if "default configuration has not been created" in text or "No configuration provided" in text:
        return PortalNotConfigured(log_detail="no default customer portal configuration in Stripe")
    if exc.param == "configuration":
        # The configured PORTAL_CONFIGURATION_ID is unknown to this key's account, or no longer active: an
        # operator's fix, not an outage to wait out.
        return PortalConfigurationInvalid(log_detail=f"Stripe refused the portal configuration: {_describe(exc)}")
    if exc.param and exc.param.startswith("line_items"):
        # The offered price was archived (or deleted) since it was looked up: the operator's catalog to fix.
        return PriceUnavailable(log_detail=f"Stripe refused the offered price: {_describe(exc)}")
    if exc.code == "resource_missing" and exc.param in ("customer", "id", None):
        return CustomerMissing(log_detail=f"Stripe says the customer is missing: {_describe(exc)}")
    return StripeRequestRefused(log_detail=f"Stripe refused the request: {_describe(exc)}")


def _describe(exc: StripeApiError) -> str:
    # Type, status, code, param and request id only: Stripe's message text may echo input we must not log.
    parts = [exc.kind, f"http_status={exc.http_status}"]
    if exc.replayed:
        parts.append("idempotent_replayed=true")
    if exc.code:
        parts.append(f"code={exc.code}")
    if exc.param:
        parts.append(f"param={exc.param}")
    if exc.request_id:
        parts.append(f"request_id={exc.request_id}")
    return " ".join(parts)


def _plain(metadata: Any) -> dict[str, str]:
    if not isinstance(metadata, dict):
        return {}
    return {str(k): str(v) for k, v in metadata.items()}

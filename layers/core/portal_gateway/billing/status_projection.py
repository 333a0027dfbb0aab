"""What the status route tells a page about its caller's billing, built from Stripe's own objects.

One pure function (`project`) turns a customer's subscriptions and active entitlements, as Stripe returns them,
into the projection the table stores and the status route answers with. The webhook function (stripe-python
objects) and the status route's first read (our client's JSON) both feed it, so the two can never disagree on
the format. Nothing about the customer beyond what a page needs to show a plan or gate content goes in: no
customer id, email, name, address or payment method.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from portal_gateway.aws.projection_store import ProjectionStore, StoredProjection, now_ms

# The events the webhook function handles, and so exactly the ones `stripe-portal-admin webhooks setup`
# subscribes the endpoint to: any change to a customer's subscriptions or entitlements, customer deletion, a
# completed checkout (which binds the purchase to the user it names), and catalog changes a status shows.
HANDLED_EVENTS = (
    "checkout.session.completed",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.updated",
    "entitlements.active_entitlement_summary.updated",
    "price.updated",
    "product.updated",
)
# Catalog events: they name no customer, but change what the statuses of every customer on that price or product
# say (a lookup key moved, features attached to a product).
CATALOG_EVENTS = frozenset({"price.updated", "product.updated"})
# Ended subscriptions are history, not something a page shows or gates on.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
STATUS_VERSION = 1  # bumped if the answer's shape ever changes, so pages and stored projections can tell


# `exchange(method, path, params)`: Stripe's answer with its `Date` (stripe_client.StripeResult).
StripeExchange = Callable[[str, str, dict], Any]

# A list is read to its end, a page of 100 at a time; past this many pages the customer is not a person's.
MAX_LIST_PAGES = 20


class ListTooLong(Exception):
    """A list of one customer ran past MAX_LIST_PAGES pages."""


class BillingRead(NamedTuple):
    """A customer's state as one read of Stripe found it, and when by Stripe's clock (None: Stripe did not say)."""

    subscriptions: list[dict[str, Any]]
    entitlements: list[dict[str, Any]]
    stripe_time_ms: int | None


def list_all(exchange: StripeExchange, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    """Every item of a Stripe list, page after page (`has_more`, `starting_after`): a first page alone can hide
    the one item that matters behind 100 newer ones (abandoned checkouts end as `incomplete_expired`). With the
    time Stripe answered the first page."""
    items: list[dict[str, Any]] = []
    after = None
    first_answered = None
    for page_number in range(MAX_LIST_PAGES):
        result = exchange("GET", path, {**params, "limit": 100, **({"starting_after": after} if after else {})})
        if page_number == 0:
            first_answered = result.date_ms
        page = result.data
        data = [item for item in page.get("data") or [] if isinstance(item, dict)]
        items += data
        if not page.get("has_more") or not data:
            return items, first_answered
        after = data[-1].get("id")
    raise ListTooLong(f"{path} has more than {MAX_LIST_PAGES * 100} items for one customer")


def read_billing_state(customer_id: str, exchange: StripeExchange, *,
                       denied: Callable[[Exception], bool]) -> BillingRead:
    """What a projection is made of, read from Stripe with `exchange(method, path, params)`, every page: the
    subscriptions not canceled (Stripe's default list; `project` drops the other ended ones) and the active
    entitlements. A key `denied` the entitlements (a restricted key without Entitlements read, an account not
    using them) gives none, not an error. Stamped with Stripe's time of its first answer."""
    subscriptions, answered = list_all(exchange, "/v1/subscriptions", {"customer": customer_id})
    try:
        entitlements, _ = list_all(exchange, "/v1/entitlements/active_entitlements", {"customer": customer_id})
    except Exception as exc:
        if not denied(exc):
            raise
        entitlements = []
    return BillingRead(subscriptions, entitlements, answered)


def refresh(store: ProjectionStore, customer_id: str,
            read_state: Callable[[str], BillingRead]) -> tuple[StoredProjection, bool]:
    """Read the customer's state now and store its projection, unless a later read is stored already. What was
    read, and whether it landed. The one way every writer (the status route's first read, the webhook function,
    backfill) stores a projection.

    Reads are ordered by Stripe's clock: the second Stripe answered the read's first request (its `Date`), then,
    within that second, the writer's own clock when the read started. No writer's clock can put a read ahead of
    a later one by more than that second (a laptop 10 minutes fast used to freeze every status it backfilled);
    between Lambda environments, whose clocks agree, the order within the second is kept too."""
    started_ms = now_ms()
    read = read_state(customer_id)
    projection = project(read.subscriptions, read.entitlements)
    stripe_ms = read.stripe_time_ms if read.stripe_time_ms is not None else started_ms // 1000 * 1000
    landed = store.put(customer_id, projection, synced_at_ms=stripe_ms, read_at_ms=started_ms)
    return StoredProjection(projection, stripe_ms), landed


def project(subscriptions: Iterable[dict[str, Any]], entitlements: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The projection of one customer: subscriptions not ended (newest first) and active entitlements' lookup
    keys (sorted). Deterministic for the same Stripe state, so its ETag only changes when the state does."""
    live = [s for s in subscriptions if s.get("status") not in ENDED_STATUSES]
    # Newest first; subscriptions created in the same second (whole seconds) by their first price, then their id:
    # a total order, so the same state gives the same answer whatever order Stripe listed it in.
    live.sort(key=lambda s: (-(_int_or_none(s.get("created")) or 0), _first_price(s), str(s.get("id") or "")))
    projected = [_subscription(s) for s in live]
    for entry in projected:
        del entry["created"]
    keys = sorted({str(e["lookup_key"]) for e in entitlements if isinstance(e, dict) and e.get("lookup_key")})
    return {"subscriptions": projected, "entitlements": keys}


def _subscription(subscription: dict[str, Any]) -> dict[str, Any]:
    items = [item for item in _data(subscription.get("items")) if isinstance(item, dict)]
    # Since API 2025-03-31 the period lives on each item; older versions had it on the subscription.
    ends = [item["current_period_end"] for item in items if isinstance(item.get("current_period_end"), int)]
    period_end = max(ends) if ends else subscription.get("current_period_end")
    return {
        "status": str(subscription.get("status")),
        "items": [_item(item) for item in items],
        "current_period_end": period_end if isinstance(period_end, int) else None,
        "cancel_at_period_end": subscription.get("cancel_at_period_end") is True,
        "cancel_at": _int_or_none(subscription.get("cancel_at")),
        "trial_end": _int_or_none(subscription.get("trial_end")),
        "created": _int_or_none(subscription.get("created")),
    }


def _first_price(subscription: dict[str, Any]) -> str:
    items = [item for item in _data(subscription.get("items")) if isinstance(item, dict)]
    return str(_item(items[0])["price"] or "") if items else ""


def _item(item: dict[str, Any]) -> dict[str, Any]:
    price = found if isinstance(found := item.get("price"), dict) else {}
    product = price.get("product")
    if isinstance(product, dict):  # expanded
        product = product.get("id")
    return {"price": price.get("id"), "product": product, "lookup_key": price.get("lookup_key"),
            "quantity": _int_or_none(item.get("quantity"))}


def _data(listing: Any) -> list:
    if isinstance(listing, dict):
        return listing.get("data") or []
    return []


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def empty_answer() -> dict[str, Any]:
    """A caller with no billing account: nothing to show, nothing to gate on."""
    return answer(None)


def answer(projection: dict[str, Any] | None) -> dict[str, Any]:
    """The status route's JSON for a projection (None: no billing account)."""
    if projection is None:
        return {"version": STATUS_VERSION, "has_billing_account": False, "subscriptions": [], "entitlements": []}
    return {"version": STATUS_VERSION, "has_billing_account": True, "subscriptions": projection["subscriptions"],
            "entitlements": projection["entitlements"]}


def encode(document: dict[str, Any]) -> str:
    """The one JSON form of a projection or answer (stored and sent): sorted keys, no spaces."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def etag(body: str) -> str:
    """A strong ETag of an answer's exact bytes."""
    return '"' + hashlib.sha256(body.encode("utf-8")).hexdigest()[:32] + '"'

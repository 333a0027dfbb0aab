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
from typing import Any

from portal_gateway.aws.projection_store import ProjectionStore, StoredProjection, now_ms

# The events the webhook function handles, and so exactly the ones `stripe-portal-admin webhooks setup`
# subscribes the endpoint to: any change to a customer's subscriptions or entitlements, customer deletion, and a
# completed checkout (which binds the purchase to the user it names).
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
)
# Ended subscriptions are history, not something a page shows or gates on.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
STATUS_VERSION = 1  # bumped if the answer's shape ever changes, so pages and stored projections can tell


StripeCall = Callable[[str, str, dict], dict]


# A list is read to its end, a page of 100 at a time; past this many pages the customer is not a person's.
MAX_LIST_PAGES = 20


class ListTooLong(Exception):
    """A list of one customer ran past MAX_LIST_PAGES pages."""


def list_all(call: StripeCall, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of a Stripe list, page after page (`has_more`, `starting_after`): a first page alone can hide
    the one item that matters behind 100 newer ones (abandoned checkouts end as `incomplete_expired`)."""
    items: list[dict[str, Any]] = []
    after = None
    for _ in range(MAX_LIST_PAGES):
        page = call("GET", path, {**params, "limit": 100, **({"starting_after": after} if after else {})})
        data = [item for item in page.get("data") or [] if isinstance(item, dict)]
        items += data
        if not page.get("has_more") or not data:
            return items
        after = data[-1].get("id")
    raise ListTooLong(f"{path} has more than {MAX_LIST_PAGES * 100} items for one customer")


def read_billing_state(customer_id: str, call: StripeCall, *,
                       denied: Callable[[Exception], bool]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a projection is made of, read from Stripe with `call(method, path, params)`, every page: the
    subscriptions not canceled (Stripe's default list; `project` drops the other ended ones) and the active
    entitlements. A key `denied` the entitlements (a restricted key without Entitlements read, an account not
    using them) gives none, not an error."""
    subscriptions = list_all(call, "/v1/subscriptions", {"customer": customer_id})
    try:
        entitlements = list_all(call, "/v1/entitlements/active_entitlements", {"customer": customer_id})
    except Exception as exc:
        if not denied(exc):
            raise
        entitlements = []
    return subscriptions, entitlements


def refresh(store: ProjectionStore, customer_id: str,
            read_state: Callable[[str], tuple[list, list]]) -> tuple[StoredProjection, bool]:
    """Read the customer's state now and store its projection, stamped with the time the read *started*, unless
    a later read is stored already. What was read, and whether it landed. The one way every writer (the status
    route's first read, the webhook function, backfill) stores a projection."""
    synced_at = now_ms()
    projection = project(*read_state(customer_id))
    return StoredProjection(projection, synced_at), store.put(customer_id, projection, synced_at_ms=synced_at)


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
    price = item.get("price") if isinstance(item.get("price"), dict) else {}
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

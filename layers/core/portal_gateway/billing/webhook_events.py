"""What a verified Stripe event changes: the customer's billing status projection, and on deletion its mapping.

An event is only a hint that something changed. Its payload may be stale (deliveries come in any order, more
than once), so the customer's state is read from Stripe again and that read is stored, guarded by the time it
started (projection_store.py). An event id handled before is answered at once. The Stripe calls are behind a
small interface: the webhook function reads with stripe-python.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Protocol, cast

from portal_gateway.aws.mapping_store import CustomerMappingStore, mapping_key
from portal_gateway.aws.projection_store import ProjectionStore, now_ms
from portal_gateway.billing.customers import OWNER_POOL, OWNER_SUB
from portal_gateway.billing.purchase_reference import user_of
from portal_gateway.billing.status_projection import CATALOG_EVENTS, HANDLED_EVENTS, BillingRead, refresh
from portal_gateway.errors import WebhookPayloadInvalid

logger = logging.getLogger(__name__)
_EVENT_ID = re.compile(r"^evt_[0-9A-Za-z]{1,255}$")
_CUSTOMER_ID = re.compile(r"^cus_[0-9A-Za-z]{1,255}$")
_CATALOG_ID = re.compile(r"^(?:price|prod)_[0-9A-Za-z]{1,255}$")


class BillingReader(Protocol):
    def billing_state(self, customer_id: str) -> BillingRead: ...
    def customer_deleted(self, customer_id: str) -> bool: ...
    def customer(self, customer_id: str) -> dict[str, Any]: ...
    def has_live_subscription(self, customer_id: str) -> bool: ...
    def stamp_owner(self, customer_id: str, metadata: dict[str, str]) -> None: ...


class WebhookEvents:
    def __init__(self, *, projections: ProjectionStore, mappings: CustomerMappingStore, stripe: BillingReader,
                 stripe_mode: str, user_pool_id: str, count: Callable[..., None] = lambda name, **dims: None,
                 only_user_with_email: Callable[[str], str | None] | None = None):
        self.projections = projections
        self.mappings = mappings
        self.stripe = stripe
        self.mode = stripe_mode
        self.user_pool_id = user_pool_id
        self._count = count
        # The sub of the one user of the pool holding an address verified (None: none or several); None when
        # email matching is off.
        self._only_user_with_email = only_user_with_email
        self._reference_key: bytes | None = None

    def handle(self, event: Any) -> str:
        """Apply one verified event; the outcome ("processed", "duplicate", "ignored"). Raises on failure, so
        the delivery is answered with an error and Stripe delivers it again."""
        if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not _EVENT_ID.fullmatch(
                str(event.get("id"))):
            raise WebhookPayloadInvalid(log_detail="not a Stripe event (no evt_ id or type)")
        event_type = event["type"]
        if event_type not in HANDLED_EVENTS:
            return "ignored"  # the endpoint was subscribed to more than we handle: nothing to do
        if bool(event.get("livemode")) != (self.mode == "live"):
            logger.warning("Event from the other Stripe mode ignored", extra={"event_type": event_type})
            return "ignored"
        if self.projections.event_seen(event["id"]):
            return "duplicate"
        obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
        if not isinstance(obj, dict):
            raise WebhookPayloadInvalid(log_detail=f"{event_type} without data.object")
        if event_type in CATALOG_EVENTS:
            catalog_id = obj.get("id")
            if not isinstance(catalog_id, str) or not _CATALOG_ID.fullmatch(catalog_id):
                raise WebhookPayloadInvalid(log_detail=f"{event_type} names no price or product")
            # No customer named: the statuses showing it are read again by the scheduled run, paced (a price may
            # be on thousands of subscriptions; a delivery must answer within seconds).
            self.projections.note_catalog_change(catalog_id)
            self.projections.record_event(event["id"], event_type)
            logger.info("Catalog change noted", extra={"event_type": event_type, "catalog_id": catalog_id})
            return "processed"
        customer_id = obj.get("id") if event_type == "customer.deleted" else obj.get("customer")
        if isinstance(customer_id, dict):
            customer_id = customer_id.get("id")  # expanded
        if event_type == "checkout.session.completed" and customer_id is None:
            return "ignored"  # a one-off payment by a guest: no customer, nothing to show anyone
        if not isinstance(customer_id, str) or not _CUSTOMER_ID.fullmatch(customer_id):
            raise WebhookPayloadInvalid(log_detail=f"{event_type} names no customer")
        if event_type == "customer.deleted" and self.stripe.customer_deleted(customer_id):
            self._deleted(customer_id, obj.get("metadata"))
        else:
            if event_type == "checkout.session.completed":
                self._bind_purchase(customer_id, obj)
            self.refresh(customer_id)
        self.projections.record_event(event["id"], event_type)
        logger.info("Stripe event applied", extra={"event_type": event_type, "customer_id": customer_id})
        return "processed"

    def _bind_purchase(self, customer_id: str, session: dict[str, Any]) -> None:
        """A completed checkout: its customer becomes the buyer's. The buyer is the user its client_reference_id
        names (signed: purchase_reference.py), else the one user of the pool holding the address the buyer gave
        (when email matching is on). Never a customer someone else owns; never moving a user off a customer
        that pays (support can `link`)."""
        sub = user_of(self._signing_key(), self.mode, self.user_pool_id, session.get("client_reference_id"))
        how = "reference"
        if sub is None:
            if session.get("client_reference_id"):
                logger.warning("A checkout's client_reference_id is not one of ours; not binding by it")
                self._count("PurchaseReferenceRefused")
            details = found if isinstance(found := session.get("customer_details"), dict) else {}
            email = details.get("email") or session.get("customer_email")
            if self._only_user_with_email is not None and isinstance(email, str) and email:
                sub, how = self._only_user_with_email(email), "email"
        if sub is None:
            logger.info("A completed checkout names no user of the pool; not bound (support can link it)",
                        extra={"customer_id": customer_id})
            self._count("PurchaseNotBound")
            return
        owner = mapping_key(self.mode, self.user_pool_id, sub)
        metadata = self.stripe.customer(customer_id).get("metadata") or {}
        stamped_sub, stamped_pool = metadata.get(OWNER_SUB), metadata.get(OWNER_POOL)
        if (stamped_sub and stamped_sub != sub) or (stamped_pool and stamped_pool != self.user_pool_id) \
                or not self.mappings.claim_for(owner, customer_id):
            logger.warning("A completed checkout's customer belongs to another user; not bound",
                           extra={"customer_id": customer_id})
            self._count("PurchaseOwnedByAnother")
            return
        current = self.mappings.get(owner)
        if current is None:
            current = self.mappings.put_if_absent(owner, customer_id)
        if current != customer_id:
            if self.stripe.has_live_subscription(current):
                logger.warning("The buyer already pays on another customer; the purchase is not moved onto it "
                               "(support can link)", extra={"customer_id": customer_id, "mapped_customer_id": current})
                self._count("PurchaseKeptApart")
                return
            current = self.mappings.replace(owner, current, customer_id)
        if current == customer_id and stamped_sub != sub:
            self.stripe.stamp_owner(customer_id, {OWNER_SUB: sub, OWNER_POOL: self.user_pool_id})
        logger.info("Purchase bound to its buyer", extra={"customer_id": customer_id, "bound_by": how})
        self._count("PurchaseBound", by=how)

    def _signing_key(self) -> bytes:
        if self._reference_key is None:
            # Told to create (the default), the store makes the key or raises: never None here.
            self._reference_key = cast(bytes, self.mappings.reference_key())
        return self._reference_key

    def refresh(self, customer_id: str) -> bool:
        """Read the customer's state from Stripe now and store it; False if a later read was stored first (counted
        and logged: many of them mean a writer whose reads keep losing)."""
        landed = refresh(self.projections, customer_id, self.stripe.billing_state)[1]
        if not landed:
            logger.info("A later read of this customer was stored first; this one is dropped",
                        extra={"customer_id": customer_id})
            self._count("ProjectionWriteLost")
        return landed

    def _deleted(self, customer_id: str, metadata: Any) -> None:
        """The customer is gone in Stripe: its status says so, and its user's mapping goes, so their next visit
        resolves again (an email match or a new customer) instead of opening a deleted one."""
        self.projections.put(customer_id, None, synced_at_ms=now_ms())
        owner = self.mappings.claim_owner(customer_id)
        if owner is None and isinstance(metadata, dict) and metadata.get(OWNER_POOL) == self.user_pool_id \
                and isinstance(metadata.get(OWNER_SUB), str) and metadata[OWNER_SUB]:
            owner = mapping_key(self.mode, self.user_pool_id, metadata[OWNER_SUB])
        if owner is not None and self.mappings.remove_if(owner, customer_id):
            self._count("MappingsDroppedForDeletedCustomers")
            logger.info("Mapping removed: its Stripe customer was deleted", extra={"customer_id": customer_id})

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
from typing import Any, Protocol

from portal_gateway.aws.mapping_store import CustomerMappingStore, mapping_key
from portal_gateway.aws.projection_store import ProjectionStore, now_ms
from portal_gateway.billing.customers import OWNER_POOL, OWNER_SUB
from portal_gateway.billing.status_projection import HANDLED_EVENTS, refresh
from portal_gateway.errors import WebhookPayloadInvalid

logger = logging.getLogger(__name__)
_EVENT_ID = re.compile(r"^evt_[0-9A-Za-z]{1,255}$")
_CUSTOMER_ID = re.compile(r"^cus_[0-9A-Za-z]{1,255}$")


class BillingReader(Protocol):
    def billing_state(self, customer_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...
    def customer_deleted(self, customer_id: str) -> bool: ...


class WebhookEvents:
    def __init__(self, *, projections: ProjectionStore, mappings: CustomerMappingStore, stripe: BillingReader,
                 stripe_mode: str, user_pool_id: str, count: Callable[..., None] = lambda name, **dims: None):
        self.projections = projections
        self.mappings = mappings
        self.stripe = stripe
        self.mode = stripe_mode
        self.user_pool_id = user_pool_id
        self._count = count

    def handle(self, event: Any) -> str:
        """Apply one verified event; the outcome ("processed", "duplicate", "ignored"). Raises on failure, so
        the delivery is answered with an error and Stripe delivers it again."""
        if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not _EVENT_ID.match(
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
        customer_id = obj.get("id") if event_type == "customer.deleted" else obj.get("customer")
        if isinstance(customer_id, dict):
            customer_id = customer_id.get("id")  # expanded
        if not isinstance(customer_id, str) or not _CUSTOMER_ID.match(customer_id):
            raise WebhookPayloadInvalid(log_detail=f"{event_type} names no customer")
        if event_type == "customer.deleted" and self.stripe.customer_deleted(customer_id):
            self._deleted(customer_id, obj.get("metadata"))
        else:
            self.refresh(customer_id)
        self.projections.record_event(event["id"], event_type)
        logger.info("Stripe event applied", extra={"event_type": event_type, "customer_id": customer_id})
        return "processed"

    def refresh(self, customer_id: str) -> bool:
        """Read the customer's state from Stripe now and store it; False if a later read was stored first."""
        return refresh(self.projections, customer_id, self.stripe.billing_state)[1]

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

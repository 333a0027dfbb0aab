"""Purchases bound to the signed-in user: the operator's price allowlist, Checkout's idempotency, the user's
purchase reference. What the checkout and customer-session routes need besides the customer resolver."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from portal_gateway.billing.purchase_reference import reference_for
from portal_gateway.errors import CheckoutNotOffered, GatewayError, PriceNotOffered, PriceUnavailable

logger = logging.getLogger(__name__)

# Stripe's GET /v1/prices takes at most 10 lookup keys; the allowlist is read in one call.
MAX_OFFERED_PRICES = 10
PRICE_CACHE_SECONDS = 300
# Two Subscribe clicks of one user for one price within this window send Stripe the same idempotency key, so
# they get the same Checkout Session (Stripe replays it), which can be paid once: a double click never buys twice.
CHECKOUT_DEDUP_SECONDS = 60


@dataclass(frozen=True)
class CheckoutOptions:
    price: str | None = None  # the price's lookup key, one of the operator's allowlist
    return_to: str | None = None  # after paying (the return-URL policy applies)
    cancel_to: str | None = None  # after going back without paying (default: return_to)
    locale: str | None = None
    accept_language: str | None = None


class PriceCatalog:
    """The prices the operator offers (CHECKOUT_PRICES: lookup keys), looked up in Stripe once per
    PRICE_CACHE_SECONDS for all of them together. A caller only ever names a lookup key of the allowlist; nothing
    else they send reaches Stripe."""

    def __init__(self, offered: tuple[str, ...], fetch: Callable[[tuple[str, ...]], dict[str, dict[str, Any]]], *,
                 ttl_seconds: float = PRICE_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.offered = offered
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._clock = clock
        self._prices: dict[str, dict[str, Any]] | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def check_offered(self, lookup_key: str | None) -> str:
        """The lookup key, if the operator offers it (no Stripe call); else a 4xx."""
        if not self.offered:
            raise CheckoutNotOffered()
        if lookup_key is None or lookup_key == "":
            if len(self.offered) == 1:
                return self.offered[0]
            raise PriceNotOffered("Choose a plan (price) to subscribe to.")
        if lookup_key not in self.offered:
            raise PriceNotOffered()
        return lookup_key

    def price_id(self, lookup_key: str) -> str:
        """The id of the offered price with this lookup key: active and recurring, else PriceUnavailable (409)."""
        with self._lock:
            if self._prices is None or self._clock() - self._read_at >= self._ttl:
                self._prices = self._fetch(self.offered)
                self._read_at = self._clock()
            price = self._prices.get(lookup_key)
        if price is None or price.get("active") is not True or price.get("type") != "recurring":
            why = "not found" if price is None else ("inactive" if price.get("active") is not True else "not recurring")
            raise PriceUnavailable(log_detail=f"the offered price {lookup_key!r} is {why} in Stripe")
        return str(price["id"])

    def forget(self) -> None:
        """Stripe refused a price we had (archived meanwhile): look them all up again next time."""
        with self._lock:
            self._prices = None

    def clear(self) -> None:
        self.forget()


class PurchaseReferences:
    """Each user's signed purchase reference (purchase_reference.py). The key is read from the table once per
    execution environment, on the first request that needs it."""

    def __init__(self, read_key: Callable[..., bytes | None], mode: str):
        self._read_key = read_key
        self._mode = mode
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def for_user(self, user_pool_id: str, sub: str) -> str:
        with self._lock:
            key = self._key
            if key is None:
                # Told to create, the store makes the key or raises: never None here.
                key = self._key = cast(bytes, self._read_key())
        return reference_for(key, self._mode, user_pool_id, sub)

    def warm(self) -> bool:
        """Read the key now (at init), failing soft and writing nothing; True unless the read failed (a table
        with no key yet is not a failure: the first request that needs one makes it)."""
        try:
            with self._lock:
                if self._key is None:
                    self._key = self._read_key(create=False)
        except GatewayError:
            return False
        return True

    def clear(self) -> None:
        with self._lock:
            self._key = None


def checkout_idempotency_key(*, mode: str, user_pool_id: str, sub: str, customer_id: str, price_id: str,
                             success_url: str, cancel_url: str, now: float) -> str:
    # Derived from everything the session is made of (Stripe refuses a key reused with other parameters), and the
    # time window: a later click after the window gets a new session, a double click the same one.
    window = int(now // CHECKOUT_DEDUP_SECONDS)
    material = (f"stripe-portal-gateway:checkout:v1:{mode}:{user_pool_id}:{sub}:{customer_id}:{price_id}:"
                f"{success_url}:{cancel_url}:{window}")
    return "spg-checkout-" + hashlib.sha256(material.encode()).hexdigest()[:40]

"""Customer resolution: which Stripe customer belongs to this Cognito user. Never the wrong one, never two.

Order: in-memory cache -> DynamoDB mapping -> (optional) verified-email match -> (optional) idempotent
create -> conditional mapping write. Users are keyed on (Stripe mode, pool id, sub), never on email alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Required, TypedDict

from portal_gateway.aws.user_directory import Profile
from portal_gateway.billing.stripe_adapter import (
    CreatedCustomer,
    CustomerRecord,
    StripeSavedFailure,
    fit_customer_email,
    fit_customer_name,
)
from portal_gateway.caching import BoundedCache
from portal_gateway.errors import CustomerMissing, NoBillingAccount, StripeUnavailable
from portal_gateway.identity.tokens import Identity

logger = logging.getLogger(__name__)

OWNER_SUB = "cognito_sub"
OWNER_POOL = "cognito_user_pool"
# A status request of a user with no customer looks in Stripe (by verified email) at most this often per
# execution environment: a purchase made meanwhile (a Payment Link) shows within this time.
NO_MATCH_RECHECK_SECONDS = 10


class MappingStore(Protocol):
    def key_for(self, identity: Identity) -> str: ...
    def endpoint(self) -> str | None: ...
    def reference_key(self, *, create: bool = True) -> bytes | None: ...
    def creation_ticket(self, key: str) -> str: ...
    def renew_creation_ticket(self, key: str, spent: str | None) -> str: ...
    def get(self, key: str) -> str | None: ...
    def put_if_absent(self, key: str, customer_id: str) -> str: ...
    def replace(self, key: str, old_customer_id: str, new_customer_id: str) -> str: ...
    def claim(self, identity: Identity, customer_id: str) -> bool: ...


class Billing(Protocol):
    def customers_with_email(self, email: str) -> list[CustomerRecord]: ...
    def create_customer(self, *, metadata: dict[str, str], idempotency_key: str, email: str | None = None,
                        name: str | None = None) -> CreatedCustomer: ...
    def customer(self, customer_id: str) -> dict[str, Any]: ...
    def claim_customer(self, customer_id: str, metadata: dict[str, str]) -> None: ...


@dataclass(frozen=True)
class Resolution:
    customer_id: str
    source: str  # "cache" | "mapping" | "email_match" | "created"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(email: str) -> str:
    """Lower-case ASCII letters only. str.lower() also folds other characters into ASCII (KELVIN SIGN U+212A
    becomes "k"), which would let a verified "\u212aarl@…" address claim karl@…'s customer."""
    return email.translate(_ASCII_LOWER)


def owner_metadata(identity: Identity) -> dict[str, str]:
    return {OWNER_SUB: identity.sub, OWNER_POOL: identity.user_pool_id}


def owned_by_someone_else(record: CustomerRecord, identity: Identity) -> bool:
    sub = record.metadata.get(OWNER_SUB)
    pool = record.metadata.get(OWNER_POOL)
    if sub and sub != identity.sub:
        return True
    return bool(pool) and pool != identity.user_pool_id


class CustomerFields(TypedDict, total=False):
    metadata: Required[dict[str, str]]
    email: str
    name: str


def customer_fields(identity: Identity, profile: Profile) -> CustomerFields:
    """What a new Stripe customer is created with: the owner stamp, the name cut to Stripe's limit, and the
    email only when it is verified (an unverified address must not get Stripe's receipts) and fits."""
    fields: CustomerFields = {"metadata": owner_metadata(identity)}
    email = fit_customer_email(profile.email) if profile.email_verified else None
    name = fit_customer_name(profile.name)
    if email:
        fields["email"] = email
    if name:
        fields["name"] = name
    return fields


def creation_idempotency_key(identity: Identity, mode: str, replacing: str | None, fields: CustomerFields,
                             ticket: str) -> str:
    # Derived, not random: every concurrent first request for one user shares the user's creation ticket (a
    # conditional write in the table), so they send the same key, and Stripe creates one customer and replays
    # it to the others. The ticket is renewed when the key is spent on an answer we cannot use (Stripe saves
    # a 500 for 24 h, or replays a customer that is now someone else's). The key covers the parameters too:
    # Stripe refuses a key reused with other parameters for 24 h. A replacement (the old customer was
    # deleted) gets its own key.
    parameters = json.dumps(fields, sort_keys=True, ensure_ascii=True)
    material = (f"stripe-portal-gateway:v3:{mode}:{identity.user_pool_id}:{identity.sub}:{replacing or 'first'}:"
                f"{ticket}:{parameters}")
    return "spg-" + hashlib.sha256(material.encode()).hexdigest()[:48]


def pick_customer(records: list[CustomerRecord], identity: Identity) -> CustomerRecord:
    """Deterministic choice among customers with the user's verified email:
    1. one with an active (or trialing, past-due, unpaid) subscription;
    2. then the newest `created` (whole seconds, so customers made in the same second tie);
    3. then one already stamped as this user's (a customer this user was given before);
    4. then the smallest customer id, so every retry and every execution environment picks the same one."""
    def rank(record: CustomerRecord):
        return (not record.has_active_subscription, -record.created, record.metadata.get(OWNER_SUB) != identity.sub,
                record.id)

    return min(records, key=rank)


class CustomerResolver:
    def __init__(self, *, store: MappingStore, billing: Billing, stripe_mode: str, allow_creation: bool,
                 match_by_email: bool, cache: BoundedCache | None = None,
                 count: Callable[[str], None] = lambda name: None,
                 holders_of_email: Callable[[str], set[str]] | None = None,
                 current_profile: Callable[[Identity], Profile] | None = None):
        # The user's profile as Cognito has it now (AdminGetUser), asked only when the token's address turns out
        # not to be theirs alone any more: they may have changed it since the token was issued.
        self.current_profile = current_profile
        # The subs of the users of the pool holding an address verified now (up to 2): an email match is taken
        # only when that is the caller alone. None: not checked (tests of the resolver alone).
        self.holders_of_email = holders_of_email
        self.store = store
        self.billing = billing
        self.mode = stripe_mode
        self.allow_creation = allow_creation
        self.match_by_email = match_by_email
        self.cache = cache or BoundedCache()
        self._unmatched = BoundedCache(ttl_seconds=NO_MATCH_RECHECK_SECONDS)
        self._count = count

    def resolve(self, identity: Identity, load_profile: Callable[[], Profile], *,
                stale_customer_id: str | None = None) -> Resolution:
        key = self.store.key_for(identity)
        if stale_customer_id is None:
            known = self._known(key)
            if known is not None:
                return known
        else:
            self.cache.discard(key)

        profile = load_profile()
        resolution = self._match_by_email(identity, profile, exclude=stale_customer_id)
        if resolution is None:
            resolution = self._create(identity, profile, replacing=stale_customer_id)
        return self._map(identity, key, resolution, stale_customer_id)

    def find(self, identity: Identity, load_profile: Callable[[], Profile]) -> Resolution | None:
        """The user's customer if they have one: mapped, or an existing customer with their verified email
        (claimed and mapped as `resolve` would). Never creates one. A user found to have none is not looked
        up in Stripe again for NO_MATCH_RECHECK_SECONDS, so a page asking on every view costs Stripe little."""
        key = self.store.key_for(identity)
        known = self._known(key)
        if known is not None:
            return known
        if self._unmatched.get(key):
            return None
        resolution = self._match_by_email(identity, load_profile(), exclude=None)
        if resolution is None:
            self._unmatched.put(key, True)
            return None
        return self._map(identity, key, resolution, None)

    def clear(self) -> None:
        """Forget every user's customer and every "none found" (SnapStart hooks)."""
        self.cache.clear()
        self._unmatched.clear()

    def forget(self, identity: Identity) -> None:
        """Drop what this environment remembers of the user's customer (its mapping was removed)."""
        self.cache.discard(self.store.key_for(identity))

    def _known(self, key: str) -> Resolution | None:
        cached = self.cache.get(key)
        if cached:
            return Resolution(cached, "cache")
        mapped = self.store.get(key)
        if mapped:
            self.cache.put(key, mapped)
            self._count("CustomerFoundByMapping")
            return Resolution(mapped, "mapping")
        return None

    def _map(self, identity: Identity, key: str, resolution: Resolution, stale_customer_id: str | None) -> Resolution:
        if stale_customer_id is None:
            winner = self.store.put_if_absent(key, resolution.customer_id)
        else:
            winner = self.store.replace(key, stale_customer_id, resolution.customer_id)
        if winner != resolution.customer_id:
            logger.info("Another request mapped this user first; using its customer",
                        extra={"customer_id": winner})
            resolution = Resolution(winner, "mapping")
        self.cache.put(key, resolution.customer_id)
        return resolution

    def recheck(self, identity: Identity, load_profile: Callable[[], Profile], current: str) -> Resolution | None:
        """The user's customer has no live subscription. A purchase may have been bound to them since (the webhook
        function moved their mapping to the paying customer), or they paid through a Payment Link naming no user
        (a new customer with their address). At most every NO_MATCH_RECHECK_SECONDS per user and environment: the
        mapping is read again, then, failing that, a paying customer with their address is looked for."""
        key = self.store.key_for(identity)
        if self._unmatched.get(f"{key}#paying"):
            return None
        self._unmatched.put(f"{key}#paying", True)
        mapped = self.store.get(key)
        if mapped is not None and mapped != current:
            self.cache.put(key, mapped)
            logger.info("The user's mapping moved to another customer", extra={"customer_id": mapped})
            return Resolution(mapped, "mapping")
        return self.switch_to_paying(identity, load_profile, current)

    def switch_to_paying(self, identity: Identity, load_profile: Callable[[], Profile],
                         current: str) -> Resolution | None:
        """The user is mapped to a customer with no live subscription (say, the one their first "Manage billing"
        click made) while they paid through a Payment Link that named no user, which always makes a new customer.
        If an unowned customer with their verified email has an active subscription, it becomes theirs (claimed,
        the mapping swapped on the condition it still names `current`), by the same rule as a first visit's email
        match: their current address, held by no other user of the pool."""
        key = self.store.key_for(identity)
        if not self.match_by_email:
            return None
        found = self._match_by_email(identity, load_profile(), exclude=current, require_active=True)
        if found is None:
            return None
        self._count("CustomerSwitchedToPaying")
        logger.info("Mapped to the user's paying customer instead of one with no subscription",
                    extra={"customer_id": found.customer_id, "previous_customer_id": current})
        return self._map(identity, key, found, current)

    def _match_by_email(self, identity: Identity, profile: Profile, exclude: str | None, *,
                        require_active: bool = False, current: bool = False) -> Resolution | None:
        if not self.match_by_email or not profile.email:
            return None
        if not profile.email_verified:
            logger.info("Email not verified; not matching existing Stripe customers by email")
            return None
        if fit_customer_email(profile.email) is None:
            # Longer than Stripe stores (and its list filter accepts): no Stripe customer can have it.
            logger.info("Email longer than Stripe accepts; not matching existing Stripe customers by email")
            return None

        # Stripe's list filter is case-sensitive: try the address as given and its lower-case form (ASCII
        # letters only), and keep only customers whose address is the verified one but for ASCII case.
        verified = ascii_lower(profile.email)
        seen: dict[str, CustomerRecord] = {}
        for email in dict.fromkeys([profile.email, verified]):
            for record in self.billing.customers_with_email(email):
                if record.email is not None and ascii_lower(record.email) == verified:
                    seen.setdefault(record.id, record)
        candidates = [r for r in seen.values() if r.id != exclude and not owned_by_someone_else(r, identity)]
        skipped = len(seen) - len(candidates)
        if not candidates:
            if seen:
                logger.info("Customers with this email belong to other users; not matching",
                            extra={"matches": len(seen), "skipped": skipped})
            return None
        chosen = pick_customer(candidates, identity)
        if require_active and not chosen.has_active_subscription:
            return None  # pick_customer prefers a paying one: there is none
        if self.holders_of_email is not None and self.holders_of_email(profile.email) != {identity.sub}:
            if not current and self.current_profile is not None:
                now = self.current_profile(identity)
                if now.email and now.email_verified and now.email != profile.email:
                    logger.info("The token's email is no longer the user's; matching on their current one")
                    return self._match_by_email(identity, now, exclude, require_active=require_active, current=True)
            # Not this user alone: another user holds the address verified too (a pool that does not keep
            # addresses unique, an auto-verifying trigger, a federated provider), and whichever asked first would
            # take the other's purchase; or the caller holds it no more (changed since their token was issued).
            # Asked only when a customer could be matched: a page polling for a user without one costs Cognito
            # nothing.
            logger.warning("The verified email is not this user's alone; not matching by email "
                           "(support can link the customer)")
            self._count("EmailMatchAmbiguous")
            return None
        if not self.store.claim(identity, chosen.id):
            # Another user with the same verified email claimed it first (e.g. at the same instant).
            logger.warning("Matched customer is already claimed by another user; not reusing it",
                           extra={"customer_id": chosen.id})
            return None
        logger.info("Matched an existing Stripe customer by verified email",
                    extra={"matches": len(seen), "eligible": len(candidates), "customer_id": chosen.id})
        if chosen.metadata.get(OWNER_SUB) != identity.sub:
            self.billing.claim_customer(chosen.id, owner_metadata(identity))
        self._count("CustomerMatchedByEmail")
        return Resolution(chosen.id, "email_match")

    def _create(self, identity: Identity, profile: Profile, replacing: str | None) -> Resolution:
        if not self.allow_creation:
            logger.info("No Stripe customer for this user and creation is disabled")
            raise NoBillingAccount()
        fields = customer_fields(identity, profile)
        key = self.store.key_for(identity)
        ticket = self.store.creation_ticket(key)
        for attempt in (1, 2):
            idempotency_key = creation_idempotency_key(identity, self.mode, replacing, fields, ticket)
            try:
                created = self.billing.create_customer(**fields, idempotency_key=idempotency_key)
            except StripeSavedFailure:
                # Stripe keeps this 5xx under the key for 24 h: every retry with it would fail the same way.
                ticket = self.store.renew_creation_ticket(key, ticket)
                self._count("CustomerCreateKeyRenewed")
                if attempt == 2:
                    raise
                logger.warning("Stripe failed creating the customer and saved that answer; trying a new key")
                continue
            if created.replayed and not self._still_ours(created.id, identity):
                ticket = self.store.renew_creation_ticket(key, ticket)
                self._count("CustomerCreateKeyRenewed")
                logger.warning("Stripe replayed a customer that is no longer this user's; creating a new one",
                               extra={"customer_id": created.id})
                if attempt == 2:
                    raise StripeUnavailable(log_detail="a fresh idempotency key replayed another user's customer")
                continue
            if created.replayed:
                logger.info("Stripe replayed the customer created for this user earlier",
                            extra={"customer_id": created.id})
                self._count("CustomerCreateReplayed")
            else:
                logger.info("Created a Stripe customer for this user", extra={"customer_id": created.id})
                self._count("CustomerCreated")
            return Resolution(created.id, "created")
        raise AssertionError("unreachable")

    def _still_ours(self, customer_id: str, identity: Identity) -> bool:
        """A replay repeats what Stripe answered when the key was first used, with the owner stamp of then.
        Whose the customer is now (support may have unlinked it and linked it to someone else since, or it was
        deleted) only Stripe's current copy says."""
        try:
            current = self.billing.customer(customer_id)
        except CustomerMissing:
            return False
        if current.get("deleted") is True:
            return False
        metadata = found if isinstance(found := current.get("metadata"), dict) else {}
        return metadata.get(OWNER_SUB) == identity.sub and metadata.get(OWNER_POOL) == identity.user_pool_id

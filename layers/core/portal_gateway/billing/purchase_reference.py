"""The user a purchase is for, as Stripe carries it back: a Checkout Session's `client_reference_id`.

A Payment Link takes `?client_reference_id=` from its URL, so anyone can write one: a bare user id there would let
a buyer attach their own customer (their card, their email) to another user's account. So the reference is the
user's sub with an HMAC of it (pool and mode bound in), keyed by a random key kept in the customers table: the
portal function hands a signed-in user their reference, the webhook function checks it. Letters, digits, dashes
and underscores only, under 200 characters: what Stripe keeps in a Payment Link URL.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "spg1"
_REFERENCE = re.compile(r"spg1_(?P<sub>[0-9A-Za-z-]{1,128})_(?P<mac>[0-9a-f]{32})")


def _mac(key: bytes, mode: str, user_pool_id: str, sub: str) -> str:
    message = f"client_reference_id:{mode}:{user_pool_id}:{sub}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def reference_for(key: bytes, mode: str, user_pool_id: str, sub: str) -> str:
    return f"{PREFIX}_{sub}_{_mac(key, mode, user_pool_id, sub)}"


def user_of(key: bytes, mode: str, user_pool_id: str, reference: object) -> str | None:
    """The sub a reference names, if it was made with this key for this pool and mode; else None."""
    if not isinstance(reference, str):
        return None
    match = _REFERENCE.fullmatch(reference)  # whole: "$" would let a trailing newline through
    if match is None:
        return None
    sub = match.group("sub")
    if not hmac.compare_digest(match.group("mac"), _mac(key, mode, user_pool_id, sub)):
        return None
    return sub

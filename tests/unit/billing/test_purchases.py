"""The purchase reference (who a Payment Link purchase is for) and the offered-price catalog."""

from __future__ import annotations

import pytest
from portal_gateway.billing.purchase_reference import reference_for, user_of
from portal_gateway.billing.purchases import PriceCatalog, checkout_idempotency_key
from portal_gateway.errors import CheckoutNotOffered, PriceNotOffered, PriceUnavailable

KEY = bytes(range(32))
POOL = "eu-west-1_AbCdEf123"
SUB = "3f2a9c1e-7b4d-4e8a-9c2b-1d5e6f7a8b9c"


def test_a_reference_names_its_user_and_only_with_the_key_pool_and_mode_it_was_made_for():
    reference = reference_for(KEY, "test", POOL, SUB)
    assert user_of(KEY, "test", POOL, reference) == SUB
    assert user_of(bytes(32), "test", POOL, reference) is None  # another stack's key
    assert user_of(KEY, "live", POOL, reference) is None
    assert user_of(KEY, "test", "eu-west-1_Other", reference) is None
    # What Stripe keeps from a Payment Link URL: 1-200 letters, digits, dashes, underscores.
    assert len(reference) <= 200 and all(c.isalnum() or c in "-_" for c in reference)


@pytest.mark.parametrize("forged", [
    SUB, f"spg1_{SUB}", f"spg1_{SUB}_{'0' * 32}", "spg1_other-sub_" + reference_for(KEY, "test", POOL, SUB)[-32:],
    reference_for(KEY, "test", POOL, SUB) + "\n", reference_for(KEY, "test", POOL, SUB).upper(), "", None, 42,
])
def test_a_reference_not_made_with_the_key_names_nobody(forged):
    assert user_of(KEY, "test", POOL, forged) is None


def test_only_offered_prices_are_looked_up_once_for_all_and_cached():
    fetched = []
    prices = {"pro": {"id": "price_1", "active": True, "type": "recurring"},
              "old": {"id": "price_2", "active": False, "type": "recurring"},
              "once": {"id": "price_3", "active": True, "type": "one_time"}}
    now = [0.0]
    catalog = PriceCatalog(("pro", "old", "once", "gone"), lambda keys: fetched.append(keys) or prices,
                           ttl_seconds=300, clock=lambda: now[0])
    with pytest.raises(PriceNotOffered):
        catalog.check_offered("enterprise")
    with pytest.raises(PriceNotOffered):
        catalog.check_offered(None)  # several offered: the caller must say which
    assert fetched == []  # refused without asking Stripe
    assert catalog.price_id("pro") == "price_1"
    for unavailable in ("old", "once", "gone"):
        with pytest.raises(PriceUnavailable):
            catalog.price_id(unavailable)
    assert fetched == [("pro", "old", "once", "gone")]
    now[0] = 301
    catalog.price_id("pro")
    assert len(fetched) == 2
    assert PriceCatalog(("pro",), lambda keys: prices).check_offered(None) == "pro"  # the one offered
    with pytest.raises(CheckoutNotOffered):
        PriceCatalog((), lambda keys: prices).check_offered("pro")


def test_a_double_click_shares_a_checkout_key_and_a_later_click_does_not():
    args = dict(mode="test", user_pool_id=POOL, sub=SUB, customer_id="cus_1", price_id="price_1",
                success_url="https://a.example/", cancel_url="https://a.example/")
    first = checkout_idempotency_key(**args, now=1_000_020.0)
    assert checkout_idempotency_key(**args, now=1_000_021.5) == first
    assert checkout_idempotency_key(**args, now=1_000_080.0) != first
    assert checkout_idempotency_key(**{**args, "price_id": "price_2"}, now=1_000_020.0) != first
    assert checkout_idempotency_key(**{**args, "sub": "other"}, now=1_000_020.0) != first

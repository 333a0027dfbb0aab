"""The demo's embedded pricing table in a real browser (its own `make run` stack): the page asks the API for a
Customer Session of the signed-in user's customer, the table buys for that customer, and the badge follows."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_browser import SHOTS, browser, page, password, site_sign_in  # noqa: F401 - fixtures
from tests.e2e.test_plan_badge import back_with_purchase


def test_the_embedded_pricing_table_buys_for_the_signed_in_users_customer(page, local_stack):  # noqa: F811
    api, site, banner = local_stack
    site_sign_in(page, site, "ada@example.com", password(banner))
    expect(page.locator("#pricing")).to_be_visible()
    page.click(".pricing-table-choose")  # the table got her Customer Session's client secret from the API
    expect(page.locator("body")).to_contain_text("Stripe Checkout for a known customer")
    bought_for = page.inner_text("#customer")
    assert bought_for.startswith("cus_")
    page.click("#pay")
    back_with_purchase(page, site)
    page.click("#plain-link")
    expect(page.locator("#subscriptions .status")).to_have_text(["active"])
    assert page.inner_text("#customer") == bought_for  # "Manage billing" opens the customer the table bought for
    page.screenshot(path=str(SHOTS / "23-pricing-table-purchase.png"))
    assert re.match(r"^cus_", bought_for)

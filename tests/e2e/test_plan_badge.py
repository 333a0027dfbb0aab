"""The demo site's plan badge in a real browser on `make run`'s stack (its own, so no earlier click has given the
user a customer yet): it changes after a Payment Link purchase and after a cancel in the portal, carried only
by the Stripe stand-in's signed webhook deliveries to the webhook function."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_browser import SHOTS, browser, page, password, site_sign_in  # noqa: F401 - fixtures


def test_the_plan_badge_follows_a_purchase_and_a_cancel(page, local_stack):  # noqa: F811
    api, site, banner = local_stack
    site_sign_in(page, site, "ada@example.com", password(banner))
    expect(page.locator("#plan-badge")).to_have_text("No plan")
    expect(page.locator("#premium")).to_be_hidden()
    # She looks at billing first: that makes her a customer, with nothing on it.
    page.click("#plain-link")
    expect(page.locator("#subscriptions")).to_contain_text("No subscriptions yet.")
    empty_customer = page.inner_text("#customer")
    page.click("#return")
    page.wait_for_url(re.compile(re.escape(site)))
    expect(page.locator("#plan-badge")).to_have_text("No plan")

    page.click("#subscribe-link")  # the stand-in's Payment Link checkout
    expect(page.locator("body")).to_contain_text("Payment Link checkout")
    page.fill("#email", "ada@example.com")
    page.click("#pay")
    page.wait_for_url(re.compile(re.escape(site) + r"\?purchased=1$"))
    # The purchase reaches the API only as webhook deliveries; the page looks again until it shows.
    expect(page.locator("#plan-badge")).to_have_text("Pro", timeout=25_000)
    expect(page.locator("#premium")).to_be_visible()
    expect(page.locator("#subscribe")).to_be_hidden()
    page.screenshot(path=str(SHOTS / "20-plan-badge-after-purchase.png"))

    page.click("#plain-link")  # the Hosted UI remembers her; straight to her portal, now the purchase's customer
    expect(page.locator("#subscriptions .status")).to_have_text(["active"])
    assert page.inner_text("#customer") != empty_customer
    page.click("button.cancel")
    expect(page.locator("#subscriptions")).to_contain_text("cancels at the end of the period")
    page.click("#return")
    page.wait_for_url(re.compile(re.escape(site)))
    expect(page.locator("#plan-badge")).to_have_text(re.compile(r"^Pro \(ends \d{2}/\d{2}/\d{4}\)$"),
                                                     timeout=10_000)
    expect(page.locator("#premium")).to_be_visible()  # paid until the period's end
    page.screenshot(path=str(SHOTS / "21-plan-badge-after-cancel.png"))

"""The demo site's purchases in a real browser on `make run`'s stack (its own, so no earlier click has given a user a
customer yet). Every way to buy names the signed-in user: Subscribe (Stripe Checkout for the customer "Manage
billing" opens), the Payment Link carrying the user's signed reference (paid with another address), the embedded
pricing table (a Customer Session). The plan badge follows, carried only by the Stripe stand-in's signed webhook
deliveries to the webhook function."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_browser import SHOTS, browser, page, password, site_sign_in  # noqa: F401 - fixtures


def back_with_purchase(tab, site: str) -> None:
    tab.wait_for_url(re.compile(re.escape(site) + r"\?purchased=1$"))
    # The purchase reaches the API only as webhook deliveries; the page looks again until it shows.
    expect(tab.locator("#plan-badge")).to_have_text("Pro", timeout=25_000)
    expect(tab.locator("#premium")).to_be_visible()
    expect(tab.locator("#subscribe")).to_be_hidden()


def test_subscribe_buys_for_the_customer_manage_billing_opens_and_the_badge_follows(page, local_stack):  # noqa: F811
    api, site, banner = local_stack
    site_sign_in(page, site, "ada@example.com", password(banner))
    expect(page.locator("#plan-badge")).to_have_text("No plan")
    expect(page.locator("#premium")).to_be_hidden()
    # She looks at billing first: that makes her a customer, with nothing on it.
    page.click("#plain-link")
    expect(page.locator("#subscriptions")).to_contain_text("No subscriptions yet.")
    first_customer = page.inner_text("#customer")
    page.click("#return")
    page.wait_for_url(re.compile(re.escape(site)))
    expect(page.locator("#plan-badge")).to_have_text("No plan")

    page.click("#subscribe-link")  # the API, then the stand-in's Checkout for her own customer
    expect(page.locator("body")).to_contain_text("Stripe Checkout for a known customer")
    assert page.inner_text("#customer") == first_customer
    page.click("#pay")
    back_with_purchase(page, site)
    page.screenshot(path=str(SHOTS / "20-plan-badge-after-purchase.png"))

    page.click("#plain-link")  # the Hosted UI remembers her; straight to her portal: the same customer
    expect(page.locator("#subscriptions .status")).to_have_text(["active"])
    assert page.inner_text("#customer") == first_customer
    page.click("button.cancel")
    expect(page.locator("#subscriptions")).to_contain_text("cancels at the end of the period")
    page.click("#return")
    page.wait_for_url(re.compile(re.escape(site)))
    expect(page.locator("#plan-badge")).to_have_text(re.compile(r"^Pro \(ends \d{2}/\d{2}/\d{4}\)$"),
                                                     timeout=10_000)
    expect(page.locator("#premium")).to_be_visible()  # paid until the period's end
    page.screenshot(path=str(SHOTS / "21-plan-badge-after-cancel.png"))


def test_a_payment_link_paid_with_another_address_shows_the_plan(page, local_stack):  # noqa: F811
    api, site, banner = local_stack
    site_sign_in(page, site, "grace@example.com", password(banner))
    expect(page.locator("#plan-badge")).to_have_text("No plan")
    expect(page.locator("#payment-link-offer")).to_be_visible()
    page.click("#payment-link")
    expect(page.locator("body")).to_contain_text("Payment Link checkout")
    page.fill("#email", "grace.hopper@work.example.org")  # not the address she signed in with
    page.click("#pay")
    back_with_purchase(page, site)
    page.click("#plain-link")
    expect(page.locator("body")).to_contain_text("grace.hopper@work.example.org")  # the paying customer is hers
    expect(page.locator("#subscriptions .status")).to_have_text(["active"])
    page.screenshot(path=str(SHOTS / "22-payment-link-another-address.png"))

"""A real browser (Debian's Chromium, headless) on the local stack: the demo site's three integration styles,
two users, and a tampered callback. Screenshots go to test-output/e2e/."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "e2e"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: `make test` installs Debian's chromium package (apt-get install chromium)"
    return path


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


def password(banner: str) -> str:
    return banner.split("password: ")[1].split()[0]


def hosted_ui_sign_in(page: Page, username: str, secret: str) -> None:
    expect(page.locator("body")).to_contain_text("Hosted UI stand-in")
    page.select_option("#username", username)
    page.fill("#password", secret)
    page.click("#sign-in")


def portal_customer(page: Page, shot: str) -> str:
    expect(page.locator("#customer")).to_be_visible()
    expect(page.locator("body")).to_contain_text("Stripe stand-in")
    page.screenshot(path=str(SHOTS / f"{shot}.png"))
    return page.inner_text("#customer")


def site_sign_in(page: Page, site: str, username: str, secret: str, *, remembered: bool = False) -> None:
    page.goto(site)
    page.click("#sign-in")
    if not remembered:  # the Hosted UI remembers a sign-in of this browser, as Cognito's does
        hosted_ui_sign_in(page, username, secret)
    page.wait_for_url(re.compile(re.escape(site) + r"$"))
    expect(page.locator("#who")).to_contain_text(f"Signed in as {username}")


def test_three_integration_styles_and_two_users(page, local_stack):
    api, site, banner = local_stack
    secret = password(banner)

    # 1. Plain link: not signed in on the site; the API sends the browser through the Hosted UI.
    page.goto(site)
    page.screenshot(path=str(SHOTS / "01-site.png"))
    page.click("#plain-link")
    hosted_ui_sign_in(page, "ada@example.com", secret)
    ada = portal_customer(page, "02-plain-link-portal")
    page.click("#return")
    page.wait_for_url(site)

    # 2. Form posting the ID token, after signing in on the site itself (PKCE in the page); the Hosted UI still
    # knows Ada from the plain link, so no form this time.
    site_sign_in(page, site, "ada@example.com", secret, remembered=True)
    page.screenshot(path=str(SHOTS / "03-signed-in.png"))
    page.click("#form-button")
    assert portal_customer(page, "04-form-portal") == ada
    page.click("#return")
    page.wait_for_url(site)

    # 3. fetch() with the Bearer token and JSON.
    page.click("#fetch-button")
    assert portal_customer(page, "05-fetch-portal") == ada
    assert "id_token" not in page.url and "eyJ" not in page.url

    # A second user lands on a different customer.
    page.goto(site)
    page.click("#sign-out")
    site_sign_in(page, site, "grace@example.com", secret)
    page.click("#fetch-button")
    grace = portal_customer(page, "06-second-user-portal")
    assert grace != ada


def test_deep_link_from_plain_link(page, local_stack):
    api, site, banner = local_stack
    page.goto(site)
    page.click("#plain-link-card")
    hosted_ui_sign_in(page, "grace@example.com", password(banner))
    portal_customer(page, "07-deep-link-portal")
    expect(page.locator("#flow")).to_have_text("payment_method_update")
    expect(page.locator("#flow-text")).to_contain_text("updating the payment method")


def test_tampered_callback_shows_error_page(page, local_stack):
    api, site, _ = local_stack
    page.goto(f"{api}/portal/callback?code=forged-code&state={'x' * 43}")
    expect(page.locator("h1")).to_have_text("This link has expired")
    expect(page.locator("body")).to_contain_text("expired or was already used")
    expect(page.locator("a")).to_have_attribute("href", site)
    page.screenshot(path=str(SHOTS / "08-tampered-callback.png"))


def test_cancelled_sign_in_shows_error_page(page, local_stack):
    api, site, _ = local_stack
    page.goto(site)
    page.click("#plain-link")
    page.click("#cancel")
    expect(page.locator("h1")).to_have_text("Sign-in was cancelled")
    page.screenshot(path=str(SHOTS / "09-cancelled-sign-in.png"))


def test_a_return_address_off_the_allowlist_says_so(page, local_stack):
    api, _, _ = local_stack
    page.goto(f"{api}/portal?return_to=https%3A%2F%2Fevil.example%2F")
    expect(page.locator("h1")).to_have_text("This return address is not allowed")
    page.screenshot(path=str(SHOTS / "10-return-address-refused.png"))


def test_demo_site_shows_one_account_button_and_handles_an_unreachable_api(page, local_stack):
    api, site, banner = local_stack
    page.goto(site)
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-out")).to_be_hidden()
    expect(page.locator("#who")).to_contain_text("Not signed in to this site. The plain link works anyway")
    page.click("#sign-in")
    expect(page.locator("#demo-users")).to_contain_text("ada@example.com")
    expect(page.locator("#demo-password")).to_have_text(password(banner))
    page.screenshot(path=str(SHOTS / "11-hosted-ui-demo-users.png"))
    hosted_ui_sign_in(page, "ada@example.com", password(banner))
    page.wait_for_url(re.compile(re.escape(site) + r"$"))
    expect(page.locator("#sign-out")).to_be_visible()
    expect(page.locator("#sign-in")).to_be_hidden()
    page.route(f"{api}/portal", lambda route: route.abort())  # the API is down or unreachable
    page.click("#fetch-button")
    expect(page.locator("#fetch-error")).to_have_text(
        "The billing service could not be reached. Check your connection and try again.")
    page.screenshot(path=str(SHOTS / "12-api-unreachable.png"))


def sign_up(page: Page, email: str, name: str, secret: str, *, verify: bool) -> None:
    page.click("#sign-up")
    page.fill("#new-email", email)
    page.fill("#new-name", name)
    page.fill("#new-password", secret)
    page.click("#create")
    expect(page.locator("#mailbox")).to_contain_text("the code is")
    page.screenshot(path=str(SHOTS / f"13-confirm-{email.split('@')[0]}.png"))
    if verify:
        page.fill("#code", page.inner_text("#emailed-code"))
        page.click("#confirm")
    else:
        page.click("#confirm-unverified")
    # Confirmed: signed in with the password just chosen, and on (as Cognito's managed login does).


def test_payment_link_buyer_signs_up_and_lands_in_the_customer_they_already_are(page, local_stack):
    """The story the service exists for: paid through a Payment Link before having an account (a Stripe
    customer with their email and a subscription exists), signs up, confirms the email with a code, clicks
    Manage billing and lands in that customer's portal. Someone whose email is not verified does not."""
    api, site, banner = local_stack
    assert "buyer@example.com" in banner and "late-buyer@example.com" in banner
    page.goto(site)
    page.click("#plain-link")
    sign_up(page, "buyer@example.com", "Bea Buyer", "Buyer-Password-1", verify=True)
    portal_customer(page, "14-payment-link-buyer-portal")
    expect(page.locator("body")).to_contain_text("buyer@example.com")
    expect(page.locator("#subscriptions .status")).to_have_text(["active"])
    expect(page.locator("#flow-text")).to_contain_text("The portal home")
    paid_customer = page.inner_text("#customer")
    page.click("#return")
    page.wait_for_url(re.compile(re.escape(site)))

    page.context.clear_cookies()
    page.goto(site)
    page.click("#plain-link")
    sign_up(page, "late-buyer@example.com", "Lee Late", "Buyer-Password-2", verify=False)
    other = portal_customer(page, "15-unverified-buyer-portal")
    assert other != paid_customer
    expect(page.locator("#subscriptions")).to_contain_text("No subscriptions yet.")
    expect(page.locator("body")).not_to_contain_text("late-buyer@example.com")  # not matched, email not sent


def test_on_a_shared_computer_the_next_person_is_asked_to_sign_in_after_sign_out(page, local_stack):
    """The Hosted UI keeps its own session: without the API's sign-out the next person at this browser is
    signed in silently as the previous one and lands in that person's billing."""
    api, site, banner = local_stack
    secret = password(banner)
    page.goto(site)
    page.click("#plain-link")
    hosted_ui_sign_in(page, "ada@example.com", secret)
    ada = portal_customer(page, "16-shared-computer-ada")
    page.click("#return")
    page.wait_for_url(site)
    page.click("#plain-link")  # not signed out: the Hosted UI remembers Ada (as Cognito does)
    assert portal_customer(page, "17-shared-computer-remembered") == ada
    page.click("#return")
    page.wait_for_url(site)

    page.click("#billing-sign-out")  # through the API's /portal/signout and the Hosted UI's /logout
    page.wait_for_url(site)
    page.click("#plain-link")
    hosted_ui_sign_in(page, "grace@example.com", secret)  # asked for credentials again
    assert portal_customer(page, "18-shared-computer-grace") != ada


def test_site_sign_out_also_ends_the_hosted_ui_session(page, local_stack):
    api, site, banner = local_stack
    secret = password(banner)
    site_sign_in(page, site, "ada@example.com", secret)
    page.click("#sign-out")
    page.wait_for_url(site)
    expect(page.locator("#sign-in")).to_be_visible()
    page.click("#sign-in")
    expect(page.locator("#password")).to_be_visible()  # the sign-in form, not a silent sign-in as Ada
    page.screenshot(path=str(SHOTS / "19-signed-out-asked-again.png"))


def test_an_expired_sign_in_offers_sign_in_again_instead_of_a_stale_signed_in(page, local_stack):
    api, site, banner = local_stack
    site_sign_in(page, site, "ada@example.com", password(banner))
    # The site's token has expired (or was revoked): the API answers 401 invalid_token.
    page.evaluate("""() => {
        const [h, p, s] = sessionStorage.getItem("id_token").split(".");
        const claims = JSON.parse(atob(p.replace(/-/g, "+").replace(/_/g, "/")));
        claims.exp = 1;
        const body = btoa(JSON.stringify(claims)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
        sessionStorage.setItem("id_token", [h, body, s].join("."));
    }""")
    page.reload()
    page.click("#fetch-button")
    expect(page.locator("#who")).to_have_text("Your sign-in has expired. Sign in again to manage billing here.")
    expect(page.locator("#sign-in")).to_have_text("Sign in again")
    expect(page.locator("#sign-out")).to_be_hidden()
    expect(page.locator("#fetch-error")).to_contain_text("sign")
    page.screenshot(path=str(SHOTS / "20-expired-sign-in.png"))

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


def site_sign_in(page: Page, site: str, username: str, secret: str) -> None:
    page.goto(site)
    page.click("#sign-in")
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

    # 2. Form posting the ID token, after signing in on the site itself (PKCE in the page).
    site_sign_in(page, site, "ada@example.com", secret)
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
    expect(page.locator("#flow")).to_contain_text("payment_method_update")


def test_tampered_callback_shows_error_page(page, local_stack):
    api, site, _ = local_stack
    page.goto(f"{api}/portal/callback?code=forged-code&state={'x' * 43}")
    expect(page.locator("body")).to_contain_text("expired or was already used")
    expect(page.locator("a")).to_have_attribute("href", site)
    page.screenshot(path=str(SHOTS / "08-tampered-callback.png"))


def test_cancelled_sign_in_shows_error_page(page, local_stack):
    api, site, _ = local_stack
    page.goto(site)
    page.click("#plain-link")
    page.click("#cancel")
    expect(page.locator("body")).to_contain_text("Sign-in did not complete")
    page.screenshot(path=str(SHOTS / "09-cancelled-sign-in.png"))

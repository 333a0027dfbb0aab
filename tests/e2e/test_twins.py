"""Two users of one pool holding one verified address (a pool that does not keep emails unique), in a real
browser on `make run`'s stack: a purchase made with that address that names no one goes to neither of them."""

from __future__ import annotations

import re

import boto3
from playwright.sync_api import expect

from tests.e2e.test_browser import SHOTS, browser, password  # noqa: F401 - fixtures

TWIN = "ada-twin"
TWIN_PASSWORD = "Twin-Password-1"


def add_twin(banner: str) -> None:
    """Another user with ada@example.com verified, made in the stack's user pool (moto) as an admin would."""
    endpoint = re.search(r"AWS stand-in \(moto server\):\s+(\S+)", banner).group(1)
    cognito = boto3.client("cognito-idp", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    (pool,) = cognito.list_user_pools(MaxResults=10)["UserPools"]
    cognito.admin_create_user(UserPoolId=pool["Id"], Username=TWIN, MessageAction="SUPPRESS", UserAttributes=[
        {"Name": "email", "Value": "ada@example.com"}, {"Name": "email_verified", "Value": "true"}])
    cognito.admin_set_user_password(UserPoolId=pool["Id"], Username=TWIN, Password=TWIN_PASSWORD, Permanent=True)


def sign_in(browser, site: str, username: str, secret: str):  # noqa: F811
    """A browser of one's own (the Hosted UI remembers a sign-in per browser)."""
    page = browser.new_context().new_page()
    page.goto(site)
    page.click("#sign-in")
    expect(page.locator("body")).to_contain_text("Hosted UI stand-in")
    page.evaluate("""(name) => { if (![...document.querySelectorAll('#username option')].some(o => o.value === name)) {
        const option = document.createElement('option'); option.value = option.textContent = name;
        document.querySelector('#username').append(option); } }""", username)
    page.select_option("#username", username)
    page.fill("#password", secret)
    page.click("#sign-in")
    page.wait_for_url(re.compile(re.escape(site) + r"$"))
    expect(page.locator("#who")).to_contain_text("Signed in as ada@example.com")
    return page


def test_a_purchase_with_an_address_two_users_hold_goes_to_neither(browser, local_stack):  # noqa: F811
    api, site, banner = local_stack
    add_twin(banner)
    ada = sign_in(browser, site, "ada@example.com", password(banner))
    twin = sign_in(browser, site, TWIN, TWIN_PASSWORD)
    for page in (ada, twin):
        expect(page.locator("#plan-badge")).to_have_text("No plan")
    # Someone pays on the bare Payment Link (no reference in its URL) with the address both hold.
    link = twin.evaluate("window.PORTAL_CONFIG.paymentLinkUrl")
    twin.goto(link)
    twin.fill("#email", "ada@example.com")
    twin.click("#pay")
    twin.wait_for_url(re.compile(re.escape(site) + r"\?purchased=1$"))
    twin.wait_for_timeout(3000)  # the webhook deliveries have long arrived: the page asked again meanwhile
    for page in (ada, twin):
        page.reload()
        expect(page.locator("#plan-badge")).to_have_text("No plan")
        expect(page.locator("#premium")).to_be_hidden()
    twin.screenshot(path=str(SHOTS / "24-twins-neither-gets-it.png"))
    # Each still buys for themselves: Ada subscribes, and only Ada has the plan.
    ada.click("#subscribe-link")
    expect(ada.locator("body")).to_contain_text("Stripe Checkout for a known customer")
    ada.click("#pay")
    ada.wait_for_url(re.compile(re.escape(site) + r"\?purchased=1$"))
    expect(ada.locator("#plan-badge")).to_have_text("Pro", timeout=25_000)
    twin.reload()
    expect(twin.locator("#plan-badge")).to_have_text("No plan")

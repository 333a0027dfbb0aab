"""Plain links: authorization code + PKCE through the Hosted UI stand-in, the login cookie, the callback."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from devstack.aws_standin import add_oauth_secret
from devstack.hosted_ui_standin import HostedUiStandin
from tests.functional.conftest import PASSWORD
from tests.support import hosted_ui_client

CALLBACK = "https://api.example.com/portal/callback"


def sign_in(authorize_url: str, username: str, password: str = PASSWORD) -> dict:
    return hosted_ui_client.sign_in(authorize_url, username, password, callback=CALLBACK)


@pytest.fixture
def hosted_ui(stack):
    standin = HostedUiStandin(stack).start()
    standin.register_client(stack.client_id, [CALLBACK])
    yield standin
    standin.close()


@pytest.fixture
def oauth_gateway(gateway, stack, hosted_ui):
    secret_arn = add_oauth_secret(stack)

    def start(**overrides):
        env = {"COGNITO_DOMAIN": hosted_ui.base_url, "CALLBACK_URL": CALLBACK, "OAUTH_SECRET_ID": secret_arn}
        return gateway(**{**env, **overrides})

    return start


def cookie_header(reply) -> str:
    [cookie] = reply.cookies
    return cookie.split(";")[0]


def start_login(gw, query=None):
    reply = gw.call("GET", "/portal", query=query or {}, headers={"accept": "text/html"})
    assert reply.status == 302, reply.body
    return reply


def callback(gw, params: dict, cookie: str | None):
    headers = {"accept": "text/html"}
    if cookie:
        headers["cookie"] = cookie
    return gw.call("GET", "/portal/callback", query=params, headers=headers)


def test_plain_link_signs_in_and_lands_on_own_portal(oauth_gateway, user, hosted_ui, stripe_standin):
    sub, _ = user()
    gw = oauth_gateway()
    start = start_login(gw, {"return_to": "https://shop.example.com/plans", "flow": "payment_method_update",
                             "locale": "fr"})
    authorize = urllib.parse.urlsplit(start.location)
    params = dict(urllib.parse.parse_qsl(authorize.query))
    assert start.location.startswith(hosted_ui.base_url + "/oauth2/authorize?")
    assert params["response_type"] == "code" and params["redirect_uri"] == CALLBACK
    assert params["scope"] == "openid email" and params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32 and len(params["code_challenge"]) == 43
    [cookie] = start.cookies
    assert cookie.startswith("__Host-portal_login=")
    for attribute in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=600"):
        assert attribute in cookie
    assert "Domain" not in cookie
    assert params["state"] not in cookie and "shop.example.com" not in cookie  # encrypted, not just signed

    landed = callback(gw, sign_in(start.location, "ada"), cookie_header(start))
    assert landed.status == 302
    session = stripe_standin.account.sessions[landed.location.rsplit("/", 1)[-1]]
    customer = stripe_standin.account.customers[session["customer"]]
    assert customer["metadata"]["cognito_sub"] == sub
    assert session["return_url"] == "https://shop.example.com/plans" and session["locale"] == "fr"
    assert session["flow"]["type"] == "payment_method_update"
    assert any(c.startswith("__Host-portal_login=;") and "Max-Age=0" in c for c in landed.cookies)


def test_a_plain_subscribe_link_signs_in_and_lands_on_checkout_for_the_users_own_customer(
        oauth_gateway, user, stripe_standin):
    sub, _ = user()
    price = stripe_standin.add_product("Pro", lookup_key="pro_monthly")
    gw = oauth_gateway(CHECKOUT_PRICES="pro_monthly")
    refused = gw.call("GET", "/billing/checkout", query={"price": "enterprise"}, headers={"accept": "text/html"})
    assert refused.status == 400 and refused.cookies == []  # refused before any sign-in
    start = gw.call("GET", "/billing/checkout", query={"price": "pro_monthly",
                                                       "cancel_to": "https://shop.example.com/plans"},
                    headers={"accept": "text/html"})
    assert start.status == 302 and "/oauth2/authorize?" in start.location
    assert "pro_monthly" not in start.location and "pro_monthly" not in start.cookies[0]  # sealed, not readable
    landed = callback(gw, sign_in(start.location, "ada"), cookie_header(start))
    assert landed.status == 303, landed.body
    session = stripe_standin.account.checkout_sessions[landed.location.rsplit("/", 1)[-1]]
    assert session["_lines"] == [{"price": price, "quantity": 1}]
    assert session["cancel_url"] == "https://shop.example.com/plans"
    assert stripe_standin.account.customers[session["customer"]]["metadata"]["cognito_sub"] == sub


def test_two_users_land_on_two_customers(oauth_gateway, user, stripe_standin):
    user("ada", email="ada@example.com")
    user("bob", email="bob@example.com")
    gw = oauth_gateway()
    landed = []
    for name in ("ada", "bob"):
        start = start_login(gw)
        reply = callback(gw, sign_in(start.location, name), cookie_header(start))
        landed.append(stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["customer"])
    assert landed[0] != landed[1]


def test_bad_return_to_is_refused_before_sign_in(oauth_gateway, hosted_ui):
    reply = oauth_gateway().call("GET", "/portal", query={"return_to": "https://evil.example.net/"},
                                 headers={"accept": "text/html"})
    assert reply.status == 400 and "return_url_not_allowed" in reply.body
    assert reply.cookies == []


def test_json_caller_without_token_still_gets_401(oauth_gateway):
    reply = oauth_gateway().portal(None, accept="application/json")
    assert reply.status == 401 and reply.json["error"] == "authentication_required"


@pytest.mark.parametrize("tamper", ["missing_cookie", "other_cookie", "flipped_cookie", "wrong_state",
                                    "cognito_error", "replayed", "bad_code"])
def test_broken_callbacks_show_error_page_and_create_nothing(oauth_gateway, user, stripe_standin, tamper):
    user()
    gw = oauth_gateway()
    start = start_login(gw)
    params = sign_in(start.location, "ada")
    cookie = cookie_header(start)
    if tamper == "missing_cookie":
        cookie = None
    elif tamper == "other_cookie":
        cookie = cookie_header(start_login(gw))  # a second login started in another tab
    elif tamper == "flipped_cookie":
        name, value = cookie.split("=", 1)
        cookie = f"{name}={value[:-3]}{'A' if value[-3] != 'A' else 'B'}{value[-2:]}"
    elif tamper == "wrong_state":
        params["state"] = "x" * 43
    elif tamper == "cognito_error":
        params = {"error": "access_denied", "state": params["state"]}
    elif tamper == "replayed":
        assert callback(gw, params, cookie).status == 302
        stripe_standin.account.customers.clear()
        stripe_standin.account.sessions.clear()
        cookie = None  # the browser dropped it (Max-Age=0); the code was spent anyway
    elif tamper == "bad_code":
        params["code"] = "not-a-real-code"
    reply = callback(gw, params, cookie)
    assert reply.status == 400
    assert reply.headers["Content-Type"].startswith("text/html")
    heading = "Sign-in was cancelled" if tamper == "cognito_error" else (
        "Sign-in did not complete" if tamper == "bad_code" else "This link has expired")
    assert f"<h1>{heading}</h1>" in reply.body and "Traceback" not in reply.body
    assert 'href="https://shop.example.com/account"' in reply.body
    assert stripe_standin.account.sessions == {}
    if tamper != "replayed":
        assert stripe_standin.customers() == []


def test_code_exchange_uses_pkce_and_client_secret(oauth_gateway, user, hosted_ui, stack, stripe_standin):
    user()
    hosted_ui.register_client(stack.client_id, [CALLBACK], client_secret="s3cr3t-client")
    oauth_secret = add_oauth_secret(stack, client_secret="s3cr3t-client")
    gw = oauth_gateway(OAUTH_SECRET_ID=oauth_secret)
    start = start_login(gw)
    assert callback(gw, sign_in(start.location, "ada"), cookie_header(start)).status == 302
    # Without the secret the stand-in refuses the exchange: it really was checked.
    gw_without = oauth_gateway()
    start = start_login(gw_without)
    assert callback(gw_without, sign_in(start.location, "ada"), cookie_header(start)).status == 400


def test_token_endpoint_down_is_503(oauth_gateway, user, hosted_ui):
    user()
    gw = oauth_gateway()
    start = start_login(gw)
    params = sign_in(start.location, "ada")
    hosted_ui.close()
    reply = callback(gw, params, cookie_header(start))
    assert reply.status == 503 and "auth_unavailable" in reply.body


def test_callback_without_hosted_ui_configured_is_404(gateway):
    assert gateway().call("GET", "/portal/callback", query={"code": "x", "state": "y"}).status == 404


def test_redirect_uri_comes_from_config_not_host_header(oauth_gateway):
    reply = oauth_gateway().call("GET", "/portal", headers={"accept": "text/html", "host": "evil.example.net",
                                                           "x-forwarded-host": "evil.example.net"})
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(reply.location).query))
    assert params["redirect_uri"] == CALLBACK


def test_login_cookie_key_must_be_in_secrets_manager(oauth_gateway, stack):
    weak = stack.moto.client("secretsmanager").create_secret(Name="portal/oauth-weak",
                                                             SecretString='{"cookie_key": "short"}')["ARN"]
    reply = oauth_gateway(OAUTH_SECRET_ID=weak).call("GET", "/portal", headers={"accept": "text/html"})
    assert reply.status == 503 and "login_unavailable" in reply.body
    assert re.search(r"cookie_key", reply.body) is None


def test_without_callback_url_the_callback_is_the_apis_own_address(oauth_gateway, user, hosted_ui,
                                                                  stripe_standin):
    """The README's first deploy leaves CallbackUrl empty: the function must start, and sign-in must use the
    domain API Gateway was called on (requestContext.domainName) + /portal/callback, at both ends."""
    sub, _ = user()
    gw = oauth_gateway(CALLBACK_URL="")
    host = urllib.parse.urlsplit(CALLBACK).hostname
    start = gw.call("GET", "/portal", headers={"accept": "text/html", "host": host})
    assert start.status == 302
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.location).query))
    assert params["redirect_uri"] == CALLBACK
    code = sign_in(start.location, "ada")
    landed = gw.call("GET", "/portal/callback", query=code,
                     headers={"accept": "text/html", "cookie": cookie_header(start), "host": host})
    assert landed.status == 302, landed.body
    session = stripe_standin.account.sessions[landed.location.rsplit("/", 1)[-1]]
    assert stripe_standin.account.customers[session["customer"]]["metadata"]["cognito_sub"] == sub


def test_a_derived_callback_on_an_unregistered_domain_is_refused_by_the_hosted_ui(oauth_gateway, user, hosted_ui):
    user()
    gw = oauth_gateway(CALLBACK_URL="")
    start = gw.call("GET", "/portal", headers={"accept": "text/html", "host": "other.example.org"})
    assert start.status == 302
    assert "redirect_uri=https%3A%2F%2Fother.example.org%2Fportal%2Fcallback" in start.location
    status, location, _, _ = hosted_ui_client.fetch(start.location)
    assert status == 400 and location == ""  # Cognito (and its stand-in) send no code to an unregistered callback


# --- sign-out: the Hosted UI's own session ends too --------------------------------------------------------------
def test_sign_out_clears_the_cookie_and_goes_through_the_hosted_ui_logout(oauth_gateway, stack):
    reply = oauth_gateway().call("GET", "/portal/signout", query={"return_to": "https://shop.example.com/bye"},
                                 headers={"accept": "text/html"})
    assert reply.status == 302
    logout = urllib.parse.urlsplit(reply.location)
    assert reply.location.startswith(logout.scheme + "://" + logout.netloc + "/logout?")
    assert dict(urllib.parse.parse_qsl(logout.query)) == {"client_id": stack.client_id,
                                                          "logout_uri": "https://shop.example.com/bye"}
    assert any(c.startswith("__Host-portal_login=;") and "Max-Age=0" in c for c in reply.cookies)


def test_sign_out_refuses_a_return_address_off_the_allowlist(oauth_gateway):
    reply = oauth_gateway().call("GET", "/portal/signout", query={"return_to": "https://evil.example.net/"},
                                 headers={"accept": "application/json"})
    assert reply.status == 400 and reply.json["error"] == "return_url_not_allowed"


def test_sign_out_without_plain_link_sign_in_goes_back_to_the_site(gateway):
    reply = gateway().call("GET", "/portal/signout", headers={"accept": "text/html"})
    assert reply.status == 302 and reply.location == "https://shop.example.com/account"


def test_always_ask_to_sign_in_sends_prompt_login(oauth_gateway):
    start = start_login(oauth_gateway(ALWAYS_ASK_TO_SIGN_IN="true"))
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.location).query))["prompt"] == "login"
    default = start_login(oauth_gateway(ALWAYS_ASK_TO_SIGN_IN="false"))  # the template's default
    assert "prompt" not in dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(default.location).query))


def test_a_slow_token_endpoint_ends_in_our_page_within_the_function_timeout(oauth_gateway, user, hosted_ui):
    import time

    user()
    gw = oauth_gateway()
    start = start_login(gw)
    code = sign_in(start.location, "ada")
    hosted_ui.token_delay = 4.0  # Cognito answering slowly
    gw.timeout_seconds = 2.5
    started = time.monotonic()
    landed = callback(gw, code, cookie_header(start))
    elapsed = time.monotonic() - started
    hosted_ui.token_delay = 0.0
    assert landed.status == 503 and "Sign-in cannot be checked right now" in landed.body
    assert elapsed < 2.4, elapsed  # the invocation's budget, not a 5 s socket timeout past the function's


@pytest.mark.parametrize("weak", ["short1A", "alllowercase"])
def test_a_refused_sign_up_says_why_and_keeps_what_was_typed(hosted_ui, weak):
    import urllib.error
    import urllib.request

    form = urllib.parse.urlencode({"email": "new.user@example.com", "name": "New User", "password": weak}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{hosted_ui.base_url}/signup", data=form), timeout=10)
    page = refused.value.read().decode()
    assert refused.value.code == 400 and "password" in page.lower() and "at least 8 characters" in page
    assert 'value="new.user@example.com"' in page and 'value="New User"' in page  # not emptied
    assert weak not in page  # the password is never sent back

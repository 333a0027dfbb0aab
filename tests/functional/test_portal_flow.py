"""End to end through lambda_handler: moto for AWS, the Stripe stand-in over HTTP, real moto-signed tokens."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.functional.conftest import RETURN_URL


def customer_of(stripe_standin, sub):
    return [c for c in stripe_standin.customers() if c["metadata"].get("cognito_sub") == sub]


def session_customer(stripe_standin, url):
    session_id = url.rsplit("/", 1)[-1]
    return stripe_standin.account.sessions[session_id]["customer"]


def test_health_touches_no_stripe_and_reads_the_secret_once_per_ttl(gateway, stripe_standin, moto_server):
    gw = gateway()
    for _ in range(3):
        reply = gw.call("GET", "/health")
        assert reply.status == 200 and reply.json == {"status": "ok"}
    assert stripe_standin.requests == []
    assert gw.module.portal_service().billing._keys.reads == 1


@pytest.mark.parametrize("value", ['{"api_key":"REPLACE_WITH_STRIPE_KEY"}', ""])
def test_health_of_a_stack_whose_key_is_not_in_yet_says_which_step_is_missing(gateway, stack, value):
    """A first deploy creates the secret with a placeholder: /health says so, by name, and nothing else."""
    if value:
        stack.put_stripe_key(value)
    else:
        stack.moto.client("secretsmanager").delete_secret(SecretId=stack.secret_id, ForceDeleteWithoutRecovery=True)
    reply = gateway().call("GET", "/health")
    assert reply.status == 503
    assert reply.json["status"] == "setup_incomplete" and reply.json["missing"] == ["stripe_key"]
    assert "rotate-key" in reply.json["fix"][0]
    assert "REPLACE" not in reply.body and stack.secret_id not in reply.body


def test_first_visit_creates_customer_maps_it_and_redirects(gateway, user, stripe_standin, stack):
    sub, tokens = user()
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.location.startswith(stripe_standin.base_url + "/p/session/")
    [customer] = customer_of(stripe_standin, sub)
    assert customer["email"] == "ada@example.com"
    assert customer["name"] == "Ada Lovelace"
    assert customer["metadata"] == {"cognito_sub": sub, "cognito_user_pool": stack.user_pool_id}
    assert session_customer(stripe_standin, reply.location) == customer["id"]
    session = stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]
    assert session["return_url"] == RETURN_URL and session["locale"] == "auto"
    item = stack.moto.client("dynamodb").get_item(TableName=stack.table_name,
                                                   Key={"pk": {"S": f"test#{stack.user_pool_id}#{sub}"}})["Item"]
    assert item["customer_id"]["S"] == customer["id"]
    page = urllib.request.urlopen(reply.location).read().decode()
    assert customer["id"] in page and "Stripe stand-in" in page


def test_returning_user_makes_one_stripe_call_and_gets_same_customer(gateway, user, stripe_standin):
    sub, tokens = user()
    gw = gateway()
    first = gw.portal(tokens["IdToken"])
    before = len(stripe_standin.calls())
    second = gw.portal(tokens["IdToken"])
    calls = stripe_standin.calls()[before:]
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/billing_portal/sessions")]
    assert session_customer(stripe_standin, first.location) == session_customer(stripe_standin, second.location)
    assert first.location != second.location  # a fresh session every time
    assert len(customer_of(stripe_standin, sub)) == 1


def test_new_execution_environment_finds_mapping_in_table(gateway, user, stripe_standin):
    sub, tokens = user()
    gateway().portal(tokens["IdToken"])
    reply = gateway().portal(tokens["IdToken"])  # cold start: empty in-memory cache
    assert reply.status == 302
    assert len(customer_of(stripe_standin, sub)) == 1
    assert len(stripe_standin.calls("POST", "/v1/customers")) == 1


def test_json_mode_for_fetch(gateway, user):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.json["url"].startswith("http://127.0.0.1")


def test_form_post_redirects_with_303(gateway, user, stripe_standin):
    sub, tokens = user()
    reply = gateway().form({"id_token": tokens["IdToken"], "return_to": "https://shop.example.com/plans"})
    assert reply.status == 303
    session = stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]
    assert session["return_url"] == "https://shop.example.com/plans"
    assert session["customer"] == customer_of(stripe_standin, sub)[0]["id"]


def test_access_token_gets_email_from_cognito_getuser(gateway, user, stripe_standin):
    sub, tokens = user(email="grace@example.com", name="Grace Hopper")
    reply = gateway().portal(tokens["AccessToken"])
    assert reply.status == 302
    [customer] = customer_of(stripe_standin, sub)
    assert customer["email"] == "grace@example.com"
    assert customer["name"] == "Grace Hopper"


def test_access_and_id_token_of_one_user_open_the_same_customer(gateway, user, stripe_standin):
    sub, tokens = user()
    gw = gateway()
    a = gw.portal(tokens["AccessToken"])
    b = gw.portal(tokens["IdToken"])
    assert session_customer(stripe_standin, a.location) == session_customer(stripe_standin, b.location)
    assert len(customer_of(stripe_standin, sub)) == 1


def test_two_users_get_two_customers(gateway, user, stripe_standin):
    sub_a, tokens_a = user("ada", email="ada@example.com")
    sub_b, tokens_b = user("bob", email="bob@example.com")
    gw = gateway()
    a = session_customer(stripe_standin, gw.portal(tokens_a["IdToken"]).location)
    b = session_customer(stripe_standin, gw.portal(tokens_b["IdToken"]).location)
    assert a != b
    assert customer_of(stripe_standin, sub_a)[0]["id"] == a
    assert customer_of(stripe_standin, sub_b)[0]["id"] == b


# --- authentication failures ------------------------------------------------------------------------------
def test_missing_credentials_is_401_with_bearer_challenge(gateway, stripe_standin):
    reply = gateway().portal(None)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="billing-portal"'
    assert reply.json["error"] == "authentication_required"
    assert stripe_standin.requests == []


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_invalid_token_is_401_invalid_token_and_no_stripe_call(gateway, stripe_standin, token):
    reply = gateway().portal(token)
    assert reply.status == 401
    assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]
    assert reply.json == {"error": "invalid_token",
                          "message": "Your sign-in is not valid or has expired. Please sign in again."}
    assert stripe_standin.requests == []


def test_token_for_another_app_client_is_refused(gateway, user, stack, stripe_standin):
    _, tokens = user()
    reply = gateway(COGNITO_CLIENT_IDS="someotherclient1").portal(tokens["IdToken"])
    assert reply.status == 401 and reply.json["error"] == "invalid_token"
    assert stripe_standin.requests == []


def test_token_in_query_string_is_refused(gateway, user, stripe_standin):
    _, tokens = user()
    for name in ("id_token", "access_token", "token"):
        reply = gateway().portal(None, query={name: tokens["IdToken"]})
        assert reply.status == 400 and reply.json["error"] == "token_in_query_string"
    reply = gateway().form({"id_token": tokens["IdToken"]}, accept="application/json",
                           query={"id_token": tokens["IdToken"]})
    assert reply.status == 400 and reply.json["error"] == "token_in_query_string"
    assert stripe_standin.requests == []


def test_jwks_unreachable_is_503(gateway, user, stripe_standin):
    _, tokens = user()
    reply = gateway(COGNITO_JWKS_URL="http://127.0.0.1:9/jwks.json").portal(tokens["IdToken"])
    assert reply.status == 503 and reply.json["error"] == "auth_unavailable"
    assert stripe_standin.requests == []


def test_browser_gets_html_error_page_with_link_back(gateway):
    reply = gateway().portal(None, accept="text/html,application/xhtml+xml")
    assert reply.status == 401
    assert reply.headers["Content-Type"].startswith("text/html")
    assert f'href="{RETURN_URL}"' in reply.body
    assert "Please sign in" in reply.body
    assert "Traceback" not in reply.body


# --- form input ------------------------------------------------------------------------------------------
def test_form_problems_are_clean_4xx(gateway, user):
    _, tokens = user()
    gw = gateway()
    wrong_type = gw.call("POST", "/portal", body='{"id_token": "x"}',
                         headers={"content-type": "application/json", "accept": "application/json"})
    assert wrong_type.status == 415 and wrong_type.json["error"] == "unsupported_media_type"
    too_big = gw.form({"id_token": "x" * 20000}, accept="application/json")
    assert too_big.status == 413 and too_big.json["error"] == "payload_too_large"
    twice = gw.form([("id_token", tokens["IdToken"]), ("id_token", tokens["IdToken"])], accept="application/json")
    assert twice.status == 400 and twice.json["error"] == "invalid_request"
    missing = gw.form({"return_to": RETURN_URL}, accept="application/json")
    assert missing.status == 401 and missing.json["error"] == "authentication_required"
    not_utf8 = gw.call("POST", "/portal", body=b"id_token=\xff\xfe",
                       headers={"content-type": "application/x-www-form-urlencoded", "accept": "application/json"})
    assert not_utf8.status == 400 and not_utf8.json["error"] == "invalid_request"


def test_unknown_route_is_404_json(gateway):
    reply = gateway().call("GET", "/admin", headers={"accept": "application/json"})
    assert reply.status == 404 and reply.json["error"] == "not_found"


# --- return_to and locale ----------------------------------------------------------------------------------
@pytest.mark.parametrize("return_to", [
    "https://shop.example.com/anything?x=1",
    "https://docs.example.com/billing/faq",
    RETURN_URL + "/orders",
])
def test_allowed_return_to_is_used(gateway, user, stripe_standin, return_to):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], query={"return_to": return_to})
    assert reply.status == 302
    assert stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["return_url"] == return_to


@pytest.mark.parametrize("return_to", [
    "https://evil.example.net/",
    "https://shop.example.com.evil.net/",
    "https://docs.example.com/billingx",
    "https://docs.example.com/other",
    "javascript:alert(1)",
    "//evil.example.net/",
    "https://shop.example.com@evil.net/",
    "https://evil.net\\@shop.example.com/",
    "http://shop.example.com/",
    "https://docs.example.com/billing/%2e%2e/admin",
])
def test_disallowed_return_to_is_400_before_any_stripe_call(gateway, user, stripe_standin, return_to):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], query={"return_to": return_to})
    assert reply.status == 400 and reply.json["error"] == "return_url_not_allowed"
    assert stripe_standin.requests == []


def test_locale_is_validated_and_passed(gateway, user, stripe_standin):
    _, tokens = user()
    gw = gateway()
    ok = gw.portal(tokens["IdToken"], query={"locale": "fr"})
    assert stripe_standin.account.sessions[ok.location.rsplit("/", 1)[-1]]["locale"] == "fr"
    from_header = gw.portal(tokens["IdToken"], **{"accept-language": "de-CH,de;q=0.9,en;q=0.5"})
    assert stripe_standin.account.sessions[from_header.location.rsplit("/", 1)[-1]]["locale"] == "de"
    bad = gw.portal(tokens["IdToken"], accept="application/json", query={"locale": "xx-evil"})
    assert bad.status == 400 and bad.json["error"] == "invalid_request"


def test_the_portal_path_loads_neither_stripe_python_nor_pyjwt_nor_boto3_nor_urllib3(stack, stripe_standin, user):
    """Cold-start weight: a whole portal request (new user: list, create, portal) imports none of the heavy
    libraries the function does not need (make bench measures what this saves)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    _, tokens = user()
    env = {**os.environ, **stack.service_env(stripe_api_base=stripe_standin.base_url, return_url=RETURN_URL),
           "PYTHONPATH": f"{root / 'layers/core'}:{root}"}
    code = (
        "import sys, json\n"
        "from devstack.http_api import build_event, load_handler_module, new_context\n"
        "app = load_handler_module()\n"
        "event = build_event('GET', '/portal', headers={'authorization': 'Bearer ' + sys.argv[1]})\n"
        "answer = app.lambda_handler(event, new_context())\n"
        "heavy = ('stripe', 'jwt', 'cryptography', 'requests', 'boto3', 'urllib3')\n"
        "loaded = {n.split('.')[0] for n in sys.modules if n.split('.')[0] in heavy}\n"
        "# Powertools imports the bare botocore package for its user-agent hook; nothing of botocore beyond it.\n"
        "loaded |= {n for n in sys.modules if n.startswith('botocore.')}\n"
        "print(json.dumps({'status': answer['statusCode'], 'loaded': sorted(loaded)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, tokens["IdToken"]], env=env, cwd=root, capture_output=True,
                         text=True, timeout=60)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"status": 302, "loaded": []}, out.stderr[-2000:]
    assert len(stripe_standin.customers()) == 1  # the request did go all the way (a new customer)

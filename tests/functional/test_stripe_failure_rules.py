"""Stripe's documented failure rules, held against a stand-in as strict as Stripe on each: saved results of an
idempotency key (500s included) replayed with `Idempotent-Replayed: true`, 409 while a key is in flight, keys
per account, restricted keys refused on GET /v1/account, the list filter's length limit; and a time budget
per request taken from the Lambda context."""

from __future__ import annotations

import json
import threading
import time

import pytest

from devstack.http_api import build_event
from devstack.stripe_standin import Fault, fake_key
from tests.functional.test_admin_cli import ids, run


def session_customer(stripe_standin, reply):
    return stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["customer"]


def metric_total(output: str, name: str) -> int:
    """How many times the function counted `name` (CloudWatch EMF lines on stdout)."""
    total = 0
    for line in output.splitlines():
        if line.startswith('{"_aws"') and name in line:
            total += int(sum(json.loads(line).get(name, [0])))
    return total


# --- 1. a saved 500 must not lock a new user out for 24 hours ------------------------------------------------------
def test_a_500_saved_under_the_create_key_is_followed_by_a_new_key_in_the_same_request(gateway, user,
                                                                                      stripe_standin):
    _, tokens = user()
    stripe_standin.inject(Fault(status=500, times=1, method="POST", path_prefix="/v1/customers"))
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    creates = stripe_standin.calls("POST", "/v1/customers")
    # The 500, its replay (the client's own retry, which Stripe answers from the saved result), then a new key.
    assert [c["status"] for c in creates] == [500, 500, 200] and creates[1]["replayed"]
    assert len(stripe_standin.customers()) == 1


def test_a_user_whose_create_failed_twice_gets_in_on_the_next_click(gateway, user, stripe_standin):
    _, tokens = user()
    stripe_standin.inject(Fault(status=500, times=2, method="POST", path_prefix="/v1/customers"))
    gw = gateway()
    assert gw.portal(tokens["IdToken"], accept="application/json").status == 502
    assert stripe_standin.customers() == []
    for _ in range(3):  # every later click: in, on one customer (today's main: 502 for 24 hours)
        reply = gateway().portal(tokens["IdToken"])
        assert reply.status == 302
    assert len(stripe_standin.customers()) == 1
    assert session_customer(stripe_standin, reply) == stripe_standin.customers()[0]["id"]


# --- 2. double clicks while Stripe is slow ---------------------------------------------------------------------------
def test_concurrent_clicks_of_one_user_while_stripe_takes_over_a_second_all_land_on_one_customer(
        gateway, user, stripe_standin, capsys):
    _, tokens = user()
    gw = gateway(POWERTOOLS_METRICS_DISABLED="true")
    stripe_standin.latency = 1.2  # every call executes for 1.2 s, holding its idempotency key meanwhile
    replies, errors = [], []

    def click():
        try:
            replies.append(gw.portal(tokens["IdToken"]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    clicks = [threading.Thread(target=click) for _ in range(8)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(30)
    stripe_standin.latency = 0
    assert not errors
    assert sorted(r.status for r in replies) == [302] * 8, [r.body for r in replies if r.status != 302]
    assert len({session_customer(stripe_standin, r) for r in replies}) == 1
    assert len(stripe_standin.customers()) == 1
    in_flight = [c for c in stripe_standin.calls("POST", "/v1/customers") if c["status"] == 409]
    assert in_flight, "the stand-in never held the key in flight: the test proved nothing"
    assert '"StripeErrors"' not in capsys.readouterr().out  # waiting for a twin is not a Stripe error


# --- 3. a replay must never hand a user someone else's customer -----------------------------------------------------
def test_unlink_then_link_to_another_user_never_replays_the_customer_to_its_first_user(
        gateway, user, stripe_standin, stack, monkeypatch):
    monkeypatch.setenv("STRIPE_API_BASE", stripe_standin.base_url)
    ada_sub, ada = user("ada", email="ada@example.com")
    grace_sub, _ = user("grace", email="grace@example.com")
    assert gateway().portal(ada["IdToken"]).status == 302
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    assert run(["unlink", *ids(stack), ada_sub, "--reason", "ticket 7: wrong person"], stack=stack)[0] == 0
    assert run(["link", *ids(stack), grace_sub, customer, "--reason", "ticket 7: hers"], stack=stack)[0] == 0
    reply = gateway().portal(stack.sign_in("ada", "Correct-Horse-9")["IdToken"])
    assert reply.status == 302
    assert session_customer(stripe_standin, reply) != customer  # never Grace's
    assert stripe_standin.account.customers[customer]["metadata"]["cognito_sub"] == grace_sub


def test_a_replayed_customer_stamped_for_someone_else_is_not_taken(gateway, user, stripe_standin, stack, capsys):
    """The mapping is lost some other way (a table restored from a backup), so only the replay check stands
    between Ada and the customer her creation key was first answered with, now stamped as Grace's."""
    ada_sub, ada = user("ada", email="ada@example.com", email_verified=False)  # no email match to lean on
    assert gateway().portal(ada["IdToken"]).status == 302
    (customer,) = [c["id"] for c in stripe_standin.customers()]
    dynamodb = stack.moto.client("dynamodb")
    dynamodb.delete_item(TableName=stack.table_name, Key={"pk": {"S": f"test#{stack.user_pool_id}#{ada_sub}"}})
    stripe_standin.account.customers[customer]["metadata"].update(cognito_sub="grace-sub")
    capsys.readouterr()
    reply = gateway().portal(ada["IdToken"])
    assert reply.status == 302
    mine = session_customer(stripe_standin, reply)
    assert mine != customer
    assert stripe_standin.account.customers[mine]["metadata"]["cognito_sub"] == ada_sub
    replays = [c for c in stripe_standin.calls("POST", "/v1/customers") if c["replayed"]]
    assert len(replays) == 1  # Stripe did replay the old customer; it was read and refused
    assert metric_total(capsys.readouterr().out, "CustomerCreated") == 1  # the new one only


def test_a_replay_after_a_failed_mapping_write_is_counted_as_a_replay_not_a_new_customer(
        gateway, user, stripe_standin, moto_server, capsys):
    from devstack.fault_proxy import AwsFault, FaultProxy

    _, tokens = user(email_verified=False)  # the second click finds it by replay, not by email
    proxy = FaultProxy(moto_server.endpoint)
    try:
        proxy.inject(AwsFault(match="PutItem", body="customer_id", times=3, status=500,
                              error_type="InternalServerError"))
        assert gateway(AWS_ENDPOINT_URL_DYNAMODB=proxy.url).portal(tokens["IdToken"]).status == 503
        assert gateway(AWS_ENDPOINT_URL_DYNAMODB=proxy.url).portal(tokens["IdToken"]).status == 302
    finally:
        proxy.close()
    output = capsys.readouterr().out
    assert len(stripe_standin.customers()) == 1
    assert metric_total(output, "CustomerCreated") == 1
    assert metric_total(output, "CustomerCreateReplayed") == 1


# --- 5. a time budget per request ----------------------------------------------------------------------------------
def test_slow_stripe_ends_in_our_504_before_the_function_times_out(gateway, user, stripe_standin):
    _, tokens = user()
    gw = gateway()
    gw.timeout_seconds = 2.5  # the function's timeout; 0.5 s of it is kept for the answer
    stripe_standin.latency = 0.8  # each call answers, slowly
    started = time.monotonic()
    reply = gw.portal(tokens["IdToken"], accept="application/json")
    elapsed = time.monotonic() - started
    stripe_standin.latency = 0
    assert reply.status == 504 and reply.json["error"] == "billing_provider_timeout"
    assert reply.headers.get("Retry-After")
    assert elapsed < 2.4, elapsed  # the platform would have cut it off at 2.5 s with its own bare error


def test_an_answer_trickling_one_byte_at_a_time_is_cut_off_at_the_call_deadline(gateway, user, stripe_standin):
    _, tokens = user()
    stripe_standin.inject(Fault(status=500, times=5, trickle=0.3, path_prefix="/v1/customers"))
    started = time.monotonic()
    reply = gateway(STRIPE_TIMEOUT_SECONDS="1", STRIPE_MAX_NETWORK_RETRIES="0").portal(
        tokens["IdToken"], accept="application/json")
    elapsed = time.monotonic() - started
    assert reply.status == 502 and reply.json["error"] == "billing_provider_error"
    assert elapsed < 4, elapsed  # connect + read timeout per call, not per socket read (30 s before)


# --- 6. known-good state is kept -------------------------------------------------------------------------------------
def test_a_malformed_secret_written_by_mistake_keeps_the_last_good_key_serving(gateway, user, stripe_standin,
                                                                             stack, capsys):
    _, tokens = user()
    gw = gateway(STRIPE_KEY_TTL_SECONDS="1")
    assert gw.portal(tokens["IdToken"]).status == 302
    stack.put_stripe_key('{"api_key": "sk_test_oops with a space"}')
    time.sleep(1.1)
    assert gw.portal(tokens["IdToken"]).status == 302
    output = capsys.readouterr().out
    assert "still using the last good key" in output and metric_total(output, "StripeSecretUnusable") == 1
    assert stripe_standin.key not in output and "oops" not in output
    assert gateway().portal(tokens["IdToken"], accept="application/json").status == 503  # a cold start has none


# --- 7. hostile but signed input is refused, never a 500 -------------------------------------------------------------
def test_a_lone_surrogate_in_return_to_is_refused_as_not_allowed(gateway, user):
    _, tokens = user()
    event = build_event("GET", "/portal", headers={"accept": "application/json",
                                                   "authorization": f"Bearer {tokens['IdToken']}"})
    event["queryStringParameters"] = {"return_to": "https://shop.example.com/\udc80"}
    reply = gateway().invoke(event)
    assert reply.status == 400 and reply.json["error"] == "return_url_not_allowed"


def test_port_zero_is_not_the_default_port(gateway, user):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json",
                             query={"return_to": "https://shop.example.com:0/account"})
    assert reply.status == 400 and reply.json["error"] == "return_url_not_allowed"


# --- 8. smaller contract gaps ----------------------------------------------------------------------------------------
def test_an_email_longer_than_stripe_accepts_still_gets_a_portal(gateway, user, stripe_standin):
    long_email = "a" * 510 + "@example.com"  # 522 > 512, Stripe's limit for the field and for the list filter
    _, tokens = user("longmail", email=long_email)
    reply = gateway().portal(tokens["IdToken"])
    assert reply.status == 302
    (customer,) = stripe_standin.customers()
    assert customer["email"] is None  # not cut (a cut address is someone else's): left out


@pytest.mark.parametrize("status", [401, 403])
def test_a_proxy_page_instead_of_stripe_json_is_a_provider_error_not_a_bad_key(gateway, user, stripe_standin,
                                                                              status):
    _, tokens = user()
    stripe_standin.inject(Fault(status=status, times=4, non_json=True, path_prefix="/v1/billing_portal"))
    reply = gateway().portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 502 and reply.json["error"] == "billing_provider_error"


@pytest.mark.parametrize("make_id", [lambda s: "bpc_doesnotexist0", lambda s: s.deactivated])
def test_an_unusable_portal_configuration_is_a_configuration_error_not_an_outage(gateway, user, stripe_standin,
                                                                               make_id):
    _, tokens = user()
    config = stripe_standin.create_default_portal_configuration("test", is_default=False)
    stripe_standin.set_configuration_active(config, False)
    stripe_standin.deactivated = config
    reply = gateway(PORTAL_CONFIGURATION_ID=make_id(stripe_standin)).portal(tokens["IdToken"],
                                                                          accept="application/json")
    assert reply.status == 503 and reply.json["error"] == "portal_configuration_invalid"
    assert "Retry-After" not in reply.headers  # waiting will not fix it; the operator must


# --- the stand-in is as strict as Stripe -----------------------------------------------------------------------------
def test_standin_restricted_keys_get_403_on_account_whatever_their_permissions(stripe_standin):
    from portal_gateway.billing.stripe_client import StripeApiError, StripeHttp

    restricted = stripe_standin.add_key(fake_key("rk", "test"))  # every permission there is
    with pytest.raises(StripeApiError) as refused:
        StripeHttp(api_base=stripe_standin.base_url).request("GET", "/v1/account", api_key=restricted)
    assert refused.value.kind == "PermissionError"
    assert "not available for use by restricted keys" in refused.value.stripe_message
    account = StripeHttp(api_base=stripe_standin.base_url).request("GET", "/v1/account", api_key=stripe_standin.key)
    assert account["id"] == stripe_standin.account.id


def test_standin_idempotency_keys_are_per_account_and_saved_results_replay(stripe_standin):
    from portal_gateway.billing.stripe_client import StripeHttp

    http = StripeHttp(api_base=stripe_standin.base_url)
    second_key = stripe_standin.add_key(fake_key("sk", "test"))  # another key of the same account
    first = http.exchange("POST", "/v1/customers", {"name": "A"}, api_key=stripe_standin.key, idempotency_key="k1")
    again = http.exchange("POST", "/v1/customers", {"name": "A"}, api_key=second_key, idempotency_key="k1")
    assert not first.replayed and again.replayed and again.data["id"] == first.data["id"]
    other = stripe_standin.add_account()
    foreign = stripe_standin.add_key(fake_key("sk", "test"), account=other)
    elsewhere = http.exchange("POST", "/v1/customers", {"name": "A"}, api_key=foreign, idempotency_key="k1")
    assert not elsewhere.replayed and elsewhere.data["id"] != first.data["id"]


def test_standin_ids_in_paths_are_one_segment(stripe_standin):
    from portal_gateway.billing.stripe_client import StripeApiError, StripeHttp, path_of

    assert path_of("v1", "customers", "cus_1/../..") == "/v1/customers/cus_1%2F..%2F.."
    with pytest.raises(StripeApiError) as missing:
        StripeHttp(api_base=stripe_standin.base_url).request("GET", path_of("v1", "customers", "cus_1/../account"),
                                                             api_key=stripe_standin.key)
    assert missing.value.code == "resource_missing"
    assert stripe_standin.calls("GET")[-1]["path"] == "/v1/customers/cus_1%2F..%2Faccount"

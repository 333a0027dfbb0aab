"""The portal function's small Stripe client held to stripe-python 16.1: the API version it speaks, the form
encoding, and which exception class an error answer becomes."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import stripe
from portal_gateway.billing.stripe_client import STRIPE_API_VERSION, encode_form, error_kind
from stripe._api_requestor import _APIRequestor
from stripe._encode import _api_encode


def test_speaks_the_api_version_of_stripe_python():
    assert STRIPE_API_VERSION == stripe.api_version


@pytest.mark.parametrize("params", [
    {"email": "ada@example.com", "limit": 20, "expand": ["data.subscriptions"]},
    {"metadata": {"cognito_sub": "s-1", "cognito_user_pool": "eu-west-1_X"}, "name": "Zoë Ł 😀", "email": None},
    {"customer": "cus_1", "return_url": "https://shop.example.com/a?b=c&d=e", "locale": "pt-BR",
     "flow_data": {"type": "subscription_pause", "subscription_pause": {"subscription": "sub_1"},
                   "after_completion": {"type": "redirect", "redirect": {"return_url": "https://x.example/#y"}}}},
    {"is_default": True, "limit": 1}, {"flag": False, "list": [{"a": 1}, {"b": [2, 3]}]},
])
def test_form_encoding_equals_stripe_pythons(params):
    assert encode_form(params) == urlencode(list(_api_encode(params)))


@pytest.mark.parametrize("status, error", [
    (400, {"type": "invalid_request_error", "code": "resource_missing", "param": "customer"}),
    (404, {"type": "invalid_request_error", "code": "resource_missing"}),
    (400, {"type": "idempotency_error"}),
    (400, {"type": "invalid_request_error", "code": "rate_limit"}),
    (429, {"type": "invalid_request_error", "code": "rate_limit"}),
    (401, {"type": "invalid_request_error"}), (402, {"type": "card_error"}), (403, {"type": "invalid_request_error"}),
    (409, {"type": "invalid_request_error", "code": "idempotency_key_in_use"}), (500, {"type": "api_error"}),
    (503, {"type": "api_error"}),
])
def test_error_answers_map_to_stripe_pythons_exception_classes(status, error):
    requestor = _APIRequestor()
    body = json.dumps({"error": {"message": "x", **error}})
    expected = requestor.specific_v1_api_error(body, status, {"error": error}, {}, error)
    assert error_kind(status, error) == type(expected).__name__


def test_tls_connections_verify_certificates_and_host_names_with_system_cas():
    import ssl

    from portal_gateway.http_pool import tls_context

    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the system's CA bundle was found


def test_lone_surrogates_in_a_signed_name_or_email_never_reach_the_encoder():
    from portal_gateway.billing.stripe_adapter import fit_customer_email, fit_customer_name
    from portal_gateway.billing.stripe_client import encode_form

    name = fit_customer_name("Ada \udc80 Lovelace")
    assert name == "Ada \ufffd Lovelace"
    assert fit_customer_email("ada\udc80@example.com") is None
    encode_form({"name": name, "metadata": {"cognito_sub": "abc"}})  # no UnicodeEncodeError


def test_a_v2_request_goes_on_the_wire_as_stripe_pythons_does():
    """v2 APIs take JSON bodies: the same method, path, content type, API version and body as stripe-python's own
    v2 client sends for the same call (both captured by one local server)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from portal_gateway.billing.stripe_client import StripeHttp

    seen: list[dict] = []

    class Capture(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({"method": self.command, "path": self.path, "type": self.headers.get("Content-Type"),
                         "version": self.headers.get("Stripe-Version"), "body": json.loads(body)})
            answer = json.dumps({"id": "ed_1", "object": "v2.core.event_destination"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    params = {"name": "stripe-portal-gateway", "type": "amazon_eventbridge", "event_payload": "snapshot",
              "enabled_events": ["customer.deleted", "price.updated"], "metadata": {"stack": "s"},
              "amazon_eventbridge": {"aws_account_id": "123456789012", "aws_region": "eu-west-1"}}
    try:
        stripe.StripeClient("sk_test_x", base_addresses={"api": base}).v2.core.event_destinations.create(params)
        StripeHttp(api_base=base).request("POST", "/v2/core/event_destinations", params, api_key="sk_test_x")
    finally:
        server.shutdown()
        server.server_close()
    theirs, ours = seen
    assert theirs["type"].split(";")[0] == ours["type"] == "application/json"
    assert {k: v for k, v in theirs.items() if k != "type"} == {k: v for k, v in ours.items() if k != "type"}

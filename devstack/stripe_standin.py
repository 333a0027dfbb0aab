"""A local stand-in for the Stripe API, for tests and the local stack. NOT Stripe.

It speaks Stripe's HTTP dialect to the real `stripe` library: form-encoded bracket params, Bearer keys
(secret and restricted, per mode), Stripe-shaped error bodies, idempotency keys that replay the first result
(and refuse reuse with other parameters, or a concurrent in-flight duplicate, like Stripe), and injectable
faults (429 with or without Stripe-Should-Retry, 5xx, latency, dropped connections). It also serves a plain
"portal" page at each session URL that says which customer it is for and links back to return_url.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# Restricted-key permissions per resource, as in the Dashboard: "<resource>_read" or "<resource>_write",
# where write includes read. A secret key (sk_) has them all.
ALL_PERMISSIONS = frozenset({"customers_write", "portal_write", "subscriptions_read"})
FLOW_TYPES = frozenset({"payment_method_update", "subscription_cancel", "subscription_update",
                        "subscription_update_confirm"})
PORTAL_LOCALES = frozenset(
    """auto bg cs da de el en en-AU en-CA en-GB en-IE en-IN en-NZ en-SG es es-419 et fi fil fr fr-CA hr hu id
    it ja ko lt lv ms mt nb nl pl pt pt-BR ro ru sk sl sv th tr vi zh zh-HK zh-TW""".split()
)


def new_id(prefix: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(14))


def fake_key(kind: str = "sk", mode: str = "test") -> str:
    """A fresh, obviously fake key for the stand-in (never a real Stripe key)."""
    return f"{kind}_{mode}_standin{secrets.token_hex(12)}"


def decode_stripe_form(pairs: list[tuple[str, str]]) -> dict:
    """Decode Stripe's bracket encoding: metadata[a]=1, expand[0]=x, flow_data[type]=y."""
    result: dict = {}
    for raw_key, value in pairs:
        parts = raw_key.replace("]", "").split("[")
        node = result
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(result)


def _lists(node):
    if isinstance(node, dict):
        converted = {k: _lists(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


@dataclass
class Fault:
    status: int = 500
    times: int = 1
    method: str | None = None
    path_prefix: str = "/v1/"
    should_retry: bool | None = None
    delay: float = 0.0
    drop_connection: bool = False
    error_type: str | None = None


@dataclass
class Account:
    keys: dict[str, frozenset] = field(default_factory=dict)  # api key -> permissions
    customers: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)
    configurations: dict[str, dict] = field(default_factory=dict)
    default_configuration: dict[str, str | None] = field(default_factory=lambda: {"test": None, "live": None})


class StripeStandin:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.account = Account()
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.requests: list[dict] = []  # method, path, mode, replayed
        self._idempotency: dict[tuple[str, str], dict] = {}
        self._clock_seq = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes
            server_version = "stripe-standin"

            def do_GET(self):
                owner._handle(self, "GET")

            def do_POST(self):
                owner._handle(self, "POST")

            def do_DELETE(self):
                owner._handle(self, "DELETE")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # --- lifecycle and test controls ------------------------------------------------------------------
    def start(self) -> "StripeStandin":
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_key(self, key: str, permissions: frozenset = ALL_PERMISSIONS) -> str:
        with self.lock:
            self.account.keys[key] = frozenset(permissions)
        return key

    def revoke_key(self, key: str) -> None:
        with self.lock:
            self.account.keys.pop(key, None)

    def create_default_portal_configuration(self, mode: str = "test", *, is_default: bool = True) -> str:
        with self.lock:
            config_id = new_id("bpc_")
            self.account.configurations[config_id] = {"id": config_id, "object": "billing_portal.configuration",
                                                      "is_default": is_default, "livemode": mode == "live",
                                                      "active": True}
            if is_default:
                self.account.default_configuration[mode] = config_id
            return config_id

    def remove_default_portal_configuration(self, mode: str = "test") -> None:
        """As if the account never saved its customer portal settings in this mode."""
        with self.lock:
            config_id = self.account.default_configuration[mode]
            self.account.default_configuration[mode] = None
            if config_id:
                self.account.configurations.pop(config_id, None)

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def add_customer(self, *, email: str | None = None, name: str | None = None, metadata: dict | None = None,
                     mode: str = "test", subscription_status: str | None = None) -> str:
        with self.lock:
            customer = self._new_customer(mode, {"email": email, "name": name, "metadata": metadata or {}})
            if subscription_status:
                customer["_subscriptions"].append({"id": new_id("sub_"), "object": "subscription",
                                                   "status": subscription_status, "customer": customer["id"]})
            return customer["id"]

    def add_subscription(self, customer_id: str, status: str = "active") -> str:
        with self.lock:
            subscription = {"id": new_id("sub_"), "object": "subscription", "status": status, "customer": customer_id}
            self.account.customers[customer_id]["_subscriptions"].append(subscription)
            return subscription["id"]

    def delete_customer(self, customer_id: str) -> None:
        with self.lock:
            self.account.customers[customer_id]["deleted"] = True

    def customers(self, mode: str = "test", include_deleted: bool = False) -> list[dict]:
        with self.lock:
            return [dict(c) for c in self.account.customers.values()
                    if c["livemode"] == (mode == "live") and (include_deleted or not c.get("deleted"))]

    def calls(self, method: str | None = None, path_prefix: str = "/v1/") -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix)
                    and (method is None or r["method"] == method)]

    # --- HTTP plumbing ------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode("utf-8") if length else ""
        if url.path.startswith("/p/session/"):
            return self._portal_page(handler, url.path.rsplit("/", 1)[-1])
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(method, url.path)
        if fault:
            with self.lock:
                self.requests.append({"method": method, "path": url.path, "mode": None, "replayed": False,
                                      "fault": fault.status})
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop_connection:
                handler.close_connection = True
                handler.connection.shutdown(2)
                return None
            headers = {}
            if fault.should_retry is not None:
                headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
            error_type = fault.error_type or ("rate_limit_error" if fault.status == 429 else "api_error")
            message = "Too many requests." if fault.status == 429 else "Something went wrong on Stripe's end."
            return self._send(handler, fault.status, {"error": {"type": error_type, "message": message}}, headers)

        key = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        with self.lock:
            permissions = self.account.keys.get(key)
        if permissions is None:
            masked = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "****"
            return self._send(handler, 401, {"error": {"type": "invalid_request_error",
                                                       "message": f"Invalid API Key provided: {masked}"}})
        mode = "live" if "_live_" in key else "test"
        params = decode_stripe_form(parse_qsl(url.query if method != "POST" else body, keep_blank_values=True))
        idem_key = handler.headers.get("Idempotency-Key")
        record = {"method": method, "path": url.path, "mode": mode, "replayed": False, "fault": None}
        with self.lock:
            self.requests.append(record)

        if method == "POST" and idem_key:
            fingerprint = json.dumps([url.path, params], sort_keys=True)
            slot = (key, idem_key)
            with self.lock:
                previous = self._idempotency.get(slot)
                if previous is None:
                    self._idempotency[slot] = {"fingerprint": fingerprint, "done": False}
            if previous is not None:
                if previous["fingerprint"] != fingerprint:
                    return self._send(handler, 400, {"error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters "
                                   "they were first used with."}})
                if not previous["done"]:
                    return self._send(handler, 409, {"error": {
                        "type": "invalid_request_error", "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using this Idempotent Key. "
                                   "Please try again later."}})
                record["replayed"] = True
                return self._send(handler, previous["status"], previous["body"], {"Idempotent-Replayed": "true"})
            status, payload = self._route(method, url.path, params, mode, permissions)
            with self.lock:
                if status >= 500:
                    del self._idempotency[slot]
                else:
                    self._idempotency[slot].update(done=True, status=status, body=payload)
            return self._send(handler, status, payload)
        status, payload = self._route(method, url.path, params, mode, permissions)
        return self._send(handler, status, payload)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _send(self, handler, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Request-Id", new_id("req_"))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    # --- the API --------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, params: dict, mode: str, permissions: frozenset):
        parts = path.strip("/").split("/")
        needs = {
            ("GET", "customers"): "customers_read",
            ("POST", "customers"): "customers_write",
            ("DELETE", "customers"): "customers_write",
            ("POST", "billing_portal"): "portal_write",
            ("GET", "billing_portal"): "portal_read",
            ("GET", "subscriptions"): "subscriptions_read",
        }.get((method, parts[1] if len(parts) > 1 else ""))
        if "data.subscriptions" in (params.get("expand") or []) and not self._granted("subscriptions_read", permissions):
            return 403, _error("invalid_request_error", "The provided key does not have the required permissions "
                                                        "to expand subscriptions.")
        if needs is None:
            return 404, _error("invalid_request_error", f"Unrecognized request URL ({method}: {path}).")
        if not self._granted(needs, permissions):
            return 403, _error("invalid_request_error",
                               f"The provided key does not have the required permissions for this endpoint. "
                               f"Having the '{needs}' permission would allow this request to continue.")
        with self.lock:
            if parts[1] == "customers":
                return self._customers(method, parts[2:], params, mode)
            if parts[1] == "subscriptions" and len(parts) == 2:
                customer = self.account.customers.get(params.get("customer", ""))
                subs = [s for s in (customer["_subscriptions"] if customer else []) if s["status"] != "canceled"]
                return 200, _list(subs[: int(params.get("limit", 10))], "/v1/subscriptions")
            if parts[1:3] == ["billing_portal", "sessions"] and method == "POST":
                return self._create_session(params, mode)
            if parts[1:3] == ["billing_portal", "configurations"] and method == "GET":
                configs = [c for c in self.account.configurations.values() if c["livemode"] == (mode == "live")]
                if len(parts) > 3:
                    found = [c for c in configs if c["id"] == parts[3]]
                    if not found:
                        return 404, _error("invalid_request_error", f"No such configuration: '{parts[3]}'",
                                           code="resource_missing", param="configuration")
                    return 200, found[0]
                if params.get("is_default") == "true":
                    configs = [c for c in configs if c["is_default"]]
                return 200, _list(configs[: int(params.get("limit", 10))], "/v1/billing_portal/configurations")
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    @staticmethod
    def _granted(needs: str, permissions: frozenset) -> bool:
        return needs in permissions or needs.replace("_read", "_write") in permissions

    def _new_customer(self, mode: str, params: dict) -> dict:
        self._clock_seq += 1
        customer = {
            "id": new_id("cus_"), "object": "customer", "created": int(time.time()) * 1000 + self._clock_seq,
            "email": params.get("email") or None, "name": params.get("name") or None,
            "metadata": dict(params.get("metadata") or {}), "livemode": mode == "live", "_subscriptions": [],
        }
        self.account.customers[customer["id"]] = customer
        return customer

    def _customers(self, method: str, rest: list[str], params: dict, mode: str):
        if not rest:
            if method == "POST":
                return 200, _public(self._new_customer(mode, params), expand=False)
            limit = int(params.get("limit", 10))
            expand = "data.subscriptions" in (params.get("expand") or [])
            found = [c for c in self.account.customers.values()
                     if c["livemode"] == (mode == "live") and not c.get("deleted")
                     and ("email" not in params or c["email"] == params["email"])]
            found.sort(key=lambda c: c["created"], reverse=True)
            return 200, _list([_public(c, expand) for c in found[:limit]], "/v1/customers")
        customer = self.account.customers.get(rest[0])
        if customer is None or customer["livemode"] != (mode == "live"):
            return 404, _error("invalid_request_error", f"No such customer: '{rest[0]}'",
                               code="resource_missing", param="id")
        if customer.get("deleted"):
            if method == "GET":
                return 200, {"id": customer["id"], "object": "customer", "deleted": True}
            return 404, _error("invalid_request_error", f"No such customer: '{rest[0]}'",
                               code="resource_missing", param="id")
        if method == "DELETE":
            customer["deleted"] = True
            return 200, {"id": customer["id"], "object": "customer", "deleted": True}
        if method == "POST":
            for name in ("email", "name"):
                if name in params:
                    customer[name] = params[name] or None
            for meta_key, value in (params.get("metadata") or {}).items():
                if value == "":
                    customer["metadata"].pop(meta_key, None)
                else:
                    customer["metadata"][meta_key] = value
        return 200, _public(customer, expand=False)

    def _create_session(self, params: dict, mode: str):
        customer = self.account.customers.get(params.get("customer", ""))
        if customer is None or customer.get("deleted") or customer["livemode"] != (mode == "live"):
            return 400, _error("invalid_request_error", f"No such customer: '{params.get('customer')}'",
                               code="resource_missing", param="customer")
        if params.get("locale") and params["locale"] not in PORTAL_LOCALES:
            return 400, _error("invalid_request_error", "Invalid locale", code="parameter_invalid_string",
                               param="locale")
        flow = params.get("flow_data")
        if flow:
            problem = self._flow_problem(flow, customer)
            if problem:
                return 400, _error("invalid_request_error", problem, param="flow_data")
        config_id = params.get("configuration")
        if config_id:
            if config_id not in self.account.configurations:
                return 400, _error("invalid_request_error", f"No such configuration: '{config_id}'",
                                   code="resource_missing", param="configuration")
        else:
            config_id = self.account.default_configuration[mode]
            if config_id is None:
                return 400, _error(
                    "invalid_request_error",
                    f"No configuration provided and your {mode} mode default configuration has not been created. "
                    f"Provide a configuration or create your default by saving your customer portal settings in "
                    f"{mode} mode at https://dashboard.stripe.com/{mode}/settings/billing/portal.")
        session_id = new_id("bps_")
        session = {
            "id": session_id, "object": "billing_portal.session", "customer": customer["id"],
            "configuration": config_id, "livemode": mode == "live", "locale": params.get("locale"),
            "return_url": params.get("return_url"), "flow": params.get("flow_data"),
            "created": int(time.time()), "url": f"{self.base_url}/p/session/{session_id}",
        }
        self.account.sessions[session_id] = session
        return 200, session

    @staticmethod
    def _flow_problem(flow: dict, customer: dict) -> str | None:
        if flow.get("type") not in FLOW_TYPES:
            return f"Invalid flow_data[type]: {flow.get('type')}"
        if flow["type"] in ("subscription_cancel", "subscription_update"):
            subscription = (flow.get(flow["type"]) or {}).get("subscription")
            owned = {s["id"] for s in customer["_subscriptions"] if s["status"] != "canceled"}
            if subscription not in owned:
                return f"No such subscription for this customer: '{subscription}'"
        after = flow.get("after_completion") or {}
        if after.get("type") == "redirect" and not (after.get("redirect") or {}).get("return_url"):
            return "flow_data[after_completion][redirect][return_url] is required"
        return None

    def _portal_page(self, handler, session_id: str) -> None:
        with self.lock:
            session = self.account.sessions.get(session_id)
            customer = self.account.customers.get(session["customer"]) if session else None
        if session is None:
            status, page = 404, "<h1>Stripe stand-in: no such portal session</h1>"
        else:
            status = 200
            back = html.escape(session["return_url"] or "")
            page = (
                "<!doctype html><meta charset=utf-8><title>Stripe stand-in portal</title>"
                "<p><strong>Stripe stand-in</strong> (local development, not Stripe)</p>"
                f"<h1>Billing portal</h1><p>Customer: <code id=customer>{html.escape(customer['id'])}</code></p>"
                f"<p>Name: <span id=name>{html.escape(customer.get('name') or '')}</span></p>"
                f"<p>Flow: <code id=flow>{html.escape(json.dumps(session['flow']))}</code></p>"
                f"<p><a id=return href=\"{back}\">Return to the site</a></p>"
            )
        body = page.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _public(customer: dict, expand: bool) -> dict:
    public = {k: v for k, v in customer.items() if not k.startswith("_")}
    if expand:
        subs = [s for s in customer["_subscriptions"] if s["status"] != "canceled"]
        public["subscriptions"] = _list(subs, f"/v1/customers/{customer['id']}/subscriptions")
    return public


def _list(data: list, url: str) -> dict:
    return {"object": "list", "data": data, "has_more": False, "url": url}


def _error(error_type: str, message: str, *, code: str | None = None, param: str | None = None) -> dict:
    error = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return {"error": error}

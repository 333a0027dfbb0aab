"""A local stand-in for the Stripe API, for tests and the local stack. NOT Stripe.

It speaks Stripe's HTTP dialect to the real `stripe` library: form-encoded bracket params, Bearer keys
(secret and restricted, per mode), Stripe-shaped error bodies, and idempotency as Stripe documents it: keys
are per account (any key of the account shares them), the first result is saved for 24 h and replayed with
`Idempotent-Replayed: true`, 500s included, except when the request never started executing (parameter
validation, authentication, permissions, rate limits); reuse with other parameters is refused; a duplicate
while the first is executing gets 409 `idempotency_key_in_use`. `latency` is execution time: it elapses while
the key is held. Restricted keys get 403 on GET /v1/account whatever their permissions (Stripe offers no
permission for it). Injectable faults: 429 with or without Stripe-Should-Retry, 5xx (saved under the key
like a real one), latency, dropped connections, answers trickled byte by byte. It also serves a plain
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

from devstack import stripe_eventbridge
from devstack.stripe_eventbridge import EventBridgeDeliveries
from devstack.stripe_webhooks import Deliverer

# Restricted-key permissions per resource, as in the Dashboard: "<resource>_read" or "<resource>_write",
# where write includes read. A secret key (sk_) has them all.
# GET /v1/account has no restricted-key permission at all: only a secret key (sk_) may call it.
ALL_PERMISSIONS = frozenset({"customers_write", "portal_write", "subscriptions_write", "entitlements_read",
                             "webhook_endpoints_write", "prices_read", "checkout_sessions_write",
                             "customer_sessions_write", "events_read", "event_destinations_write"})
# A restricted key with what docs/deploy.md (step 2) asks for without Subscribe: the portal, the billing status,
# the scheduled catch-up (webhook endpoints are managed with it or another key: webhooks setup --key-stdin).
GUIDE_PERMISSIONS = frozenset({"customers_write", "portal_write", "subscriptions_read", "entitlements_read",
                               "events_read"})
# ... and with CheckoutPrices set, Subscribe's and the embedded components'.
CHECKOUT_PERMISSIONS = frozenset({"prices_read", "checkout_sessions_write", "customer_sessions_write"})
# Stripe allows 16 webhook endpoints per account and mode.
MAX_WEBHOOK_ENDPOINTS = 16
# Subscriptions in these states keep their products' features provisioned (active entitlements).
ENTITLED_STATUSES = frozenset({"active", "trialing", "past_due"})
# Event types the stand-in emits; an endpoint may subscribe to any of them, or to "*".
EVENT_TYPES = frozenset({
    "customer.created", "customer.deleted", "customer.subscription.created", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired", "customer.subscription.resumed",
    "customer.subscription.trial_will_end", "customer.subscription.updated",
    "entitlements.active_entitlement_summary.updated", "checkout.session.completed", "invoice.paid",
    "price.updated", "product.updated",
})
# Portal flows (API 2026-10-28) and the configuration feature each one needs enabled.
FLOW_FEATURES = {"customer_update": "customer_update", "payment_method_update": "payment_method_update",
                 "subscription_cancel": "subscription_cancel", "subscription_pause": "subscription_pause",
                 "subscription_update": "subscription_update", "subscription_update_confirm": "subscription_update"}
SUBSCRIPTION_FLOW_TYPES = frozenset({"subscription_cancel", "subscription_pause", "subscription_update",
                                     "subscription_update_confirm"})
# Stripe's string limits for the customer fields the service sends (OpenAPI spec: maxLength).
FIELD_LIMITS = {"name": 256, "email": 512}
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


# The API version the stand-in renders events in (Stripe: the account's, or a destination's snapshot version).
EVENT_API_VERSION = "2026-10-28.endive"


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
    trickle: float = 0.0  # seconds between the answer's bytes (a connection that answers, but barely)
    non_json: bool = False  # an HTML page (a proxy or load balancer in front of Stripe), not Stripe's JSON


@dataclass
class Account:
    """One Stripe account: its keys, customers, sessions and portal configurations. Another account's
    customer does not exist for this account's keys (Stripe answers 404 resource_missing)."""

    id: str = field(default_factory=lambda: new_id("acct_"))
    keys: dict[str, frozenset] = field(default_factory=dict)  # api key -> permissions
    customers: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)
    configurations: dict[str, dict] = field(default_factory=dict)
    products: dict[str, dict] = field(default_factory=dict)
    prices: dict[str, dict] = field(default_factory=dict)
    features: dict[str, dict] = field(default_factory=dict)  # feature id -> feature (lookup_key)
    webhook_endpoints: dict[str, dict] = field(default_factory=dict)
    event_destinations: dict[str, dict] = field(default_factory=dict)  # v2: amazon_eventbridge destinations
    events: list[dict] = field(default_factory=list)
    payment_links: dict[str, dict] = field(default_factory=dict)
    checkout_sessions: dict[str, dict] = field(default_factory=dict)
    pricing_tables: dict[str, dict] = field(default_factory=dict)
    customer_sessions: dict[str, dict] = field(default_factory=dict)
    default_configuration: dict[str, str | None] = field(default_factory=lambda: {"test": None, "live": None})


class StripeStandin:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.account = Account()  # the default account; add_account() makes others
        self.accounts: dict[str, Account] = {self.account.id: self.account}
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.latency = 0.0
        # Stripe's rate limit, when set: at most this many API requests in any one second (Stripe allows 25 in test
        # mode, 100 live); one more is answered 429 rate_limit, as Stripe answers it, and never executed.
        self.rate_limit: int | None = None
        self.rate_limited = 0  # requests answered 429 for it
        self._recent: list[float] = []
        self.requests: list[dict] = []  # method, path, mode, replayed, params, status, body
        self._idempotency: dict[tuple[str, str], dict] = {}
        self._sequence = 0
        self.deliverer = Deliverer(self._endpoint)
        self.eventbridge = EventBridgeDeliveries()  # events Stripe put on partner event buses
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
    def start(self) -> StripeStandin:
        self._thread.start()
        return self

    def close(self) -> None:
        self.deliverer.close()
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_account(self) -> Account:
        """Another Stripe account, with nothing in it yet."""
        with self.lock:
            account = Account()
            self.accounts[account.id] = account
            return account

    def add_key(self, key: str, permissions: frozenset = ALL_PERMISSIONS, *, account: Account | None = None) -> str:
        with self.lock:
            (account or self.account).keys[key] = frozenset(permissions)
        return key

    def revoke_key(self, key: str) -> None:
        with self.lock:
            for account in self.accounts.values():
                account.keys.pop(key, None)

    def create_default_portal_configuration(self, mode: str = "test", *, is_default: bool = True,
                                            account: Account | None = None, disabled: tuple[str, ...] = ()) -> str:
        account = account or self.account
        with self.lock:
            configuration = _configuration(new_id("bpc_"), mode, is_default)
            for feature in disabled:
                configuration["features"][feature]["enabled"] = False
            account.configurations[configuration["id"]] = configuration
            if is_default:
                account.default_configuration[mode] = configuration["id"]
            return configuration["id"]

    def set_configuration_active(self, config_id: str, active: bool, *, account: Account | None = None) -> None:
        with self.lock:
            (account or self.account).configurations[config_id]["active"] = active

    def set_portal_feature(self, feature: str, enabled: bool, *, mode: str = "test",
                           account: Account | None = None) -> None:
        """Switch a feature of the default configuration, as in the Dashboard's portal settings."""
        account = account or self.account
        with self.lock:
            account.configurations[account.default_configuration[mode]]["features"][feature]["enabled"] = enabled

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
                     mode: str = "test", subscription_status: str | None = None, created: int | None = None,
                     customer_id: str | None = None, account: Account | None = None) -> str:
        with self.lock:
            customer = self._new_customer(account or self.account, mode,
                                          {"email": email, "name": name, "metadata": metadata or {}},
                                          created=created, customer_id=customer_id)
            if subscription_status:
                self.add_subscription(customer["id"], subscription_status)
            return customer["id"]

    def add_subscription(self, customer_id: str, status: str = "active", *, price_id: str | None = None,
                         trial_end: int | None = None, metadata: dict | None = None) -> str:
        """A subscription as a purchase or the Dashboard makes it; its events are delivered to the endpoints."""
        with self.lock:
            customer = self._find_customer(customer_id)
            account = self._account_of(customer_id)
            before = self._entitlement_keys(account, customer)
            subscription = _subscription(customer, status, account.prices.get(price_id or ""))
            self._sequence += 1
            subscription["_sequence"] = self._sequence
            subscription["trial_end"] = trial_end
            subscription["metadata"] = dict(metadata or {})
            customer["_subscriptions"].append(subscription)
            self._emit(account, "customer.subscription.created", subscription)
            self._emit_entitlements_if_changed(account, customer, before)
            return subscription["id"]

    def update_subscription(self, subscription_id: str, **changes) -> None:
        """Change a subscription (status, cancel_at_period_end, trial_end, price_id) and emit its events."""
        with self.lock:
            account, customer, subscription = self._find_subscription(subscription_id)
            before = self._entitlement_keys(account, customer)
            previous = {}
            price_id = changes.pop("price_id", None)
            if price_id:
                previous["items"] = subscription["items"]
                subscription["items"] = _items(subscription, account.prices[price_id])
            for name, value in changes.items():
                previous[name] = subscription[name]
                subscription[name] = value
            if subscription["status"] == "canceled":
                subscription["canceled_at"] = subscription["ended_at"] = int(time.time())
                self._emit(account, "customer.subscription.deleted", subscription)
            else:
                self._emit(account, "customer.subscription.updated", subscription, previous)
            self._emit_entitlements_if_changed(account, customer, before)

    def cancel_subscription(self, subscription_id: str) -> None:
        self.update_subscription(subscription_id, status="canceled")

    def delete_customer(self, customer_id: str) -> None:
        with self.lock:
            self._delete_customer(self._account_of(customer_id), self._find_customer(customer_id))

    def _delete_customer(self, account: Account, customer: dict) -> None:
        """As Stripe deletes a customer: its subscriptions are canceled at once, then the customer goes."""
        for subscription in customer["_subscriptions"]:
            if subscription["status"] not in ("canceled", "incomplete_expired"):
                self.update_subscription(subscription["id"], status="canceled")
        customer["deleted"] = True
        self._emit(account, "customer.deleted", _public(customer, expand=False))

    def add_product(self, name: str, *, lookup_key: str, features: tuple[str, ...] = (), unit_amount: int = 1000,
                    account: Account | None = None) -> str:
        """A product with a monthly price (`lookup_key`) and features attached (by lookup key); the price id."""
        account = account or self.account
        with self.lock:
            product = {"id": new_id("prod_"), "object": "product", "active": True, "name": name,
                       "livemode": False, "_features": self._feature_ids(account, features)}
            account.products[product["id"]] = product
            price = {"id": new_id("price_"), "object": "price", "active": True, "currency": "usd",
                     "livemode": False, "lookup_key": lookup_key, "product": product["id"], "type": "recurring",
                     "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                     "unit_amount": unit_amount, "unit_amount_decimal": str(unit_amount), "nickname": name,
                     "billing_scheme": "per_unit", "created": int(time.time()), "metadata": {},
                     "tax_behavior": "unspecified", "custom_unit_amount": None, "tiers_mode": None,
                     "transform_quantity": None}
            account.prices[price["id"]] = price
            return price["id"]

    def add_payment_link(self, price_id: str, *, after_completion_url: str, account: Account | None = None) -> str:
        """A Payment Link for a price: its URL. Paying creates a new customer with the email given, and a
        subscription, as a Stripe Payment Link does; then the browser goes to `after_completion_url`."""
        account = account or self.account
        with self.lock:
            link = {"id": new_id("plink_"), "object": "payment_link", "active": True, "price": price_id,
                    "after_completion": {"type": "redirect", "redirect": {"url": after_completion_url}}}
            link["url"] = f"{self.base_url}/b/{link['id']}"
            account.payment_links[link["id"]] = link
            return link["url"]

    def add_pricing_table(self, price_ids: list[str], *, success_url: str, account: Account | None = None) -> dict:
        """A pricing table as the Dashboard makes one: its id and the publishable key a page embeds it with."""
        account = account or self.account
        with self.lock:
            table = {"id": new_id("prctbl_"), "prices": list(price_ids), "success_url": success_url,
                     "publishable_key": f"pk_test_standin{secrets.token_hex(8)}"}
            account.pricing_tables[table["id"]] = table
            return {"id": table["id"], "publishable_key": table["publishable_key"],
                    "script_url": f"{self.base_url}/v3/pricing-table.js"}

    def _pricing_table(self, handler, method: str, table_id: str, form: dict) -> None:
        """What Stripe's pricing table does behind its element: list its prices (GET), and on a choice open a
        Checkout Session (POST) for the Customer Session's customer when the page gave one, else for a new one."""
        with self.lock:
            account = next((a for a in self.accounts.values() if table_id in a.pricing_tables), None)
            table = account.pricing_tables[table_id] if account else None
        if table is None:
            return _send_page(handler, 404, "<h1>Stripe stand-in: no such pricing table</h1>")
        if method == "GET":
            with self.lock:
                prices = [{"id": p, "name": account.prices[p]["nickname"],
                           "amount": account.prices[p]["unit_amount"]} for p in table["prices"]]
            return _send_json(handler, {"prices": prices})
        if form.get("price") not in table["prices"]:
            return _send_page(handler, 400, "<h1>Stripe stand-in: not a price of this pricing table</h1>")
        now = int(time.time())
        with self.lock:
            customer_session = account.customer_sessions.get(form.get("customer_session_client_secret") or "")
            if form.get("customer_session_client_secret") and (
                    customer_session is None or customer_session["expires_at"] < now
                    or not customer_session["components"]["pricing_table"]["enabled"]):
                return _send_page(handler, 400, "<h1>Stripe stand-in: the customer session is not valid</h1>")
            session_id = self._open_checkout_session(
                account, customer_id=customer_session["customer"] if customer_session else None,
                reference=_reference(form.get("client_reference_id")), success_url=table["success_url"],
                lines=[{"price": form["price"], "quantity": 1}])
        _redirect(handler, f"/c/pay/{session_id}")

    def update_price(self, price_id: str, **changes) -> None:
        """Change a price as the Dashboard does (a lookup key moved, a nickname) and send price.updated. Stripe
        answers every later read of a subscription with the price as it is now: so does the stand-in."""
        with self.lock:
            account = self._account_of_price(price_id)
            price = account.prices[price_id]
            previous = {name: price[name] for name in changes}
            price.update(changes)
            for customer in account.customers.values():
                for subscription in customer["_subscriptions"]:
                    for item in subscription["items"]["data"]:
                        if item["price"]["id"] == price_id:
                            item["price"] = dict(price)
            self._emit(account, "price.updated", price, previous)

    def set_product_features(self, price_id: str, features: tuple[str, ...]) -> None:
        """Attach other features to a price's product (by lookup key) and send product.updated; entitlements
        follow on the next read, as Stripe's do."""
        with self.lock:
            account = self._account_of_price(price_id)
            product = account.products[account.prices[price_id]["product"]]
            product["_features"] = self._feature_ids(account, features)
            self._emit(account, "product.updated", product)

    @staticmethod
    def _feature_ids(account: Account, lookup_keys: tuple[str, ...]) -> list[str]:
        """The ids of the account's features with these lookup keys, each made on first mention."""
        ids = []
        for key in lookup_keys:
            feature = next((f for f in account.features.values() if f["lookup_key"] == key), None)
            if feature is None:
                feature = {"id": new_id("feat_"), "object": "entitlements.feature", "active": True,
                           "livemode": False, "lookup_key": key, "metadata": {}, "name": key}
                account.features[feature["id"]] = feature
            ids.append(feature["id"])
        return ids

    def set_price_active(self, price_id: str, active: bool) -> None:
        with self.lock:
            self._account_of_price(price_id).prices[price_id]["active"] = active

    def _account_of_price(self, price_id: str) -> Account:
        return next(a for a in self.accounts.values() if price_id in a.prices)

    def add_webhook_endpoint(self, url: str, enabled_events: list[str], *, account: Account | None = None) -> dict:
        """What POST /v1/webhook_endpoints makes: the endpoint, with its signing secret (shown only now)."""
        with self.lock:
            return self._create_endpoint(account or self.account, url, enabled_events, "test")

    def roll_webhook_secret(self, endpoint_id: str, *, keep_old: bool = True) -> str:
        """As the Dashboard's "Roll secret": a new secret; the old one keeps signing too until it expires."""
        with self.lock:
            endpoint = self._endpoint(endpoint_id)
            fresh = "whsec_" + secrets.token_hex(24)
            endpoint["_signing_secrets"] = [fresh, *endpoint["_signing_secrets"][:1]] if keep_old else [fresh]
            return fresh

    def billing_records(self, customer_id: str) -> tuple[list[dict], list[dict]]:
        """The stand-in's own records of a customer: every subscription, and its active entitlements."""
        with self.lock:
            customer = self._find_customer(customer_id)
            account = self._account_of(customer_id)
            return ([json.loads(json.dumps(s)) for s in customer["_subscriptions"]],
                    self._active_entitlements(account, customer))

    def churn_subscriptions(self, customers: list[str], prices: list[str], *, rounds: int,
                            first_round: int = 0) -> None:
        """A burst of billing changes, the same every time: each round, each customer subscribes to a price in
        turn, every other subscription is set to cancel at period end, and every third is cancelled."""
        for round_ in range(first_round, first_round + rounds):
            for n, customer in enumerate(customers):
                subscription = self.add_subscription(customer, "active", price_id=prices[(n + round_) % len(prices)])
                if (n + round_) % 2:
                    self.update_subscription(subscription, cancel_at_period_end=True)
                if (n + round_) % 3 == 0:
                    self.cancel_subscription(subscription)

    def associate_event_bus(self, source: str, target) -> dict:
        """What creating an event bus for a partner event source does (the stack's StripeEventBus): the source
        becomes active, and from now on the destination's events reach `target` (the rule's Lambda target) when
        `eventbridge.deliver()` runs. The destination, as Stripe now shows it."""
        with self.lock:
            for account in self.accounts.values():
                for destination in account.event_destinations.values():
                    if stripe_eventbridge.source_name(destination) == source:
                        destination["amazon_eventbridge"]["aws_event_source_status"] = "active"
                        self.eventbridge.buses[source] = target
                        return json.loads(json.dumps(destination))
        raise KeyError(source)

    def events(self, account: Account | None = None) -> list[dict]:
        with self.lock:
            return list((account or self.account).events)

    # --- events -----------------------------------------------------------------------------------------------
    def _emit(self, account: Account, event_type: str, obj: dict, previous: dict | None = None) -> dict:
        data = {"object": json.loads(json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}))}
        if previous is not None:
            data["previous_attributes"] = json.loads(json.dumps(previous))
        event = {"id": new_id("evt_"), "object": "event", "api_version": EVENT_API_VERSION,
                 "created": int(time.time()), "data": data, "livemode": bool(obj.get("livemode")),
                 "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None}, "type": event_type}
        account.events.append(event)
        for destination in account.event_destinations.values():
            # Put on the partner event source; EventBridge drops what arrives while no bus is associated with it.
            if destination["status"] == "enabled" and destination["livemode"] == event["livemode"] and (
                    "*" in destination["enabled_events"] or event_type in destination["enabled_events"]) and \
                    destination["amazon_eventbridge"]["aws_event_source_status"] == "active":
                self.eventbridge.put(stripe_eventbridge.source_name(destination),
                                     stripe_eventbridge.envelope(event, destination))
        for endpoint in account.webhook_endpoints.values():
            if endpoint["status"] == "enabled" and endpoint["livemode"] == event["livemode"] and (
                    "*" in endpoint["enabled_events"] or event_type in endpoint["enabled_events"]):
                event["pending_webhooks"] += 1
                self.deliverer.enqueue(endpoint["id"], event)
        return event

    def _emit_entitlements_if_changed(self, account: Account, customer: dict, before: list[str]) -> None:
        if self._entitlement_keys(account, customer) != before:
            self._emit(account, "entitlements.active_entitlement_summary.updated", {
                "object": "entitlements.active_entitlement_summary", "customer": customer["id"],
                "entitlements": _list(self._active_entitlements(account, customer),
                                      "/v1/entitlements/active_entitlements"),
                "livemode": customer["livemode"]})

    def _active_entitlements(self, account: Account, customer: dict) -> list[dict]:
        features: dict[str, dict] = {}
        for subscription in customer["_subscriptions"]:
            if subscription["status"] not in ENTITLED_STATUSES:
                continue
            for item in subscription["items"]["data"]:
                product = account.products.get(item["price"]["product"])
                for feature_id in (product or {}).get("_features", []):
                    features.setdefault(feature_id, account.features[feature_id])
        return [{"id": "ent_" + f["id"].removeprefix("feat_"), "object": "entitlements.active_entitlement",
                 "feature": f["id"], "livemode": customer["livemode"], "lookup_key": f["lookup_key"]}
                for f in sorted(features.values(), key=lambda f: f["lookup_key"])]

    def _entitlement_keys(self, account: Account, customer: dict) -> list[str]:
        return [e["lookup_key"] for e in self._active_entitlements(account, customer)]

    def _endpoint(self, endpoint_id: str) -> dict | None:
        with self.lock:
            for account in self.accounts.values():
                if endpoint_id in account.webhook_endpoints:
                    return account.webhook_endpoints[endpoint_id]
        return None

    def _create_endpoint(self, account: Account, url: str, enabled_events: list[str], mode: str) -> dict:
        secret = "whsec_" + secrets.token_hex(24)
        endpoint = {"id": new_id("we_"), "object": "webhook_endpoint", "api_version": None, "application": None,
                    "created": int(time.time()), "description": None, "enabled_events": list(enabled_events),
                    "livemode": mode == "live", "metadata": {}, "status": "enabled", "url": url,
                    "_signing_secrets": [secret]}
        account.webhook_endpoints[endpoint["id"]] = endpoint
        return {**_public(endpoint, expand=False), "secret": secret}

    def _account_of(self, customer_id: str) -> Account:
        return next(a for a in self.accounts.values() if customer_id in a.customers)

    def _find_subscription(self, subscription_id: str) -> tuple[Account, dict, dict]:
        for account in self.accounts.values():
            for customer in account.customers.values():
                for subscription in customer["_subscriptions"]:
                    if subscription["id"] == subscription_id:
                        return account, customer, subscription
        raise KeyError(subscription_id)

    def customers(self, mode: str = "test", include_deleted: bool = False,
                  account: Account | None = None) -> list[dict]:
        with self.lock:
            return [dict(c) for c in (account or self.account).customers.values()
                    if c["livemode"] == (mode == "live") and (include_deleted or not c.get("deleted"))]

    def calls(self, method: str | None = None, path_prefix: str = "/v1/") -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix)
                    and (method is None or r["method"] == method)]

    def _find_customer(self, customer_id: str) -> dict:
        for account in self.accounts.values():
            if customer_id in account.customers:
                return account.customers[customer_id]
        raise KeyError(customer_id)

    # --- HTTP plumbing ------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode("utf-8") if length else ""
        if url.path.startswith("/p/session/"):
            if method == "POST":
                return self._portal_action(handler, url.path.split("/")[3], dict(parse_qsl(body)))
            return self._portal_page(handler, url.path.rsplit("/", 1)[-1])
        if url.path == "/v3/pricing-table.js":
            return _send_script(handler, PRICING_TABLE_SCRIPT.replace("__BASE__", self.base_url))
        if url.path.startswith("/pt/"):
            return self._pricing_table(handler, method, url.path.split("/")[2], dict(parse_qsl(body)))
        if url.path.startswith("/c/pay/"):
            return self._checkout_page(handler, method, url.path.split("/")[3], dict(parse_qsl(body)))
        if url.path.startswith("/b/"):
            return self._payment_link_page(handler, method, url.path.split("/")[2], dict(parse_qsl(url.query)),
                                           dict(parse_qsl(body)))
        if url.path.startswith("/v2/"):  # v2 APIs take JSON bodies
            try:
                params = json.loads(body) if method == "POST" and body else dict(parse_qsl(url.query))
            except ValueError:
                params = {"_unreadable": body[:80]}
        else:
            params = decode_stripe_form(parse_qsl(url.query if method != "POST" else body, keep_blank_values=True))
        record = {"method": method, "path": url.path, "mode": None, "replayed": False, "fault": None,
                  "params": params, "status": None, "body": None}
        key = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        idem_key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        with self.lock:
            account = next((a for a in self.accounts.values() if key in a.keys), None)
        # A key whose result is saved replays it, whatever else is going on at Stripe (no fault is consumed).
        saved = None
        if idem_key and account is not None:
            with self.lock:
                saved = self._idempotency.get((account.id, idem_key))
        fault = None if saved is not None and saved["done"] else self._take_fault(method, url.path)
        if fault is None and self._over_rate_limit():
            fault = Fault(status=429)
        if fault:
            record["fault"] = fault.status
            with self.lock:
                self.requests.append(record)
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop_connection:
                handler.close_connection = True
                handler.connection.shutdown(2)
                return None
            headers = {}
            if fault.should_retry is not None:
                headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
            if fault.status == 429:
                # Stripe's rate-limit answer: an invalid_request_error with code rate_limit (no own error type).
                payload = _error(fault.error_type or "invalid_request_error",
                                 "Request rate limit exceeded. Learn more about rate limits here "
                                 "https://docs.stripe.com/rate-limits.", code="rate_limit")
            else:
                payload = _error(fault.error_type or "api_error", "Something went wrong on Stripe's end.")
            if fault.status >= 500 and idem_key and account is not None:
                # It failed while executing: Stripe saves that answer under the key and replays it for 24 h.
                fingerprint = json.dumps([url.path, params], sort_keys=True)
                with self.lock:
                    self._idempotency.setdefault((account.id, idem_key), {
                        "fingerprint": fingerprint, "done": True, "status": fault.status, "body": payload})
            if fault.non_json:
                return self._send_html(handler, record, fault.status)
            return self._send(handler, record, fault.status, payload, headers, trickle=fault.trickle)

        with self.lock:
            self.requests.append(record)
            permissions = account.keys[key] if account else None
        if permissions is None:
            masked = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "****"
            return self._send(handler, record, 401, _error("invalid_request_error",
                                                           f"Invalid API Key provided: {masked}"))
        mode = "live" if "_live_" in key else "test"
        record["mode"] = mode

        if idem_key:
            fingerprint = json.dumps([url.path, params], sort_keys=True)
            slot = (account.id, idem_key)  # keys are per account, not per API key
            with self.lock:
                previous = self._idempotency.get(slot)
                if previous is None:
                    self._idempotency[slot] = {"fingerprint": fingerprint, "done": False}
            if previous is not None:
                if previous["fingerprint"] != fingerprint:
                    return self._send(handler, record, 400, _error(
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{idem_key}' if you meant to execute a different "
                        "request."))
                if not previous["done"]:
                    return self._send(handler, record, 409, _error(
                        "invalid_request_error",
                        "There is currently another in-progress request using this Idempotent Key (that probably "
                        "means you submitted twice, and the other request is still going through). Please try "
                        "again later.", code="idempotency_key_in_use"))
                record["replayed"] = True
                return self._send(handler, record, previous["status"], previous["body"],
                                  {"Idempotent-Replayed": "true", "Idempotency-Key": idem_key})
            if self.latency:
                time.sleep(self.latency)  # executing: the key is held meanwhile
            status, payload = self._route(account, key, method, url.path, params, mode, permissions)
            with self.lock:
                if _saved(status, payload):
                    self._idempotency[slot].update(done=True, status=status, body=payload)
                else:
                    del self._idempotency[slot]  # never started executing: nothing is saved
            return self._send(handler, record, status, payload, {"Idempotency-Key": idem_key})
        if self.latency:
            time.sleep(self.latency)
        status, payload = self._route(account, key, method, url.path, params, mode, permissions)
        return self._send(handler, record, status, payload)

    def _over_rate_limit(self) -> bool:
        if self.rate_limit is None:
            return False
        with self.lock:
            now = time.monotonic()
            self._recent = [t for t in self._recent if now - t < 1.0]
            if len(self._recent) >= self.rate_limit:
                self.rate_limited += 1
                return True
            self._recent.append(now)
            return False

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _send(self, handler, record: dict, status: int, payload: dict, headers: dict | None = None, *,
              trickle: float = 0.0) -> None:
        record["status"], record["body"] = status, payload
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Request-Id", new_id("req_"))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if not trickle:
            handler.wfile.write(body)
            return
        try:
            for index in range(len(body)):
                handler.wfile.write(body[index:index + 1])
                handler.wfile.flush()
                time.sleep(trickle)
        except OSError:
            pass  # the client gave up waiting, as it should

    def _send_html(self, handler, record: dict, status: int) -> None:
        record["status"], record["body"] = status, None
        body = b"<html><body><h1>Forbidden</h1><p>Request blocked.</p></body></html>"
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    # --- the API --------------------------------------------------------------------------------------------
    def _route(self, account: Account, key: str, method: str, path: str, params: dict, mode: str,
               permissions: frozenset):
        parts = path.strip("/").split("/")
        if parts[:3] == ["v2", "core", "event_destinations"]:
            needs = "event_destinations_read" if method == "GET" else "event_destinations_write"
            if not self._granted(needs, permissions):
                return stripe_eventbridge.v2_error(
                    "insufficient_permissions",
                    f"Having the '{needs}' permission would allow this request to continue.", status=403)
            with self.lock:
                return self._event_destinations(account, method, parts[3:], params, mode)
        if parts[1:2] == ["account"] and key.startswith("rk_"):
            masked = key[:8] + "*" * 20 + key[-6:]
            return 403, _error("invalid_request_error",
                               f"The provided key '{masked}' does not have the required permissions for this endpoint "
                               f"on account '{account.id}'. This is a restricted API key, but the required "
                               f"permissions are not available for use by restricted keys.")
        needs = {
            ("GET", "account"): "secret_key",
            ("GET", "customers"): "customers_read",
            ("POST", "customers"): "customers_write",
            ("DELETE", "customers"): "customers_write",
            ("POST", "billing_portal"): "portal_write",
            ("GET", "billing_portal"): "portal_read",
            ("GET", "subscriptions"): "subscriptions_read",
            ("POST", "subscriptions"): "subscriptions_write",
            ("DELETE", "subscriptions"): "subscriptions_write",
            ("GET", "entitlements"): "entitlements_read",
            ("GET", "webhook_endpoints"): "webhook_endpoints_read",
            ("POST", "webhook_endpoints"): "webhook_endpoints_write",
            ("DELETE", "webhook_endpoints"): "webhook_endpoints_write",
            ("GET", "prices"): "prices_read",
            ("GET", "events"): "events_read",
            ("GET", "checkout"): "checkout_sessions_read",
            ("POST", "checkout"): "checkout_sessions_write",
            ("POST", "customer_sessions"): "customer_sessions_write",
        }.get((method, parts[1] if len(parts) > 1 else ""))
        expands_subscriptions = bool({"data.subscriptions", "customer.subscriptions"} & set(params.get("expand") or []))
        if expands_subscriptions and not self._granted("subscriptions_read", permissions):
            return 403, _error("invalid_request_error", "The provided key does not have the required permissions "
                                                        "to expand subscriptions.")
        if needs is None:
            return 404, _error("invalid_request_error", f"Unrecognized request URL ({method}: {path}).")
        if not self._granted(needs, permissions):
            return 403, _error("invalid_request_error",
                               f"The provided key does not have the required permissions for this endpoint. "
                               f"Having the '{needs}' permission would allow this request to continue.")
        with self.lock:
            if parts[1] == "account" and len(parts) == 2:
                return 200, _account(account)
            if parts[1] == "customers":
                return self._customers(account, method, parts[2:], params, mode)
            if parts[1] == "subscriptions":
                return self._subscriptions(account, method, parts[2:], params, mode)
            if parts[1:3] == ["entitlements", "active_entitlements"] and len(parts) == 3:
                customer = account.customers.get(params.get("customer", ""))
                if customer is None or customer["livemode"] != (mode == "live"):
                    return 400, _error("invalid_request_error", f"No such customer: '{params.get('customer')}'",
                                       code="resource_missing", param="customer")
                return _page(self._active_entitlements(account, customer), params,
                             "/v1/entitlements/active_entitlements")
            if parts[1] == "webhook_endpoints":
                return self._webhook_endpoints(account, method, parts[2:], params, mode)
            if parts[1] == "events" and method == "GET" and len(parts) == 2:
                return self._list_events(account, params, mode)
            if parts[1] == "prices" and method == "GET" and len(parts) == 2:
                return self._list_prices(account, params, mode)
            if parts[1:3] == ["checkout", "sessions"]:
                if method == "POST" and len(parts) == 3:
                    return self._create_checkout_session(account, params, mode)
                if method == "GET" and len(parts) == 4:
                    found = account.checkout_sessions.get(parts[3])
                    if found is None or found["livemode"] != (mode == "live"):
                        return 404, _error("invalid_request_error", f"No such checkout.session: '{parts[3]}'",
                                           code="resource_missing", param="session")
                    return 200, _public(found, expand=False)
            if parts[1] == "customer_sessions" and method == "POST" and len(parts) == 2:
                return self._create_customer_session(account, params, mode)
            if parts[1:3] == ["billing_portal", "sessions"] and method == "POST":
                return self._create_session(account, params, mode)
            if parts[1:3] == ["billing_portal", "configurations"] and method == "GET":
                configs = [c for c in account.configurations.values() if c["livemode"] == (mode == "live")]
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

    def _event_destinations(self, account: Account, method: str, rest: list[str], params: dict, mode: str):
        """POST/GET /v2/core/event_destinations[/:id[/enable|/disable]], DELETE /:id (amazon_eventbridge only)."""
        if "_unreadable" in params:
            return stripe_eventbridge.v2_error("invalid_json", "The request body is not valid JSON.")
        if not rest:
            if method == "POST":
                problem = stripe_eventbridge.validated(params, creating=True)
                if problem:
                    return problem
                destination = stripe_eventbridge.new_destination(params, livemode=mode == "live",
                                                                 api_version=EVENT_API_VERSION)
                account.event_destinations[destination["id"]] = destination
                return 200, json.loads(json.dumps(destination))
            if method == "GET":
                found = [d for d in account.event_destinations.values() if d["livemode"] == (mode == "live")]
                return stripe_eventbridge.v2_page(found, params, "/v2/core/event_destinations")
        destination = account.event_destinations.get(rest[0])
        if destination is None or destination["livemode"] != (mode == "live"):
            return stripe_eventbridge.v2_error("resource_missing", f"No such event destination: '{rest[0]}'",
                                               status=404)
        if len(rest) == 2 and method == "POST" and rest[1] in ("enable", "disable"):
            destination["status"] = "enabled" if rest[1] == "enable" else "disabled"
            destination["status_details"] = None if rest[1] == "enable" else {"disabled": {"reason": "user"}}
        elif len(rest) == 1 and method == "POST":
            problem = stripe_eventbridge.validated(params, creating=False)
            if problem:
                return problem
            destination.update({k: params[k] for k in ("name", "description", "enabled_events", "metadata")
                                if k in params})
        elif len(rest) == 1 and method == "DELETE":
            del account.event_destinations[rest[0]]
            return 200, {"id": rest[0], "object": "v2.core.event_destination"}
        elif not (len(rest) == 1 and method == "GET"):
            return stripe_eventbridge.v2_error("not_found", f"Unrecognized request URL ({method}).", status=404)
        if method == "POST":
            destination["updated"] = stripe_eventbridge.iso_now()
        return 200, json.loads(json.dumps(destination))

    @staticmethod
    def _granted(needs: str, permissions: frozenset) -> bool:
        return needs == "secret_key" or needs in permissions or needs.replace("_read", "_write") in permissions

    def _new_customer(self, account: Account, mode: str, params: dict, *, created: int | None = None,
                      customer_id: str | None = None) -> dict:
        self._sequence += 1
        customer = {
            "id": customer_id or new_id("cus_"), "object": "customer", "address": None, "balance": 0,
            "created": int(time.time()) if created is None else created,  # whole Unix seconds, as Stripe
            "currency": None, "default_source": None, "delinquent": False, "description": None, "discount": None,
            "email": params.get("email") or None, "invoice_prefix": new_id("")[:8].upper(),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                 "rendering_options": None},
            "livemode": mode == "live", "metadata": dict(params.get("metadata") or {}),
            "name": params.get("name") or None, "next_invoice_sequence": 1, "phone": None,
            "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
            "_subscriptions": [], "_sequence": self._sequence,
        }
        account.customers[customer["id"]] = customer
        return customer

    @staticmethod
    def _too_long(params: dict) -> tuple[int, dict] | None:
        for name, limit in FIELD_LIMITS.items():
            value = params.get(name)
            if isinstance(value, str) and len(value) > limit:
                return 400, _error("invalid_request_error",
                                   f"Invalid string: {value[:20]}...; must be at most {limit} characters",
                                   code="parameter_invalid_string", param=name)
        return None

    def _customers(self, account: Account, method: str, rest: list[str], params: dict, mode: str):
        if not rest:
            if method == "POST":
                return self._too_long(params) or (
                    200, _public(self._new_customer(account, mode, params), expand=False))
            if len(params.get("email") or "") > FIELD_LIMITS["email"]:
                return 400, _error("invalid_request_error",
                                   f"Invalid string: {params['email'][:20]}...; must be at most "
                                   f"{FIELD_LIMITS['email']} characters", code="parameter_invalid_string",
                                   param="email")
            limit = int(params.get("limit", 10))
            expand = "data.subscriptions" in (params.get("expand") or [])
            found = [c for c in account.customers.values()
                     if c["livemode"] == (mode == "live") and not c.get("deleted")
                     and ("email" not in params or c["email"] == params["email"])]
            # Newest first, as Stripe lists; customers created in the same second come in no promised order.
            found.sort(key=lambda c: (c["created"], c["_sequence"]), reverse=True)
            return 200, _list([_public(c, expand) for c in found[:limit]], "/v1/customers")
        customer = account.customers.get(rest[0])
        if customer is None or customer["livemode"] != (mode == "live"):
            return 404, _error("invalid_request_error", f"No such customer: '{rest[0]}'",
                               code="resource_missing", param="id")
        if customer.get("deleted"):
            if method == "GET":
                return 200, {"id": customer["id"], "object": "customer", "deleted": True}
            return 404, _error("invalid_request_error", f"No such customer: '{rest[0]}'",
                               code="resource_missing", param="id")
        if method == "DELETE":
            self._delete_customer(account, customer)
            return 200, {"id": customer["id"], "object": "customer", "deleted": True}
        if method == "POST":
            refused = self._too_long(params)
            if refused:
                return refused
            for name in ("email", "name"):
                if name in params:
                    customer[name] = params[name] or None
            for meta_key, value in (params.get("metadata") or {}).items():
                if value == "":
                    customer["metadata"].pop(meta_key, None)
                else:
                    customer["metadata"][meta_key] = value
        return 200, _public(customer, expand=False)

    def _subscriptions(self, account: Account, method: str, rest: list[str], params: dict, mode: str):
        if not rest:
            if method != "GET":
                return 404, _error("invalid_request_error", "Unrecognized request URL.")
            customer = account.customers.get(params.get("customer", ""))
            wanted = params.get("status")
            subs = [s for s in (customer["_subscriptions"] if customer else [])
                    if (wanted == "all") or (s["status"] == wanted if wanted else s["status"] != "canceled")]
            # Newest first; created in the same second, the later one first (as Stripe's cursor order is stable).
            subs = sorted(subs, key=lambda s: (s["created"], s["_sequence"]), reverse=True)
            return _page(subs, params, "/v1/subscriptions")
        try:
            owner_account, customer, subscription = self._find_subscription(rest[0])
        except KeyError:
            owner_account = None
        if owner_account is not account or subscription["livemode"] != (mode == "live"):
            return 404, _error("invalid_request_error", f"No such subscription: '{rest[0]}'",
                               code="resource_missing", param="id")
        if method == "DELETE":
            if subscription["status"] == "canceled":
                return 400, _error("invalid_request_error", "This subscription has already been canceled.")
            self.cancel_subscription(subscription["id"])
        elif method == "POST":
            changes = {}
            if "cancel_at_period_end" in params:
                changes["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
            if changes:
                self.update_subscription(subscription["id"], **changes)
        return 200, {k: v for k, v in subscription.items() if not k.startswith("_")}

    def _webhook_endpoints(self, account: Account, method: str, rest: list[str], params: dict, mode: str):
        endpoints = {k: e for k, e in account.webhook_endpoints.items() if e["livemode"] == (mode == "live")}
        if not rest:
            if method == "GET":
                found = sorted(endpoints.values(), key=lambda e: e["created"], reverse=True)
                return 200, _list([_public(e, False) for e in found[: int(params.get("limit", 10))]],
                                  "/v1/webhook_endpoints")
            problem = self._endpoint_problem(params, creating=True, mode=mode)
            if problem:
                return 400, problem
            if len(endpoints) >= MAX_WEBHOOK_ENDPOINTS:
                return 400, _error("invalid_request_error", f"You have reached the maximum of "
                                   f"{MAX_WEBHOOK_ENDPOINTS} {mode} webhook endpoints.")
            return 200, self._create_endpoint(account, params["url"], params["enabled_events"], mode)
        endpoint = endpoints.get(rest[0])
        if endpoint is None:
            return 404, _error("invalid_request_error", f"No such webhook endpoint: '{rest[0]}'",
                               code="resource_missing", param="id")
        if method == "DELETE":
            del account.webhook_endpoints[endpoint["id"]]
            return 200, {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
        if method == "POST":
            problem = self._endpoint_problem(params, creating=False, mode=mode)
            if problem:
                return 400, problem
            if "url" in params:
                endpoint["url"] = params["url"]
            if "enabled_events" in params:
                endpoint["enabled_events"] = list(params["enabled_events"])
            if "disabled" in params:
                endpoint["status"] = "disabled" if params["disabled"] == "true" else "enabled"
        return 200, _public(endpoint, False)

    @staticmethod
    def _endpoint_problem(params: dict, *, creating: bool, mode: str) -> dict | None:
        if creating and not params.get("url"):
            return _error("invalid_request_error", "Missing required param: url.", code="parameter_missing",
                          param="url")
        # Live-mode endpoints must use HTTPS; test mode also takes http (the stand-in delivers to loopback).
        if "url" in params and urlsplit(params["url"]).scheme not in (("https",) if mode == "live" else
                                                                      ("https", "http")):
            return _error("invalid_request_error", "Invalid URL: must be an https URL in live mode.",
                          code="url_invalid", param="url")
        events = params.get("enabled_events")
        if creating and not events:
            return _error("invalid_request_error", "Missing required param: enabled_events.",
                          code="parameter_missing", param="enabled_events")
        if events is not None:
            if not isinstance(events, list):
                return _error("invalid_request_error", "Invalid array", code="parameter_invalid_array",
                              param="enabled_events")
            unknown = [e for e in events if e != "*" and e not in EVENT_TYPES]
            if unknown:
                return _error("invalid_request_error", f"Invalid enabled_events: {unknown[0]!r} is not a valid "
                              "event type.", code="parameter_invalid_string", param="enabled_events")
        return None

    def _create_session(self, account: Account, params: dict, mode: str):
        customer = account.customers.get(params.get("customer", ""))
        if customer is None or customer.get("deleted") or customer["livemode"] != (mode == "live"):
            return 400, _error("invalid_request_error", f"No such customer: '{params.get('customer')}'",
                               code="resource_missing", param="customer")
        if params.get("locale") and params["locale"] not in PORTAL_LOCALES:
            return 400, _error("invalid_request_error", "Invalid locale", code="parameter_invalid_string",
                               param="locale")
        config_id = params.get("configuration")
        if config_id:
            if config_id not in account.configurations:
                return 400, _error("invalid_request_error", f"No such configuration: '{config_id}'",
                                   code="resource_missing", param="configuration")
            if not account.configurations[config_id]["active"]:
                return 400, _error("invalid_request_error",
                                   f"The configuration '{config_id}' is not active. Activate it or use another "
                                   "configuration.", param="configuration")
        else:
            config_id = account.default_configuration[mode]
            if config_id is None:
                return 400, _error(
                    "invalid_request_error",
                    f"No configuration provided and your {mode} mode default configuration has not been created. "
                    f"Provide a configuration or create your default by saving your customer portal settings in "
                    f"{mode} mode at https://dashboard.stripe.com/{mode}/settings/billing/portal.")
        flow = params.get("flow_data")
        if flow:
            problem = self._flow_problem(flow, customer, account.configurations[config_id])
            if problem:
                return 400, _error("invalid_request_error", problem, param="flow_data")
        session_id = new_id("bps_")
        session = {
            "id": session_id, "object": "billing_portal.session", "customer": customer["id"],
            "configuration": config_id, "livemode": mode == "live", "locale": params.get("locale"),
            "return_url": params.get("return_url"), "flow": params.get("flow_data"),
            "after_expiration": params.get("after_expiration"),
            "created": int(time.time()), "url": f"{self.base_url}/p/session/{session_id}",
        }
        account.sessions[session_id] = session
        return 200, _public_session(session)

    def _list_events(self, account: Account, params: dict, mode: str):
        """GET /v1/events: newest first, filtered by `types` (at most 20) and `created` (gt, gte, lt, lte)."""
        types = params.get("types")
        if types is not None and (not isinstance(types, list) or len(types) > 20):
            return 400, _error("invalid_request_error", "Invalid array: types takes at most 20 event types",
                               code="parameter_invalid_array", param="types")
        created = params.get("created") if isinstance(params.get("created"), dict) else {}
        bounds = {op: int(value) for op, value in created.items() if op in ("gt", "gte", "lt", "lte")}
        found = [e for e in account.events if e["livemode"] == (mode == "live")
                 and (types is None or e["type"] in types)
                 and ("gt" not in bounds or e["created"] > bounds["gt"])
                 and ("gte" not in bounds or e["created"] >= bounds["gte"])
                 and ("lt" not in bounds or e["created"] < bounds["lt"])
                 and ("lte" not in bounds or e["created"] <= bounds["lte"])]
        return _page(list(reversed(found)), params, "/v1/events")

    def _list_prices(self, account: Account, params: dict, mode: str):
        """GET /v1/prices: filtered by `lookup_keys` (at most 10, as Stripe allows), `active`, `type`."""
        keys = params.get("lookup_keys")
        if keys is not None and (not isinstance(keys, list) or len(keys) > 10):
            return 400, _error("invalid_request_error", "Invalid array: lookup_keys takes at most 10 keys",
                               code="parameter_invalid_array", param="lookup_keys")
        limit = int(params.get("limit", 10))
        if not 1 <= limit <= 100:
            return 400, _error("invalid_request_error", "Invalid integer: limit must be between 1 and 100",
                               code="parameter_invalid_integer", param="limit")
        found = [p for p in account.prices.values() if p["livemode"] == (mode == "live")
                 and (keys is None or p["lookup_key"] in keys)
                 and ("active" not in params or p["active"] == (params["active"] == "true"))
                 and ("type" not in params or p["type"] == params["type"])]
        return 200, _list([dict(p) for p in found[:limit]], "/v1/prices")

    def _create_checkout_session(self, account: Account, params: dict, mode: str):
        """POST /v1/checkout/sessions, held to Stripe's rules for what the service sends (subscription and payment
        modes, an existing customer, prices by id, success and cancel URLs, client_reference_id's limit)."""
        session_mode = params.get("mode")
        if session_mode not in ("payment", "setup", "subscription"):
            return 400, _error("invalid_request_error", "Missing required param: mode.", code="parameter_missing",
                               param="mode")
        if params.get("customer") and params.get("customer_email"):
            return 400, _error("invalid_request_error", "You may only specify one of these parameters: customer, "
                               "customer_email.", param="customer_email")
        customer = None
        if params.get("customer"):
            customer = account.customers.get(params["customer"])
            if customer is None or customer.get("deleted") or customer["livemode"] != (mode == "live"):
                return 400, _error("invalid_request_error", f"No such customer: '{params['customer']}'",
                                   code="resource_missing", param="customer")
        reference = params.get("client_reference_id")
        if reference is not None and not 1 <= len(reference) <= 200:
            return 400, _error("invalid_request_error", "Invalid string: client_reference_id must be at most 200 "
                               "characters", code="parameter_invalid_string", param="client_reference_id")
        if not params.get("success_url") and params.get("ui_mode", "hosted") == "hosted":
            return 400, _error("invalid_request_error", "Missing required param: success_url.",
                               code="parameter_missing", param="success_url")
        for name in ("success_url", "cancel_url"):
            if params.get(name) and urlsplit(params[name]).scheme not in ("https", "http"):
                return 400, _error("invalid_request_error", f"Not a valid URL: {name}", code="url_invalid",
                                   param=name)
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            return 400, _error("invalid_request_error", "Missing required param: line_items.",
                               code="parameter_missing", param="line_items")
        lines = []
        for index, item in enumerate(items):
            price = account.prices.get((item or {}).get("price", ""))
            if price is None or price["livemode"] != (mode == "live"):
                return 400, _error("invalid_request_error", f"No such price: '{(item or {}).get('price')}'",
                                   code="resource_missing", param=f"line_items[{index}][price]")
            if not price["active"]:
                return 400, _error("invalid_request_error", "The price specified is inactive. This field only "
                                   "accepts active prices.", param=f"line_items[{index}][price]")
            lines.append({"price": price["id"], "quantity": int(item.get("quantity") or 1)})
        if session_mode == "subscription" and not any(account.prices[line["price"]]["type"] == "recurring"
                                                      for line in lines):
            return 400, _error("invalid_request_error", "You must provide at least one recurring price in "
                               "`subscription` mode when using prices.", param="line_items")
        session_id = self._open_checkout_session(
            account, customer_id=customer["id"] if customer else None, reference=reference,
            success_url=params.get("success_url"), cancel_url=params.get("cancel_url"), lines=lines,
            mode=session_mode, livemode=mode == "live", customer_email=params.get("customer_email"),
            metadata=dict(params.get("metadata") or {}),
            subscription_metadata=dict((params.get("subscription_data") or {}).get("metadata") or {}))
        session = account.checkout_sessions[session_id]
        answer = _public(session, expand=False)
        expand = params.get("expand") or []
        if customer is not None and ("customer" in expand or "customer.subscriptions" in expand):
            answer["customer"] = _public(customer, expand="customer.subscriptions" in expand)
        return 200, answer

    def _open_checkout_session(self, account: Account, *, customer_id: str | None, reference: str | None,
                               success_url: str | None, lines: list[dict], cancel_url: str | None = None,
                               mode: str = "subscription", livemode: bool = False, customer_email: str | None = None,
                               metadata: dict | None = None, subscription_metadata: dict | None = None,
                               payment_link: str | None = None) -> str:
        """An open Checkout Session, as the API, a Payment Link or a pricing table makes one: its id."""
        session_id = new_id("cs_live_" if livemode else "cs_test_")
        now = int(time.time())
        account.checkout_sessions[session_id] = {
            "id": session_id, "object": "checkout.session", "mode": mode, "status": "open",
            "payment_status": "unpaid", "customer": customer_id, "customer_email": customer_email,
            "client_reference_id": reference, "success_url": success_url, "cancel_url": cancel_url,
            "metadata": dict(metadata or {}), "livemode": livemode, "created": now, "expires_at": now + 24 * 3600,
            "subscription": None, "payment_link": payment_link, "customer_details": None,
            "url": f"{self.base_url}/c/pay/{session_id}",
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "custom_fields": [], "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                                                 "terms_of_service_acceptance": None},
            "payment_method_types": ["card"], "shipping_options": [],
            "_lines": lines, "_subscription_metadata": dict(subscription_metadata or {}),
        }
        return session_id

    def _create_customer_session(self, account: Account, params: dict, mode: str):
        """POST /v1/customer_sessions: a client secret for the pricing table or buy button, for one customer."""
        customer = account.customers.get(params.get("customer") or "")
        if not params.get("customer"):
            return 400, _error("invalid_request_error", "Missing required param: customer.",
                               code="parameter_missing", param="customer")
        if customer is None or customer.get("deleted") or customer["livemode"] != (mode == "live"):
            return 400, _error("invalid_request_error", f"No such customer: '{params['customer']}'",
                               code="resource_missing", param="customer")
        components = params.get("components")
        known = ("buy_button", "pricing_table", "payment_element", "customer_sheet", "mobile_payment_element",
                 "active_entitlements", "customer_portal")
        if not isinstance(components, dict) or not any(
                (components.get(name) or {}).get("enabled") == "true" for name in known):
            return 400, _error("invalid_request_error", "You must enable at least one component.",
                               param="components")
        unknown = [name for name in components if name not in known]
        if unknown:
            return 400, _error("invalid_request_error", f"Received unknown parameter: components[{unknown[0]}]",
                               code="parameter_unknown", param=f"components[{unknown[0]}]")
        now = int(time.time())
        session = {"object": "customer_session", "client_secret": "cuss_secret_" + secrets.token_urlsafe(24),
                   "customer": customer["id"], "created": now, "expires_at": now + 30 * 60,
                   "livemode": mode == "live",
                   "components": {name: {"enabled": (components.get(name) or {}).get("enabled") == "true"}
                                  for name in known}}
        account.customer_sessions[session["client_secret"]] = session
        return 200, session

    def complete_checkout(self, session_id: str, *, email: str | None = None) -> str:
        """The buyer pays on the Checkout page: the subscription is made for the session's customer (or a new
        customer with `email`), the session completes and checkout.session.completed is sent. Returns where the
        browser goes next (success_url, with {CHECKOUT_SESSION_ID} filled in)."""
        with self.lock:
            account = next(a for a in self.accounts.values() if session_id in a.checkout_sessions)
            session = account.checkout_sessions[session_id]
            if session["status"] != "open":
                raise ValueError(f"checkout session {session_id} is {session['status']}, not open")
            customer = account.customers.get(session["customer"] or "")
            if customer is None:
                mode = "live" if session["livemode"] else "test"
                customer = self._new_customer(account, mode, {"email": email or session["customer_email"]})
                self._emit(account, "customer.created", _public(customer, expand=False))
                session["customer"] = customer["id"]
            elif customer.get("deleted"):
                raise ValueError(f"the customer of checkout session {session_id} was deleted")
            price_id = session["_lines"][0]["price"]
            subscription_id = self.add_subscription(customer["id"], "active", price_id=price_id,
                                                    metadata=session["_subscription_metadata"])
            session.update(status="complete", payment_status="paid", subscription=subscription_id,
                           customer_details={"email": email or customer.get("email"), "name": None})
            self._emit(account, "checkout.session.completed", _public(session, expand=False))
            return (session["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", session_id)

    @staticmethod
    def _flow_problem(flow: dict, customer: dict, configuration: dict) -> str | None:
        flow_type = flow.get("type")
        if flow_type not in FLOW_FEATURES:
            return f"Invalid flow_data[type]: {flow_type}"
        if not configuration["features"][FLOW_FEATURES[flow_type]]["enabled"]:
            return (f"You cannot create a `{flow_type}` portal session because the "
                    f"`features[{FLOW_FEATURES[flow_type]}][enabled]` setting of the configuration is false.")
        if flow_type in SUBSCRIPTION_FLOW_TYPES:
            subscription = (flow.get(flow_type) or {}).get("subscription")
            owned = {s["id"] for s in customer["_subscriptions"] if s["status"] != "canceled"}
            if subscription not in owned:
                return f"No such subscription for this customer: '{subscription}'"
        after = flow.get("after_completion") or {}
        if after.get("type") == "redirect" and not (after.get("redirect") or {}).get("return_url"):
            return "flow_data[after_completion][redirect][return_url] is required"
        return None

    def _portal_action(self, handler, session_id: str, form: dict) -> None:
        """The portal's "Cancel plan", as the configuration's cancel mode says (at the period's end by default)."""
        with self.lock:
            session = next((a.sessions[session_id] for a in self.accounts.values() if session_id in a.sessions), None)
            customer = self._find_customer(session["customer"]) if session else None
            owned = [s for s in (customer or {}).get("_subscriptions", []) if s["id"] == form.get("subscription")]
            if session is None or not owned:
                return _send_page(handler, 404, "<h1>Stripe stand-in: no such subscription in this session</h1>")
            account = self._account_of(customer["id"])
            mode = account.configurations[session["configuration"]]["features"]["subscription_cancel"]["mode"]
            if mode == "immediately":
                self.cancel_subscription(owned[0]["id"])
            else:
                self.update_subscription(owned[0]["id"], cancel_at_period_end=True)
        _redirect(handler, f"/p/session/{session_id}")

    def _payment_link_page(self, handler, method: str, link_id: str, query: dict, form: dict) -> None:
        with self.lock:
            account = next((a for a in self.accounts.values() if link_id in a.payment_links), None)
            link = account.payment_links[link_id] if account else None
            price = account.prices[link["price"]] if link else None
        if link is None:
            return _send_page(handler, 404, "<h1>Stripe stand-in: no such Payment Link</h1>")
        if method == "POST":
            email = (form.get("email") or "").strip()
            if "@" not in email or len(email) > FIELD_LIMITS["email"]:
                return _send_page(handler, 400, "<h1>Enter a valid email address</h1>")
            with self.lock:
                # A Payment Link makes a new customer for each purchase (it never reuses one by email), through a
                # Checkout Session of its own, which carries the link's client_reference_id.
                session_id = self._open_checkout_session(
                    account, customer_id=None, reference=_reference(form.get("client_reference_id")),
                    success_url=link["after_completion"]["redirect"]["url"],
                    lines=[{"price": price["id"], "quantity": 1}], payment_link=link["id"])
            return _redirect(handler, self.complete_checkout(session_id, email=email))
        email = html.escape(query.get("prefilled_email", ""))
        # Stripe drops a client_reference_id that is not 1-200 letters, digits, dashes or underscores.
        reference = html.escape(_reference(query.get("client_reference_id")) or "")
        _send_page(handler, 200, (
            "<!doctype html><meta charset=utf-8><title>Stripe stand-in checkout</title>"
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem}"
            ".note{background:#fff4d6;padding:.5rem}</style>"
            "<p class=note><strong>Stripe stand-in</strong> (local development, not Stripe): a Payment Link "
            "checkout. No card is needed.</p>"
            f"<h1>Subscribe to {html.escape(price['nickname'] or price['lookup_key'] or 'this plan')}</h1>"
            f"<p>${price['unit_amount'] / 100:.2f} per month</p>"
            f"<form method=post><label>Email <input id=email name=email type=email required value=\"{email}\">"
            f"</label><input type=hidden name=client_reference_id value=\"{reference}\">"
            " <button id=pay>Subscribe</button></form>"))

    def _checkout_page(self, handler, method: str, session_id: str, form: dict) -> None:
        """Stripe Checkout's hosted page for a session: "Subscribe" pays (no card needed here)."""
        with self.lock:
            account = next((a for a in self.accounts.values() if session_id in a.checkout_sessions), None)
            session = account.checkout_sessions[session_id] if account else None
        if session is None:
            return _send_page(handler, 404, "<h1>Stripe stand-in: no such Checkout Session</h1>")
        if session["status"] != "open":
            return _send_page(handler, 410, "<h1>Stripe stand-in: this checkout is already complete</h1>")
        if method == "POST":
            try:
                target = self.complete_checkout(session_id)
            except ValueError as exc:
                return _send_page(handler, 409, f"<h1>Stripe stand-in: {html.escape(str(exc))}</h1>")
            return _redirect(handler, target)
        with self.lock:
            price = account.prices[session["_lines"][0]["price"]]
            customer = account.customers.get(session["customer"] or "") or {}
        back = html.escape(session["cancel_url"] or "")
        _send_page(handler, 200, (
            "<!doctype html><meta charset=utf-8><title>Stripe stand-in checkout</title>"
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem}"
            ".note{background:#fff4d6;padding:.5rem}</style>"
            "<p class=note><strong>Stripe stand-in</strong> (local development, not Stripe): Stripe Checkout for a "
            "known customer. No card is needed.</p>"
            f"<h1>Subscribe to {html.escape(price['nickname'] or price['lookup_key'] or 'this plan')}</h1>"
            f"<p>${price['unit_amount'] / 100:.2f} per month</p>"
            f"<p>Customer <code id=customer>{html.escape(customer.get('id', ''))}</code></p>"
            "<form method=post><button id=pay>Subscribe</button></form>"
            + (f"<p><a id=cancel href=\"{back}\">Back</a></p>" if back else "")))

    def _portal_page(self, handler, session_id: str) -> None:
        with self.lock:
            session = next((a.sessions[session_id] for a in self.accounts.values() if session_id in a.sessions), None)
            customer = self._find_customer(session["customer"]) if session else None
        if session is None:
            status, page = 404, "<h1>Stripe stand-in: no such portal session</h1>"
        else:
            status = 200
            back = html.escape(session["return_url"] or "")
            subscriptions = [s for s in customer["_subscriptions"] if s["status"] != "canceled"]
            rows = "".join(
                f"<li><code>{html.escape(s['id'])}</code>: <span class=status>{html.escape(s['status'])}</span>"
                + (" (cancels at the end of the period)" if s["cancel_at_period_end"] else
                   f"<form method=post action=\"/p/session/{html.escape(session_id)}/cancel\" style=display:inline>"
                   f"<input type=hidden name=subscription value=\"{html.escape(s['id'])}\">"
                   f" <button class=cancel>Cancel plan</button></form>")
                + "</li>" for s in subscriptions) or "<li>No subscriptions yet.</li>"
            page = (
                "<!doctype html><meta charset=utf-8><title>Stripe stand-in portal</title>"
                "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}"
                ".note{background:#fff4d6;padding:.5rem}</style>"
                "<p class=note><strong>Stripe stand-in</strong> (local development, not Stripe): a preview of what "
                "Stripe's customer portal shows this customer.</p>"
                f"<h1>Billing for {html.escape(customer.get('name') or customer.get('email') or 'this customer')}</h1>"
                f"<p>Customer <code id=customer>{html.escape(customer['id'])}</code>"
                f"{' · ' + html.escape(customer['email']) if customer.get('email') else ''}</p>"
                f"<p hidden>Name: <span id=name>{html.escape(customer.get('name') or '')}</span></p>"
                f"<h2>Subscriptions</h2><ul id=subscriptions>{rows}</ul>"
                f"<h2>What opens</h2><p id=flow-text>{html.escape(_flow_in_words(session['flow']))}</p>"
                f"<p hidden><code id=flow>{html.escape((session['flow'] or {}).get('type', 'home'))}</code></p>"
                f"<p><a id=return href=\"{back}\">Return to the site</a></p>"
            )
        body = page.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _flow_in_words(flow: dict | None) -> str:
    """What Stripe's portal would open for a session's flow_data, said the way a customer would."""
    if not flow:
        return "The portal home: invoices, payment methods, billing details and subscriptions."
    subscription = (flow.get(flow.get("type", "")) or {}).get("subscription", "")
    words = {
        "payment_method_update": "Straight to updating the payment method.",
        "customer_update": "Straight to editing the billing details (name, email, address, tax ids).",
        "subscription_cancel": f"Straight to cancelling subscription {subscription}.",
        "subscription_pause": f"Straight to pausing subscription {subscription}.",
        "subscription_update": f"Straight to changing the plan of subscription {subscription}.",
    }.get(flow.get("type", ""), "A deep link.")
    after = (flow.get("after_completion") or {}).get("type")
    return words + (" Afterwards, back to the site." if after == "redirect" else "")


def _reference(value: str | None) -> str | None:
    """A Payment Link's client_reference_id as Stripe keeps it: 1-200 letters, digits, dashes or underscores, or
    nothing (Stripe silently drops another value)."""
    if value and len(value) <= 200 and all(c.isascii() and (c.isalnum() or c in "-_") for c in value):
        return value
    return None


# The stand-in's <stripe-pricing-table> (Stripe serves the real one from js.stripe.com): the table's prices as
# buttons; a choice posts the Customer Session's client secret and the client_reference_id, as Stripe's does.
PRICING_TABLE_SCRIPT = """"use strict";
customElements.define("stripe-pricing-table", class extends HTMLElement {
  async connectedCallback() {
    const id = this.getAttribute("pricing-table-id");
    const answer = await (await fetch(`__BASE__/pt/${encodeURIComponent(id)}`)).json();
    this.innerHTML = "<p class=note><strong>Stripe stand-in</strong> pricing table (not Stripe)</p>";
    for (const price of answer.prices) {
      const form = document.createElement("form");
      form.method = "post";
      form.action = `__BASE__/pt/${encodeURIComponent(id)}`;
      const fields = {price: price.id, customer_session_client_secret:
        this.getAttribute("customer-session-client-secret") || "",
        client_reference_id: this.getAttribute("client-reference-id") || ""};
      for (const [name, value] of Object.entries(fields)) {
        const input = document.createElement("input");
        input.type = "hidden"; input.name = name; input.value = value;
        form.append(input);
      }
      const button = document.createElement("button");
      button.className = "pricing-table-choose";
      button.textContent = `${price.name}: $${(price.amount / 100).toFixed(2)} per month`;
      form.append(button);
      this.append(form);
    }
  }
});
"""


def _send_script(handler, script: str) -> None:
    _send_public(handler, "text/javascript; charset=utf-8", script.encode())


def _send_json(handler, document: dict) -> None:
    _send_public(handler, "application/json", json.dumps(document).encode())


def _send_public(handler, content_type: str, body: bytes) -> None:
    """What js.stripe.com serves any page: the pricing table's script and its prices."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Access-Control-Allow-Origin", "*")
    handler.end_headers()
    handler.wfile.write(body)


def _send_page(handler, status: int, page: str) -> None:
    body = page.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _redirect(handler, location: str) -> None:
    handler.send_response(303)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _public(customer: dict, expand: bool) -> dict:
    public = {k: v for k, v in customer.items() if not k.startswith("_")}
    if expand:
        # As Stripe embeds a list: its first 10 items (newest first), and whether there are more.
        subs = [{k: v for k, v in s.items() if not k.startswith("_")}
                for s in sorted(customer["_subscriptions"], key=lambda s: (s["created"], s.get("_sequence", 0)),
                                reverse=True) if s["status"] != "canceled"]
        public["subscriptions"] = {**_list(subs[:10], f"/v1/customers/{customer['id']}/subscriptions"),
                                   "has_more": len(subs) > 10}
    return public


def _public_session(session: dict) -> dict:
    public = dict(session)
    flow = session["flow"]
    if flow:
        after = flow.get("after_completion") or {"type": "portal_homepage"}
        public["flow"] = {
            "type": flow["type"],
            "after_completion": {"type": after["type"], "hosted_confirmation": after.get("hosted_confirmation"),
                                 "redirect": after.get("redirect")},
            **{name: flow.get(name) for name in ("subscription_cancel", "subscription_pause", "subscription_update",
                                                 "subscription_update_confirm")},
        }
        for name in ("subscription_cancel", "subscription_update"):
            if public["flow"][name]:
                public["flow"][name] = {"retention": None, **public["flow"][name]}
        if flow["type"] == "customer_update":
            public["flow"]["customer_update"] = {"allowed_updates": ["address", "email", "name", "phone",
                                                                      "shipping", "tax_id"]}
    expiration = session.get("after_expiration")
    if expiration:
        login = expiration.get("customer_login") or {}
        expires_at = login.get("expires_at")
        public["after_expiration"] = {"type": expiration.get("type"), "customer_login": {
            "expires_at": int(expires_at) if expires_at else None}}
    public.update(customer_account=None, on_behalf_of=None)
    return public


def _items(subscription: dict, price: dict | None) -> dict:
    """The subscription's items: one for its price (none for a bare subscription made by older tests)."""
    data = []
    if price is not None:
        start = subscription["start_date"]
        data.append({"id": new_id("si_"), "object": "subscription_item", "created": start,
                     "current_period_start": start, "current_period_end": start + 30 * 24 * 3600,
                     "metadata": {}, "price": dict(price), "quantity": 1, "subscription": subscription["id"]})
    return _list(data, f"/v1/subscription_items?subscription={subscription['id']}")


def _subscription(customer: dict, status: str, price: dict | None = None) -> dict:
    now = int(time.time())
    subscription_id = new_id("sub_")
    subscription = {
        "id": subscription_id, "object": "subscription", "application": None, "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now, "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "flexible", "flexible": None, "updated_at": None}, "billing_schedules": [],
        "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False,
        "canceled_at": now if status == "canceled" else None, "cancellation_details": None,
        "collection_method": "charge_automatically", "created": now, "currency": "usd", "customer": customer["id"],
        "customer_account": None, "days_until_due": None, "default_payment_method": None, "default_source": None,
        "default_tax_rates": [], "description": None, "discounts": [], "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self", "account": None}},
        "items": _list([], f"/v1/subscription_items?subscription={subscription_id}"),
        "latest_invoice": None, "livemode": customer["livemode"], "metadata": {},
        "next_pending_invoice_item_invoice": None, "on_behalf_of": None, "pause_collection": None,
        "payment_settings": None, "pending_invoice_item_interval": None, "pending_setup_intent": None,
        "pending_update": None, "schedule": None, "start_date": now, "status": status, "test_clock": None,
        "transfer_data": None, "trial_end": None, "trial_start": None,
    }
    subscription["items"] = _items(subscription, price)
    return subscription


def _configuration(config_id: str, mode: str, is_default: bool) -> dict:
    now = int(time.time())
    return {
        "id": config_id, "object": "billing_portal.configuration", "active": True, "application": None,
        "business_profile": {"headline": None, "privacy_policy_url": None, "terms_of_service_url": None},
        "created": now, "default_return_url": None, "is_default": is_default, "livemode": mode == "live",
        "login_page": {"enabled": False, "url": None}, "metadata": {}, "name": None, "updated": now,
        "features": {
            "customer_update": {"allowed_updates": ["email", "address", "tax_id"], "enabled": True},
            "invoice_history": {"enabled": True},
            "payment_method_update": {"enabled": True, "payment_method_configuration": None},
            "subscription_cancel": {
                "cancellation_reason": {"enabled": False, "options": []}, "enabled": True, "mode": "at_period_end",
                "proration_behavior": "none"},
            "subscription_pause": {"duration": {"interval_options": [], "type": "indefinite"}, "enabled": True},
            "subscription_update": {
                "billing_cycle_anchor": None, "default_allowed_updates": [], "enabled": True, "products": [],
                "proration_behavior": "none", "schedule_at_period_end": {"conditions": []},
                "trial_update_behavior": "end_trial"},
        },
    }


def _account(account: Account) -> dict:
    return {"id": account.id, "object": "account", "business_profile": None, "charges_enabled": True,
            "country": "US", "default_currency": "usd", "details_submitted": True, "email": None,
            "payouts_enabled": True, "type": "standard"}


def _page(items: list[dict], params: dict, url: str):
    """One page of a list as Stripe pages it: `limit` (1-100, default 10), after the item `starting_after`
    names, and `has_more`."""
    try:
        limit = int(params.get("limit", 10))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        return 400, _error("invalid_request_error", "Invalid integer: limit must be between 1 and 100",
                           code="parameter_invalid_integer", param="limit")
    after = params.get("starting_after")
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            return 400, _error("invalid_request_error", f"No such object: '{after}'", code="resource_missing",
                               param="starting_after")
        items = items[ids.index(after) + 1:]
    return 200, {**_list([{k: v for k, v in i.items() if not k.startswith("_")} for i in items[:limit]], url),
                 "has_more": len(items) > limit}


def _list(data: list, url: str) -> dict:
    return {"object": "list", "data": data, "has_more": False, "url": url}


def _saved(status: int, payload: dict) -> bool:
    """Whether Stripe saves this answer under the idempotency key: only once the endpoint started executing.
    Parameter validation, authentication, permission and rate-limit refusals are not saved."""
    if status in (401, 403, 429):
        return False
    code = (payload.get("error") or {}).get("code") or ""
    return not (status == 400 and code.startswith("parameter_"))


def _error(error_type: str, message: str, *, code: str | None = None, param: str | None = None) -> dict:
    error = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return {"error": error}

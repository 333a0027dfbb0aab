"""`make run`: the whole thing on loopback with no AWS account, no Stripe account and no network.

  moto server          Cognito pool, app client and demo users; the Stripe-key and OAuth secrets; the customers
                       table exactly as template.yaml declares it
  Stripe stand-in      the Stripe API plus a plain portal page at each session URL
  Hosted UI stand-in   /oauth2/authorize (login form), /oauth2/token, issuing moto's tokens
  API                  the real lambda_handler behind an HTTP API v2 adapter
  demo site            examples/static-site: plain link, form post, fetch()

With real credentials in the environment the same command uses the real service instead of a stand-in:
  STRIPE_API_KEY=sk_test_...          real Stripe (test mode only) instead of the Stripe stand-in
  DEVSTACK_STRIPE_EVENTS=eventbridge  Stripe's events through Amazon EventBridge (an event destination, its
                                      partner bus, the StripeEventsFunction) instead of the webhook endpoint,
                                      as a stack deployed with StripeWebhookEndpoint=disabled (stand-in only)
  COGNITO_USER_POOL_ID, COGNITO_CLIENT_IDS, COGNITO_DOMAIN (+ AWS credentials or AWS_PROFILE)
                                      a real user pool and its Hosted UI instead of moto's pool and the
                                      Hosted UI stand-in (register the printed callback and site URLs on
                                      the app client); the secrets and the table stay in moto.
"""

from __future__ import annotations

import json
import mimetypes
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devstack.aws_standin import MotoServer, add_oauth_secret, add_webhook_secret, provision
from devstack.http_api import load_handler_module, new_context, serve
from devstack.stripe_standin import StripeStandin, fake_key

ROOT = Path(__file__).resolve().parent.parent
SITE_ROOT = ROOT / "examples" / "static-site"
# Where `make run` writes what stripe-portal-admin needs to manage the local stack (DEVSTACK_ADMIN_ENV moves it).
ADMIN_ENV = Path(os.environ.get("DEVSTACK_ADMIN_ENV") or ROOT / ".devstack" / "admin.env").resolve()
DEMO_USERS = [("ada@example.com", "Ada Lovelace"), ("grace@example.com", "Grace Hopper")]
DEMO_PASSWORD = "Demo-Password-1"
# Paid through a Stripe Payment Link before having an account: a customer with their email and a subscription.
PAYMENT_LINK_BUYERS = [("buyer@example.com", "Bea Buyer"), ("late-buyer@example.com", "Lee Late")]
# The demo's plan: a monthly price with this lookup key, and the feature (entitlement) it grants.
PLAN_LOOKUP_KEY = "pro_monthly"
PLAN_FEATURE = "premium-content"


PORT_DEFAULTS = {"API": 3000, "SITE": 8000, "STRIPE": 12111, "MOTO": 5055, "HOSTED_UI": 9229}
COGNITO_VARIABLES = ("COGNITO_USER_POOL_ID", "COGNITO_CLIENT_IDS", "COGNITO_DOMAIN")
EVENT_PATHS = ("webhook", "eventbridge")  # DEVSTACK_STRIPE_EVENTS: how Stripe's events reach the stack


def event_path() -> str:
    return os.environ.get("DEVSTACK_STRIPE_EVENTS", "").strip().lower() or "webhook"


class StackError(Exception):
    """The local stack cannot start; the message is one line saying what and how to fix it."""


def _port(name: str, default: int | None = None) -> int:
    variable = f"DEVSTACK_{name}_PORT"
    raw = os.environ.get(variable, "").strip() or str(default if default is not None else PORT_DEFAULTS[name])
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise StackError(f"{variable} must be a port number (1-65535), not {raw[:20]!r}")
    return int(raw)


def preflight(host: str) -> None:
    """Everything that would otherwise fail halfway (or hang) fails here, one line each, before anything starts."""
    import socket

    given = [name for name in COGNITO_VARIABLES if os.environ.get(name, "").strip()]
    if given and len(given) != len(COGNITO_VARIABLES):
        missing = [name for name in COGNITO_VARIABLES if name not in given]
        raise StackError(f"a real user pool needs all of {', '.join(COGNITO_VARIABLES)}; missing {', '.join(missing)} "
                         f"(or unset {', '.join(given)} to use the stand-ins)")
    if event_path() not in EVENT_PATHS:
        raise StackError(f"DEVSTACK_STRIPE_EVENTS must be {' or '.join(EVENT_PATHS)}, not "
                         f"{os.environ['DEVSTACK_STRIPE_EVENTS'].strip()[:20]!r}")
    if event_path() == "eventbridge" and os.environ.get("STRIPE_API_KEY", "").strip():
        raise StackError("DEVSTACK_STRIPE_EVENTS=eventbridge needs the Stripe stand-in: real Stripe delivers to a "
                         "real AWS account's bus (unset STRIPE_API_KEY, or use the webhook path)")
    ports = dict(PORT_DEFAULTS)
    if os.environ.get("STRIPE_API_KEY", "").strip():
        check_real_stripe_key(os.environ["STRIPE_API_KEY"].strip())
        ports.pop("STRIPE")
    if given:
        ports.pop("HOSTED_UI")
    chosen: dict[int, str] = {}
    for name in ports:
        port = _port(name)
        if port in chosen:
            raise StackError(f"DEVSTACK_{chosen[port]}_PORT and DEVSTACK_{name}_PORT are both {port}: give each "
                             "its own port")
        chosen[port] = name
    for port, name in chosen.items():
        with socket.socket() as probe:
            # As the servers will bind: with SO_REUSEADDR, so the connections a stopped `make run` left in
            # TIME_WAIT (a minute on Linux) do not count; a server still listening does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise StackError(f"port {port} is in use (DEVSTACK_{name}_PORT): stop the other `make run`, or set "
                                 f"DEVSTACK_{name}_PORT to a free port") from None


def check_real_stripe_key(key: str) -> None:
    """A real key is used only once Stripe has accepted it, and only a test-mode one."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "core"))
    from portal_gateway.billing.stripe_client import StripeApiError, StripeHttp
    from portal_gateway.billing.stripe_key import key_mode, parse_stripe_key
    from portal_gateway.errors import StripeKeyUnavailable

    try:
        key = parse_stripe_key(key)
    except StripeKeyUnavailable as exc:
        raise StackError("STRIPE_API_KEY " + (exc.log_detail or "").removeprefix("the Stripe secret ")) from None
    if key_mode(key) != "test":
        raise StackError("STRIPE_API_KEY is a live-mode key; the local stack only uses test-mode keys "
                         "(sk_test_/rk_test_)")
    try:
        StripeHttp(timeout_seconds=5, max_network_retries=0).request("GET", "/v1/customers", {"limit": 1},
                                                                     api_key=key)
    except StripeApiError as exc:
        what = {"AuthenticationError": "was rejected by Stripe (revoked or mistyped)",
                "APIConnectionError": "could not be checked: Stripe is not reachable (no network?)"}.get(
                    exc.kind, f"could not be checked ({exc.kind})")
        raise StackError(f"STRIPE_API_KEY {what}; unset it to use the Stripe stand-in") from None


def site_server(host: str, port: int, config: dict) -> ThreadingHTTPServer:
    """Serves examples/static-site, with config.js generated for this local stack."""
    config_js = f"window.PORTAL_CONFIG = {json.dumps(config, indent=2)};\n".encode()

    class Site(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/config.js":
                return self._send(200, config_js, "text/javascript")
            target = (SITE_ROOT / (path.lstrip("/") or "index.html")).resolve()
            if SITE_ROOT not in target.parents or not target.is_file():
                return self._send(404, b"not found", "text/plain")
            self._send(200, target.read_bytes(), mimetypes.guess_type(target.name)[0] or "application/octet-stream")

        def _send(self, status: int, body: bytes, content_type: str):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer((host, port), Site)


class LocalStack:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.api_url = f"http://{host}:{_port('API', 3000)}"
        self.site_url = f"http://{host}:{_port('SITE', 8000)}/"
        self.callback_url = f"{self.api_url}/portal/callback"
        self.payment_link_url: str | None = None  # the stand-in's Payment Link (none with real Stripe)
        self.pricing_table: dict | None = None  # the stand-in's pricing table (none with real Stripe)
        self._servers: list = []
        self._closers: list = []
        self.notes: list[str] = []

    def start(self) -> LocalStack:
        moto = MotoServer(self.host, _port("MOTO", 5055))
        self._closers.append(moto.stop)
        real_stripe_key = os.environ.get("STRIPE_API_KEY", "").strip()
        stripe: StripeStandin | None = None
        if real_stripe_key:
            stripe_key, stripe_base = real_stripe_key, None
            self.notes.append("Stripe: REAL Stripe API, test mode (STRIPE_API_KEY, accepted by Stripe)")
        else:
            stripe = StripeStandin(self.host, _port("STRIPE", 12111)).start()
            self._closers.append(stripe.close)
            stripe_key, stripe_base = stripe.add_key(fake_key("sk", "test")), stripe.base_url
            stripe.create_default_portal_configuration("test")
            pro = stripe.add_product("Pro", lookup_key=PLAN_LOOKUP_KEY, features=(PLAN_FEATURE,), unit_amount=900)
            for email, name in PAYMENT_LINK_BUYERS:
                stripe.add_subscription(stripe.add_customer(email=email, name=name), "active", price_id=pro)
            self.payment_link_url = stripe.add_payment_link(pro, after_completion_url=f"{self.site_url}?purchased=1")
            self.pricing_table = stripe.add_pricing_table([pro], success_url=f"{self.site_url}?purchased=1")
            self.notes.append(f"Stripe stand-in (NOT Stripe):   {stripe.base_url}")
            self.notes.append("Paid by Payment Link, no account yet (sign up with these emails): "
                              + ", ".join(email for email, _ in PAYMENT_LINK_BUYERS))
        env = provision(moto, stripe_key=stripe_key, callback_urls=(self.callback_url, self.site_url))
        self.environment = env
        service_env = env.service_env(
            stripe_api_base=stripe_base or "", return_url=self.site_url,
            ALLOWED_RETURN_URLS=self.site_url.rstrip("/"), ALLOWED_ORIGINS=self.site_url.rstrip("/"),
            CALLBACK_URL=self.callback_url, OAUTH_SECRET_ID=add_oauth_secret(env), CHECKOUT_PRICES=PLAN_LOOKUP_KEY,
            WEBHOOK_SECRET_ID=add_webhook_secret(env))

        if all(os.environ.get(name, "").strip() for name in COGNITO_VARIABLES):
            # A real pool: its JWKS and Hosted UI are real; Cognito calls must not go to moto.
            for name in ("COGNITO_USER_POOL_ID", "COGNITO_CLIENT_IDS", "COGNITO_DOMAIN"):
                service_env[name] = os.environ[name]
            service_env.pop("COGNITO_JWKS_URL")
            for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                service_env.pop(name, None)
            service_env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = moto.endpoint
            service_env["AWS_ENDPOINT_URL_DYNAMODB"] = moto.endpoint
            hosted_ui_url = service_env["COGNITO_DOMAIN"]
            client_id = service_env["COGNITO_CLIENT_IDS"].split(",")[0]
            self.notes.append(f"Cognito: REAL user pool {service_env['COGNITO_USER_POOL_ID']} and its Hosted UI")
            self.notes.append(f"  register on the app client: {self.callback_url} and {self.site_url} as callback "
                              f"URLs, {self.site_url} as a sign-out URL")
        else:
            from devstack.hosted_ui_standin import HostedUiStandin

            for username, name in DEMO_USERS:
                env.add_user(username, DEMO_PASSWORD, email=username, name=name)
            hosted_ui = HostedUiStandin(env, self.host, _port("HOSTED_UI", 9229)).start()
            hosted_ui.password = DEMO_PASSWORD  # shown on its sign-in page: it is a local stand-in
            hosted_ui.register_client(env.client_id, [self.callback_url, self.site_url],
                                      allowed_origins=(self.site_url.rstrip("/"),), logout_uris=[self.site_url])
            self._closers.append(hosted_ui.close)
            hosted_ui_url, client_id = hosted_ui.base_url, env.client_id
            service_env["COGNITO_DOMAIN"] = hosted_ui_url
            self.notes.append(f"Hosted UI stand-in (NOT Cognito): {hosted_ui_url}")
            self.notes.append(f"Demo users: {', '.join(u for u, _ in DEMO_USERS)}  password: {DEMO_PASSWORD}")
        if not stripe_base:
            service_env.pop("STRIPE_API_BASE")
        self._write_admin_env(service_env)
        os.environ.update(service_env)
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")

        module = load_handler_module()
        webhooks = load_handler_module(ROOT / "functions" / "webhooks" / "app.py")
        eventbridge = event_path() == "eventbridge"
        api = serve(module.lambda_handler, self.host, int(self.api_url.rsplit(":", 1)[1]),
                    routes={} if eventbridge else {"/webhooks/": webhooks.lambda_handler})
        if eventbridge:
            if stripe is None:
                raise StackError("DEVSTACK_STRIPE_EVENTS=eventbridge needs the Stripe stand-in (unset STRIPE_API_KEY)")
            self._set_up_eventbridge(stripe, stripe_key, webhooks.eventbridge_handler)
        elif stripe_base:
            self._set_up_webhooks(moto, stripe_key, stripe_base, service_env["WEBHOOK_SECRET_ID"])
        else:
            self.notes.append("Billing status: real Stripe cannot reach this machine's webhook; statuses are read "
                              "from Stripe on first use only")
        site = site_server(self.host, int(self.site_url.rstrip("/").rsplit(":", 1)[1]), {
            "apiUrl": self.api_url, "hostedUiUrl": hosted_ui_url, "clientId": client_id, "siteUrl": self.site_url,
            "paymentLinkUrl": self.payment_link_url, "checkoutPrice": PLAN_LOOKUP_KEY,
            "pricingTable": self.pricing_table})
        for server in (api, site):
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self.notes.insert(0, f"AWS stand-in (moto server):      {moto.endpoint}")
        return self

    def _set_up_webhooks(self, moto, stripe_key: str, stripe_base: str, secret_id: str) -> None:
        """What an operator does after deploying: `stripe-portal-admin webhooks setup`, here with the stand-in."""
        import io

        from portal_admin.webhooks import setup
        from portal_gateway.billing.stripe_client import StripeHttp

        setup(url=f"{self.api_url}/webhooks/stripe", secret_id=secret_id, client=moto.client, out=io.StringIO(),
              stripe=StripeHttp(api_base=stripe_base, timeout_seconds=5).with_key(stripe_key))
        self.notes.append(f"Webhooks: the stand-in delivers subscription events to {self.api_url}/webhooks/stripe")

    def _set_up_eventbridge(self, stripe: StripeStandin, stripe_key: str, events_handler) -> None:
        """What an operator does for the EventBridge path: `stripe-portal-admin events setup` (Stripe makes the
        destination and its partner event source), then the deploy with that source, whose bus hands each event
        to the StripeEventsFunction. Here the bus is the stand-in's; it delivers every half second, and an event
        whose handling failed is handed over again, as EventBridge retries an asynchronous invocation."""
        import io

        from portal_admin.events import setup
        from portal_gateway.billing.stripe_client import StripeHttp

        from devstack.aws_standin import REGION
        from devstack.stripe_eventbridge import source_name

        setup(stack="local", account="123456789012", region=REGION, current_source=None, out=io.StringIO(),
              stripe=StripeHttp(api_base=stripe.base_url, timeout_seconds=5).with_key(stripe_key))
        (destination,) = stripe.account.event_destinations.values()  # what setup made: the stand-in's only one
        source, bus = source_name(destination), stripe.eventbridge

        def stripe_events_function(message: dict):
            try:
                return events_handler(message, new_context())
            except Exception:  # noqa: BLE001 - the handler logged it; EventBridge would invoke again
                bus.again(source, message)
                return None

        stripe.associate_event_bus(source, stripe_events_function)
        stopped = threading.Event()

        def deliver_forever():
            while not stopped.wait(0.5):
                bus.deliver()

        threading.Thread(target=deliver_forever, daemon=True).start()
        self._closers.append(stopped.set)
        self.notes.append(f"Stripe's events: through EventBridge (partner source {source}) to the "
                          "StripeEventsFunction; no webhook endpoint")

    def _write_admin_env(self, service_env: dict[str, str]) -> None:
        """What stripe-portal-admin needs to manage this stack: where AWS and Stripe are, and the ids."""
        import shlex

        names = [name for name in service_env if name.startswith(("AWS_", "STRIPE_API_BASE"))]
        ids = {"--secret-id": service_env["STRIPE_SECRET_ID"], "--mode": service_env["STRIPE_MODE"],
               "--user-pool-id": service_env["COGNITO_USER_POOL_ID"], "--table": service_env["CUSTOMERS_TABLE"]}
        check = {**ids, "--client-ids": service_env["COGNITO_CLIENT_IDS"]}
        if event_path() == "webhook":  # with EventBridge the stack has no webhook endpoint
            check.update({"--webhook-url": f"{self.api_url}/webhooks/stripe",
                          "--webhook-secret-id": service_env["WEBHOOK_SECRET_ID"]})
        if service_env.get("COGNITO_JWKS_URL"):
            check["--jwks-url"] = service_env["COGNITO_JWKS_URL"]
        lines = [f"export {name}={shlex.quote(service_env[name])}" for name in names]
        lines += [f"export PORTAL_CHECK_ARGS={shlex.quote(' '.join(f'{k} {v}' for k, v in check.items()))}",
                  f"export PORTAL_SUPPORT_ARGS={shlex.quote(' '.join(f'{k} {v}' for k, v in ids.items()))}"]
        ADMIN_ENV.parent.mkdir(exist_ok=True)
        ADMIN_ENV.write_text("# Written by `make run`: source it to point stripe-portal-admin at the local stack.\n"
                             + "\n".join(lines) + "\n")
        relative = ADMIN_ENV.relative_to(ROOT) if ADMIN_ENV.is_relative_to(ROOT) else ADMIN_ENV
        self.notes.append(f"Admin CLI against this stack: . {relative} && .venv/bin/stripe-portal-admin check "
                          "$PORTAL_CHECK_ARGS")
        self.notes.append("  support, e.g.: .venv/bin/stripe-portal-admin whois $PORTAL_SUPPORT_ARGS --username "
                          "ada@example.com")

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
        for close in reversed(self._closers):
            close()

    def banner(self) -> str:
        lines = [f"  Demo site (sign in, click Manage billing): {self.site_url}",
                 f"  API (the Lambda handler):  {self.api_url}/portal   health: {self.api_url}/health"]
        lines += [f"  {note}" for note in self.notes]
        return "\n" + "\n".join(lines) + "\n  Press Ctrl+C to stop.\n"


def main() -> int:
    host = os.environ.get("DEVSTACK_HOST", "127.0.0.1")
    try:
        preflight(host)
        print("Starting the local stack (stand-ins, no network needed)...", flush=True)
        stack = LocalStack(host)
        stack.start()
    except StackError as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        return 1
    print(stack.banner(), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

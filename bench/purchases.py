"""Benchmark of purchases bound to the signed-in user (issue: purchases belong to the user, not to an email
address). Prints a markdown table.

  1. A scenario matrix, each scenario run --rounds times with fresh users: Subscribe (Checkout for the user's own
     customer); a Payment Link carrying the user's reference, paid with another address; "Manage billing" clicked
     before buying, then either; two users holding one address (a Payment Link naming no one, then one of them
     subscribing); a user whose email changed since their token was issued; a deleted customer, then Subscribe;
     a double click on Subscribe. Then, from the stand-in's records and the status answers: purchases shown to
     the wrong user, purchases lost to their buyer, subscriptions beyond one per double click, and customers
     per user.
  2. The checkout route warm, for a returning user: its Stripe and AWS calls per request, and the handler's own
     time (total less outbound I/O, as bench/run.py and bench/status.py measure it).

Everything runs on loopback in this process: moto, the Stripe stand-in (its Checkout completes sessions and sends
checkout.session.completed, signed, over HTTP), both functions' real handlers. Run:
`.venv/bin/python bench/purchases.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import statistics
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core"), str(ROOT / "cli")]

from bench.outbound import timed  # noqa: E402 - the handler's own time: total less its outbound wait
from bench.run import percentile  # noqa: E402 - the one percentile every benchmark reports

PRICE = "pro_monthly"
PASSWORD = "Bench-Password-1"
LIVE = ("active", "trialing", "past_due", "unpaid")


def main() -> int:
    table = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):  # the functions' metric lines (EMF) go to stdout
        code = run(table)
    print(table.getvalue(), end="")
    return code


class World:
    """The two functions, moto and the stand-in, and what each scenario meant to happen."""

    def __init__(self):
        from portal_admin.webhooks import setup
        from portal_gateway.billing.stripe_client import StripeHttp

        from devstack.aws_standin import MotoServer, add_webhook_secret, provision
        from devstack.http_api import load_handler_module, serve
        from devstack.stripe_standin import StripeStandin, fake_key

        self.moto = MotoServer()
        self.stripe = StripeStandin().start()
        key = self.stripe.add_key(fake_key())
        self.stripe.create_default_portal_configuration()
        self.stack = provision(self.moto, stripe_key=key)
        env = self.stack.service_env(
            stripe_api_base=self.stripe.base_url, return_url="https://shop.example.com/",
            WEBHOOK_SECRET_ID=add_webhook_secret(self.stack), CHECKOUT_PRICES=PRICE, POWERTOOLS_LOG_LEVEL="ERROR",
            POWERTOOLS_METRICS_DISABLED="true")
        os.environ.update(env)
        self.portal = load_handler_module()
        self.webhooks = load_handler_module(ROOT / "functions" / "webhooks" / "app.py")
        self.server = serve(self.webhooks.lambda_handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        setup(url=f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe",
              secret_id=env["WEBHOOK_SECRET_ID"], client=self.moto.client, out=io.StringIO(),
              stripe=StripeHttp(api_base=self.stripe.base_url, timeout_seconds=5).with_key(key))
        self.stripe.deliverer.retry_delays = (0.05, 0.1, 0.2, 0.4, 0.8)
        self.price = self.stripe.add_product("Pro", lookup_key=PRICE, features=("premium",))
        self.link = self.stripe.add_payment_link(self.price, after_completion_url="https://shop.example.com/thanks")
        self.subs: dict[str, str] = {}  # username -> sub
        self.tokens: dict[str, str] = {}
        self.bought: dict[str, str] = {}  # subscription id -> the username who meant to buy it
        self.double_clicks: list[str] = []  # usernames who double-clicked Subscribe
        self.count = 0

    def close(self) -> None:
        self.stripe.close()
        self.server.shutdown()
        self.moto.stop()

    # --- what users do ---------------------------------------------------------------------------------------
    def user(self, name: str, email: str) -> str:
        self.subs[name] = self.stack.add_user(name, PASSWORD, email=email)
        self.tokens[name] = self.stack.sign_in(name, PASSWORD)["IdToken"]
        return name

    def call(self, method: str, path: str, name: str, *, query: dict | None = None, accept: str = "text/html"):
        from devstack.http_api import build_event, new_context

        event = build_event(method, path, query=urlencode(query or {}), headers={
            "authorization": f"Bearer {self.tokens[name]}", "accept": accept})
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        return self.portal.lambda_handler(event, new_context())

    def manage(self, name: str) -> str:
        answer = self.call("GET", "/portal", name)
        assert answer["statusCode"] == 302, answer
        return self.stripe.account.sessions[answer["headers"]["Location"].rsplit("/", 1)[-1]]["customer"]

    def status(self, name: str) -> dict:
        answer = self.call("GET", "/billing/status", name, accept="application/json")
        assert answer["statusCode"] == 200, answer
        return json.loads(answer["body"])

    def subscribe(self, name: str) -> str:
        answer = self.call("GET", "/billing/checkout", name, query={"price": PRICE})
        assert answer["statusCode"] == 303, answer
        return answer["headers"]["Location"]

    def pay_checkout(self, name: str, url: str) -> None:
        session_id = urlsplit(url).path.rsplit("/", 1)[-1]
        self.stripe.complete_checkout(session_id)
        self.bought[self.stripe.account.checkout_sessions[session_id]["subscription"]] = name

    def pay_payment_link(self, name: str | None, email: str, reference: str | None) -> None:
        parts = urlsplit(self.link)
        before = set(self.stripe.account.checkout_sessions)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.request("POST", parts.path, body=urlencode(
            {"email": email, **({"client_reference_id": reference} if reference else {})}),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert connection.getresponse().status == 303
        connection.close()
        (session_id,) = set(self.stripe.account.checkout_sessions) - before
        if name is not None:  # a purchase that names no one has no buyer to show it to
            self.bought[self.stripe.account.checkout_sessions[session_id]["subscription"]] = name

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    # --- the scenarios ------------------------------------------------------------------------------------------
    def subscribe_scenario(self) -> None:
        name = self.user(self.fresh("sub"), f"{self.fresh('s')}@example.com")
        self.pay_checkout(name, self.subscribe(name))

    def payment_link_other_address(self) -> None:
        name = self.user(self.fresh("pl"), f"{self.fresh('p')}@example.com")
        self.pay_payment_link(name, f"{name}@billing.example.org", self.status(name)["client_reference_id"])

    def manage_first_then_buy(self) -> None:
        name = self.user(self.fresh("mf"), f"{self.fresh('m')}@example.com")
        self.manage(name)
        if self.count % 2:
            self.pay_checkout(name, self.subscribe(name))
        else:
            self.pay_payment_link(name, f"{name}@other.example.org", self.status(name)["client_reference_id"])

    def twins(self) -> None:
        email = f"{self.fresh('twin')}@example.com"
        first, second = self.user(self.fresh("ta"), email), self.user(self.fresh("tb"), email)
        self.pay_payment_link(None, email, None)  # someone paid with the address both hold
        self.manage(second)
        self.pay_checkout(first, self.subscribe(first))

    def changed_email(self) -> None:
        name = self.user(self.fresh("ce"), f"{self.fresh('old')}@example.com")
        self.moto.client("cognito-idp").admin_update_user_attributes(
            UserPoolId=self.stack.user_pool_id, Username=name, UserAttributes=[
                {"Name": "email", "Value": f"{name}@new.example.com"}, {"Name": "email_verified", "Value": "true"}])
        self.pay_checkout(name, self.subscribe(name))

    def deleted_customer(self) -> None:
        name = self.user(self.fresh("dc"), f"{self.fresh('d')}@example.com")
        self.stripe.delete_customer(self.manage(name))
        assert self.stripe.deliverer.idle(30)
        self.pay_checkout(name, self.subscribe(name))

    def double_click(self) -> None:
        name = self.user(self.fresh("dbl"), f"{self.fresh('b')}@example.com")
        urls: list[str] = []
        clicks = [threading.Thread(target=lambda: urls.append(self.subscribe(name))) for _ in range(2)]
        for click in clicks:
            click.start()
        for click in clicks:
            click.join()
        for url in dict.fromkeys(urls):  # the buyer pays every page they were sent to
            with contextlib.suppress(ValueError):  # a session already paid cannot be paid again
                self.pay_checkout(name, url)
        self.double_clicks.append(name)


def mapped_customers(world: World) -> set[str]:
    items = world.stack.moto.client("dynamodb").scan(TableName=world.stack.table_name)["Items"]
    return {item["customer_id"]["S"] for item in items if "customer_id" in item}


def run(table) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="times each scenario runs, with fresh users")
    parser.add_argument("--requests", type=int, default=200, help="warm checkout requests measured")
    args = parser.parse_args()

    world = World()
    scenarios = [world.subscribe_scenario, world.payment_link_other_address, world.manage_first_then_buy,
                 world.twins, world.changed_email, world.deleted_customer, world.double_click]
    world.stripe.latency = 0.05  # a double click's second request arrives while the first holds the key
    for _ in range(args.rounds):
        for scenario in scenarios:
            scenario()
    world.stripe.latency = 0
    assert world.stripe.deliverer.idle(120), "the webhook deliveries did not drain"
    world.portal.portal_service().resolver._unmatched.clear()  # as after the recheck window

    shown: dict[str, set[str]] = {name: set() for name in world.subs}  # username -> subscriptions their status shows
    by_customer_sub = {}
    for customer in world.stripe.customers():
        for subscription in customer["_subscriptions"]:
            by_customer_sub[subscription["id"]] = customer["id"]
    for name in world.subs:
        answer = world.status(name)
        live_customer = world.stack.moto.client("dynamodb").get_item(
            TableName=world.stack.table_name, ConsistentRead=True,
            Key={"pk": {"S": f"test#{world.stack.user_pool_id}#{world.subs[name]}"}}).get("Item")
        customer_id = live_customer["customer_id"]["S"] if live_customer else None
        if answer["subscriptions"]:
            shown[name] = {s for s, c in by_customer_sub.items() if c == customer_id}
    wrong = sum(1 for name, seen in shown.items() for s in seen if s in world.bought and world.bought[s] != name)
    lost = sum(1 for s, buyer in world.bought.items() if s not in shown[buyer])
    extra = 0
    for name in world.double_clicks:
        customer_id = world.manage(name)
        live = [s for s in world.stripe.account.customers[customer_id]["_subscriptions"] if s["status"] in LIVE]
        extra += max(0, len(live) - 1)
    per_user: dict[str, int] = {}  # sub -> customers stamped as theirs that hold a subscription
    left_empty = 0  # a first click's empty customer, left behind when a Payment Link made the paying one
    for customer in world.stripe.customers():
        owner = customer["metadata"].get("cognito_sub")
        if owner and customer["_subscriptions"]:
            per_user[owner] = per_user.get(owner, 0) + 1
        elif owner and customer["id"] not in mapped_customers(world):
            left_empty += 1
    unbound = sum(1 for c in world.stripe.customers() if not c["metadata"].get("cognito_sub"))

    users = len(world.subs)

    # 2. The checkout route warm, for a returning user with a customer and no subscription.
    name = world.user("warm", "warm@example.com")
    world.manage(name)
    service = world.portal.portal_service()
    aws = {"n": 0}
    for client in {id(c): c for c in (service.resolver.store._client, service.users.directory._client,
                                      service.projections._client)}.values():
        original = client.call

        def counted(action, params, _original=original):
            aws["n"] += 1
            return _original(action, params)

        client.call = counted
    world.subscribe(name)  # the price lookup, cached from here on
    stripe_before, aws["n"] = service.billing.calls, 0
    own = []
    for n in range(args.requests):
        answer, total, outbound = timed(lambda n=n: world.call("GET", "/billing/checkout", name, query={
            "price": PRICE, "return_to": f"https://shop.example.com/r{n}"}))
        assert answer["statusCode"] == 303, answer
        own.append(total - outbound)
    stripe_calls = (service.billing.calls - stripe_before) / args.requests
    aws_calls = aws["n"] / args.requests

    def print(*line, **_):  # noqa: A001 - the table, not the functions' stdout
        table.write(" ".join(line) + "\n")

    purchases = len(world.bought)
    print("| Purchases bound to the signed-in user | Result |")
    print("|---|---|")
    print(f"| Scenarios run / users / purchases meant for a user | {len(scenarios) * args.rounds} / "
          f"{users} / {purchases} |")
    print(f"| Purchases shown to the wrong user | {wrong} |")
    print(f"| Purchases lost to their buyer | {lost} |")
    print(f"| Subscriptions beyond one per double click ({len(world.double_clicks)} double clicks) | {extra} |")
    print(f"| Most customers holding one user's purchases | {max(per_user.values())} |")
    print(f"| Empty first-click customers left behind by a Payment Link purchase (not mapped) | {left_empty} |")
    print(f"| Purchases naming no one, left unbound for support (two users hold the address) | {unbound} |")
    print(f"| Stripe calls / AWS calls per warm checkout request | {stripe_calls:g} / {aws_calls:g} |")
    print(f"| Warm checkout request, handler's own time p50 / p99 ({args.requests} requests) | "
          f"{statistics.median(own) * 1000:.2f} ms / {percentile(own, 99) * 1000:.2f} ms |")
    world.close()
    return 0 if (wrong, lost, extra, max(per_user.values())) == (0, 0, 0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())

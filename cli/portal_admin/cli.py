"""stripe-portal-admin: the operator's command for a deployed stripe portal gateway.

  rotate-key  reads the new Stripe key from stdin or a hidden prompt (never from argv), validates it exactly
              as the rotation function will, stages it as AWSPENDING and starts rotation, then reports.
  check       the preflight: secret, key, Stripe account, permissions, portal configuration, JWKS, app
              clients, plain-link sign-in (domain, callback, flows, scopes, OAuth secret), table.
  whois / link / unlink / forget
              support: who is mapped to which Stripe customer, and the audited changes to that mapping.
  webhooks setup / backfill
              billing status: the Stripe webhook endpoint and its signing secret; every mapped customer's
              projection filled from Stripe at a bounded rate.
  smoke       after a deploy: /health, unauthenticated /portal, CORS preflight, and with a token the whole way.
All take `--stack NAME` (ids read from the stack's parameters and outputs) or explicit ids. Failures are
printed on stderr as what is wrong and the fix; the exit codes are EXIT_* below (docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from portal_gateway.checks.stripe_key_check import passed

from portal_admin.common import (  # noqa: F401 - the exit codes and helpers are part of this module's interface
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    AdminError,
    Target,
    aws_problem,
    boto_factory,
    current_secret,
    default_aws_client,
    default_jwks_url,
    print_checks,
    resolve_target,
)
from portal_admin.keys import read_new_key, run_check, run_rotate, steps_to_do

# --- entry point ---------------------------------------------------------------------------------------------------
COMMANDS = {
    "check": ("preflight: is this deployment ready for customers?",
              "Reads the secret and checks the key (format, mode, Stripe account, permissions, portal "
              "configuration), the JWKS, the app clients, the plain-link sign-in when CognitoDomain is set, and "
              "the customers table. Prints PASS/FAIL with a fix per failure; exit 1 if any failed. Creates "
              "nothing, except that the first passing key of a deployment pins its Stripe account."),
    "rotate-key": ("validate, stage and rotate in a new Stripe key (read from stdin or a hidden prompt)",
                   "Checks the key as the rotation function will, stages it as AWSPENDING, starts the rotation and "
                   "waits for it. A refused key changes nothing. The key is never an argument."),
    "whois": ("show whom a Cognito user, username or Stripe customer is mapped to",
              "Prints ids only: the Cognito sub, the Stripe customer id, when it was mapped, the customer's state "
              "in Stripe (exists, deleted, missing for this key) and the last audited change."),
    "link": ("map a user to a Stripe customer (audited)",
             "For \"I see the wrong account\": refuses a customer stamped as another user's or claimed by one; "
             "writes the mapping conditionally, claims and stamps the customer. Needs --reason."),
    "unlink": ("remove a user's mapping (audited)",
               "The next visit finds or creates a customer again; the claim and the customer's owner stamp are "
               "removed too. Needs --reason."),
    "forget": ("erase a deleted user's mapping and claim (audited)",
               "For erasure requests: the mapping and the claim go; Stripe keeps the customer (docs/operations.md "
               "says how to delete it there). Needs --reason."),
    "webhooks": ("set up the Stripe webhook endpoint that keeps the billing status current",
                 "`webhooks setup` creates the endpoint for exactly the events the webhook function handles (or "
                 "updates the one this deployment made; one at an older URL is retired) and stores its signing "
                 "secret in the stack's webhook secret. `webhooks roll` gives it a new signing secret without "
                 "losing an event. Uses the deployment's Stripe key, or one piped in with --key-stdin."),
    "events": ("send Stripe's events through Amazon EventBridge",
               "`events setup` creates (or updates) Stripe's event destination of type amazon_eventbridge for this "
               "AWS account and region, for exactly the events the functions handle, and prints the partner event "
               "source to deploy with (StripeEventSourceName). Uses the deployment's Stripe key, or one piped in "
               "with --key-stdin. `events replay --since WHEN` replays the stack's event archive (from WHEN to "
               "--until, default now) to the StripeEventsFunction and waits for it: the recovery after a wiped "
               "table or dead-lettered events (events already applied are skipped)."),
    "backfill": ("fill the billing status of every mapped customer from Stripe",
                 "Reads each mapped customer's subscriptions and entitlements at a bounded rate (--rate, Stripe "
                 "requests per second) and stores their projections; a projection a webhook stored later is "
                 "kept. Progress on stderr."),
    "smoke": ("after a deploy: does the API answer as documented?",
              "/health, an unauthenticated /portal (401, or 302 to the sign-in), the CORS preflight when origins "
              "are set, and with --token-stdin the whole way to a portal URL (never printed). Exit 1 on any "
              "failure."),
}


def parser() -> argparse.ArgumentParser:
    from portal_gateway import __version__

    root = argparse.ArgumentParser(prog="stripe-portal-admin", description=__doc__.split("\n\n")[0],
                                   epilog="Exit codes: 0 done, 1 a check failed or a change was refused, 2 usage, "
                                          "3 AWS or Stripe unreachable or credentials refused, 4 not found.")
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (short, long) in COMMANDS.items():
        sub = commands.add_parser(name, help=short, description=f"{short[0].upper()}{short[1:]}. {long}")
        sub.add_argument("--stack", help="CloudFormation stack name: every id below is read from it")
        sub.add_argument("--region", help="AWS region of the stack (default: AWS_REGION, then your profile's)")
        sub.add_argument("--profile", help="AWS named profile to use (default: AWS_PROFILE, then the default chain)")
        if name != "smoke":
            sub.add_argument("--secret-id", help="Secrets Manager id or ARN of the Stripe key (without --stack)")
            sub.add_argument("--mode", choices=["test", "live"], help="StripeMode of the deployment (without --stack)")
            sub.add_argument("--table", help="customers table name, which also holds the pinned Stripe account")
            sub.add_argument("--user-pool-id", help="Cognito user pool id, e.g. eu-west-1_AbCdEf123")
        if name in ("check", "rotate-key"):
            sub.add_argument("--portal-configuration-id", help="bpc_... if the deployment sets one")
        if name == "rotate-key":
            sub.add_argument("--rotation-function-arn", help="rotation function (stack output RotationFunctionArn)")
            sub.add_argument("--stage-only", action="store_true", help="validate and stage, do not promote")
        if name in ("check", "webhooks"):
            sub.add_argument("--webhook-url", help="the stack output WebhookUrl (without --stack)")
            sub.add_argument("--webhook-secret-id", help="the stack output WebhookSecretArn (without --stack)")
        if name == "webhooks":
            sub.add_argument("action", choices=["setup", "roll"],
                             help="setup: create or update the endpoint (a new URL retires the old endpoint); "
                                  "roll: a new signing secret without losing an event")
            sub.add_argument("--keep-old-hours", type=float, default=72.0,
                             help="hours the replaced signing secret stays accepted (default 72: Stripe retries "
                                  "a delivery for up to 3 days)")
            sub.add_argument("--key-stdin", action="store_true",
                             help="read a Stripe key that may write webhook endpoints from stdin (else the "
                                  "deployment's own key)")
        if name == "events":
            sub.add_argument("action", choices=["setup", "replay"],
                             help="setup: create or update the event destination; replay: replay the archive")
            sub.add_argument("--since", help="replay: from when (2026-12-01T09:30Z, or an age: 90m, 6h, 2d)")
            sub.add_argument("--until", help="replay: until when (default now)")
            sub.add_argument("--key-stdin", action="store_true",
                             help="read a Stripe key that may write event destinations from stdin (else the "
                                  "deployment's own key)")
        if name == "backfill":
            sub.add_argument("--rate", type=float, default=20.0,
                             help="Stripe requests per second at most (default 20; Stripe allows 25 in test mode)")
        if name == "check":
            sub.add_argument("--client-ids", help="comma-separated app client ids (without --stack)")
            sub.add_argument("--jwks-url", help="JWKS URL, when the deployment overrides it")
        if name == "whois":
            who = sub.add_mutually_exclusive_group(required=True)
            who.add_argument("--sub", help="the user's Cognito sub")
            who.add_argument("--username", help="the user's Cognito username (looked up with AdminGetUser)")
            who.add_argument("--customer", help="a Stripe customer id (cus_...): which users map to it")
        if name in ("link", "unlink", "forget"):
            sub.add_argument("sub", help="the user's Cognito sub (see whois --username)")
        if name == "link":
            sub.add_argument("customer", help="the Stripe customer id (cus_...) the user must see")
        if name in ("link", "unlink", "forget"):
            sub.add_argument("--reason", required=True, help="why, for the audit line (e.g. a ticket number)")
        if name == "smoke":
            sub.add_argument("--url", help="the PortalUrl to test (without --stack): https, or http on loopback")
            sub.add_argument("--sign-in", choices=["hosted-ui", "none"],
                             help="plain links sign in through the Hosted UI (302) or not (401); default: the "
                                  "stack's CognitoDomain")
            sub.add_argument("--token-stdin", action="store_true",
                             help="read a user's ID or access token from stdin and go the whole way")
    return root


def _fail(err: TextIO, what: str, fix: str = "") -> None:
    print(f"error: {what}", file=err)
    if fix:
        print(f"  fix: {fix}", file=err)


def main(argv: list[str] | None = None, *, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout,
         err: TextIO | None = None, client: Callable[[str], Any] | None = None) -> int:
    err = err or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    client = client or boto_factory(args.region, args.profile)
    try:
        return _run(args, stdin, out, client, err)
    except AdminError as exc:
        _fail(err, exc.what, exc.fix)
        return exc.code
    except Exception as exc:  # noqa: BLE001 - an AWS SDK error: one sentence and the fix, never a traceback
        if type(exc).__module__.startswith(("botocore", "boto3")):
            problem = aws_problem(exc, COMMANDS[args.command][0].split(":")[0].split(" (")[0])
            _fail(err, problem.what, problem.fix)
            return problem.code
        from portal_admin.support import SupportError

        if isinstance(exc, SupportError):
            _fail(err, exc.what, exc.fix)
            return exc.code
        raise


def _run(args: argparse.Namespace, stdin: TextIO, out: TextIO, client: Callable[[str], Any],
         err: TextIO | None = None) -> int:
    try:
        target = resolve_target(args, client)
    except Exception as exc:  # noqa: BLE001 - reported as the stack lookup that failed
        if not type(exc).__module__.startswith(("botocore", "boto3")):
            raise
        problem = aws_problem(exc, f"could not read the stack {args.stack!r}")
        raise AdminError(problem.what, problem.fix, problem.code) from None
    if args.command == "check":
        if not args.stack and not any((target.secret_id, target.user_pool_id, target.table)):
            raise AdminError("nothing to check", "Pass --stack NAME, or the ids (--secret-id, --mode, "
                             "--user-pool-id, --client-ids, --table)", EXIT_USAGE)
        checks = run_check(target, client)
        if target.webhook_url and target.webhook_secret_id:
            from botocore.exceptions import BotoCoreError, ClientError

            from portal_admin.webhooks import webhook_checks

            try:
                stripe = _stripe_caller(target, client)
            except (BotoCoreError, ClientError):
                stripe = None  # the secret's own check above already says why
            checks += webhook_checks(url=target.webhook_url, secret_id=target.webhook_secret_id, stripe=stripe,
                                     client=client)
        if target.event_source_name:
            from portal_admin.events import event_destination_checks, event_rule_checks

            checks += event_destination_checks(source=target.event_source_name,
                                               stripe=_stripe_caller(target, client))
            checks += event_rule_checks(rule_arn=target.event_rule_arn, source=target.event_source_name,
                                        events=client("events"))
        print_checks(checks, out)
        ok = passed(checks)
        print("All checks passed." if ok else "Some checks failed.", file=out)
        if not ok:
            print("Still to do (docs/deploy.md):", file=out)
            for number, text in steps_to_do(checks):
                print(f"  step {number}: {text}", file=out)
        return EXIT_OK if ok else EXIT_FAILED
    if args.command == "rotate-key":
        new_key = read_new_key(stdin).strip()
        if not new_key:
            raise AdminError("no key given", "Pipe it on stdin or type it at the prompt", EXIT_USAGE)
        return run_rotate(target, new_key, stage_only=args.stage_only, out=out,
                          client=client)
    if args.command == "webhooks":
        from portal_admin.webhooks import roll, setup

        webhook_url, webhook_secret_id = target.webhook_url, target.webhook_secret_id
        if not webhook_url or not webhook_secret_id:
            raise AdminError("no webhook URL or secret", "Pass --stack NAME, or --webhook-url and --webhook-secret-id "
                             "(a stack with StripeWebhookEndpoint=disabled has no webhook: see events)", EXIT_USAGE)
        stripe = _stripe_caller(target, client, key=stdin.readline().strip() if args.key_stdin else None)
        if stripe is None:
            raise AdminError("no usable Stripe key", "Put the key in first (rotate-key), or pipe one with "
                             "--key-stdin", EXIT_FAILED)
        if args.action == "roll":
            return _stripe_refusals(lambda: roll(secret_id=webhook_secret_id, stripe=stripe, client=client,
                                                 out=out, keep_old_hours=args.keep_old_hours))
        return _stripe_refusals(lambda: setup(url=webhook_url, secret_id=webhook_secret_id,
                                              stripe=stripe, client=client, out=out,
                                              keep_old_hours=args.keep_old_hours))
    if args.command == "events" and args.action == "replay":
        return _replay(args, target, client, out)
    if args.command == "events":
        from portal_admin.events import aws_account
        from portal_admin.events import setup as events_setup

        if not args.stack:
            raise AdminError("no stack", "Pass --stack NAME: the destination is made for its account and region",
                             EXIT_USAGE)
        stripe = _stripe_caller(target, client, key=stdin.readline().strip() if args.key_stdin else None)
        if stripe is None:
            raise AdminError("no usable Stripe key", "Put the key in first (rotate-key), or pipe one with "
                             "--key-stdin", EXIT_FAILED)
        region = client("cloudformation").meta.region_name
        account = aws_account(client)
        return _stripe_refusals(lambda: events_setup(stack=args.stack, account=account, region=region,
                                                     current_source=target.event_source_name, stripe=stripe,
                                                     out=out))
    if args.command == "backfill":
        from portal_admin.webhooks import backfill

        table, mode, user_pool_id = _table_ids(target)
        stripe = _stripe_caller(target, client)
        if stripe is None:
            raise AdminError("no usable Stripe key", "Put the key in first (rotate-key)", EXIT_FAILED)
        return _stripe_refusals(lambda: backfill(table=table, mode=mode,
                                                 user_pool_id=user_pool_id, stripe=stripe, client=client,
                                                 out=out, progress=err, rate=args.rate))
    if args.command == "smoke":
        from portal_admin.smoke import checked_portal_url, run_smoke

        url = args.url or target.portal_url
        if not url:
            raise AdminError("no portal URL", "Pass --stack NAME or --url", EXIT_USAGE)
        url_problem = checked_portal_url(url)
        if url_problem:
            raise AdminError(url_problem, "Pass the stack output PortalUrl: https://<api>/portal", EXIT_USAGE)
        token = stdin.readline().strip() if args.token_stdin else None
        if args.token_stdin and not token:
            raise AdminError("--token-stdin given but stdin is empty", "Pipe the token in", EXIT_USAGE)
        hosted_ui = args.sign_in == "hosted-ui" if args.sign_in else bool(target.cognito_domain)
        checks = run_smoke(url, hosted_ui=hosted_ui, origins=target.allowed_origins, token=token)
        print_checks(checks, out)
        ok = passed(checks)
        print("Smoke test passed." if ok else "Smoke test failed.", file=out)
        return EXIT_OK if ok else EXIT_FAILED
    return _support(args, target, out, client)


def _support(args: argparse.Namespace, target: Target, out: TextIO, client: Callable[[str], Any]) -> int:
    from portal_admin import support

    table, mode, user_pool_id = _table_ids(target)
    ctx = support.Context(table=table, mode=mode, user_pool_id=user_pool_id, client=client,
                          stripe=_stripe_caller(target, client), out=out, stack=args.stack,
                          audit_retention_days=target.audit_retention_days)
    if args.command == "whois":
        return support.whois(ctx, sub=args.sub, username=args.username, customer=args.customer)
    who = client("sts").get_caller_identity()["Arn"]
    if args.command == "link":
        return support.link(ctx, args.sub, args.customer, reason=args.reason, who=who)
    if args.command == "unlink":
        return support.unlink(ctx, args.sub, reason=args.reason, who=who)
    return support.forget(ctx, args.sub, reason=args.reason, who=who)


def _replay(args: argparse.Namespace, target: Target, client: Callable[[str], Any], out: TextIO) -> int:
    import datetime

    from portal_admin.events import replay, when

    if not args.stack or not args.since:
        raise AdminError("replay needs --stack and --since", "e.g. events replay --stack NAME --since 6h",
                         EXIT_USAGE)
    if not target.event_archive_arn:
        raise AdminError(f"the stack {args.stack} has no event archive",
                         "Stripe's events reach it by webhook; deploy with StripeEventSourceName (docs/deploy.md)",
                         EXIT_USAGE)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    try:
        since = when(args.since, now)
        until = when(args.until, now) if args.until else now
    except ValueError as exc:
        raise AdminError(str(exc), "Pass --since as 2026-12-01T09:30Z or as an age (90m, 6h, 2d)", EXIT_USAGE) from None
    if not since < until <= now:
        raise AdminError(f"nothing to replay from {since:%Y-%m-%dT%H:%M:%SZ} to {until:%Y-%m-%dT%H:%M:%SZ}",
                         "--since must come before --until, and --until cannot be in the future", EXIT_USAGE)
    done = replay(stack=args.stack, archive_arn=target.event_archive_arn, rule_arn=target.event_rule_arn,
                  since=since, until=until, events=client("events"), out=out)
    return EXIT_OK if done else EXIT_FAILED


def _table_ids(target: Target) -> tuple[str, str, str]:
    """The table, the Stripe mode and the user pool, which the table's commands all need."""
    table, mode, user_pool_id = target.table, target.mode, target.user_pool_id
    if not table or not mode or not user_pool_id:
        missing = [flag for flag, value in (("--table", table), ("--mode", mode), ("--user-pool-id", user_pool_id))
                   if not value]
        raise AdminError(f"missing {', '.join(missing)}", "Pass --stack NAME, or the ids", EXIT_USAGE)
    return table, mode, user_pool_id


def _stripe_refusals(run: Callable[[], int]) -> int:
    """Run a command that calls Stripe; Stripe's refusal becomes one sentence and a fix."""
    from portal_gateway.billing.stripe_client import StripeApiError

    try:
        return run()
    except StripeApiError as exc:
        if exc.kind in ("PermissionError", "AuthenticationError"):
            raise AdminError(f"Stripe refused the key ({exc.kind})", "Use a key with the permissions docs/deploy.md "
                             "lists (webhooks setup: Webhook Endpoints write, or --key-stdin)", EXIT_FAILED) from None
        raise AdminError(f"Stripe answered {exc.kind} (http {exc.http_status})", "Try again in a moment",
                         EXIT_UNREACHABLE) from None


def _stripe_caller(target: Target, client: Callable[[str], Any], *, key: str | None = None):
    """(method, path, params) -> answer, with the deployment's own key (or `key`); None when there is none."""
    from portal_gateway.billing.stripe_client import StripeHttp
    from portal_gateway.billing.stripe_key import parse_stripe_key
    from portal_gateway.errors import StripeKeyUnavailable

    if not key:
        if not target.secret_id:
            return None
        key = current_secret(client, target.secret_id)
    try:
        key = parse_stripe_key(key)
    except StripeKeyUnavailable:
        return None
    return StripeHttp(api_base=target.stripe_api_base, timeout_seconds=10).with_key(key)


if __name__ == "__main__":
    sys.exit(main())

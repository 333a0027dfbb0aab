"""Admin commands for operators: `stripe-portal-admin rotate-key` and `stripe-portal-admin check`.

  rotate-key  reads the new Stripe key from stdin or a hidden prompt (never from argv), validates it exactly
              as the rotation function will, stages it as AWSPENDING and starts rotation, then reports.
  check       the preflight: secret readable, key mode, Stripe reachable with it, permissions, portal
              configuration, JWKS reachable, app clients exist in the pool, table exists. Exit code 1 on
              any failure, with the fix for each.
Both take `--stack NAME` (ids read from the stack's parameters and outputs) or explicit ids.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from .key_check import AccountPins, Check, check_account_pin, check_stripe_key, passed

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Target:
    secret_id: str | None = None
    mode: str | None = None
    user_pool_id: str | None = None
    client_ids: tuple[str, ...] = ()
    table: str | None = None
    jwks_url: str | None = None
    portal_configuration_id: str | None = None
    rotation_function_arn: str | None = None
    stripe_api_base: str | None = None


def _boto(service: str):
    import boto3

    return boto3.client(service)


def resolve_target(args: argparse.Namespace, client: Callable[[str], Any] = _boto) -> Target:
    target = Target()
    if args.stack:
        stack = client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        target = Target(
            secret_id=outputs.get("StripeSecretArn"),
            mode=params.get("StripeMode"),
            user_pool_id=params.get("CognitoUserPoolId"),
            client_ids=tuple(c for c in params.get("CognitoClientIds", "").split(",") if c),
            table=outputs.get("CustomersTableName"),
            jwks_url=params.get("CognitoJwksUrl") or None,
            portal_configuration_id=params.get("PortalConfigurationId") or None,
            rotation_function_arn=outputs.get("RotationFunctionArn"),
        )
    for field, value in (
        ("secret_id", args.secret_id), ("mode", args.mode), ("user_pool_id", getattr(args, "user_pool_id", None)),
        ("table", getattr(args, "table", None)), ("jwks_url", getattr(args, "jwks_url", None)),
        ("portal_configuration_id", args.portal_configuration_id),
        ("rotation_function_arn", getattr(args, "rotation_function_arn", None)),
    ):
        if value:
            setattr(target, field, value)
    if getattr(args, "client_ids", None):
        target.client_ids = tuple(c.strip() for c in args.client_ids.split(",") if c.strip())
    target.stripe_api_base = os.environ.get("STRIPE_API_BASE") or None
    if target.jwks_url is None and target.user_pool_id:
        region = target.user_pool_id.split("_", 1)[0]
        target.jwks_url = f"https://cognito-idp.{region}.amazonaws.com/{target.user_pool_id}/.well-known/jwks.json"
    return target


def print_checks(checks: list[Check], out: TextIO) -> None:
    width = max((len(c.name) for c in checks), default=10)
    for check in checks:
        line = f"{'PASS' if check.ok else 'FAIL'}  {check.name:<{width}}"
        if check.detail:
            line += f"  {check.detail}"
        if not check.ok and check.fix:
            line += f"\n      fix: {check.fix}"
        print(line, file=out)


# --- check -----------------------------------------------------------------------------------------------------
def run_check(target: Target, client: Callable[[str], Any] = _boto) -> list[Check]:
    from botocore.exceptions import BotoCoreError, ClientError

    def aws_error(exc: Exception) -> str:
        if isinstance(exc, ClientError):
            return exc.response.get("Error", {}).get("Code", "ClientError")
        return type(exc).__name__

    checks: list[Check] = []
    if not target.secret_id or not target.mode:
        checks.append(Check("secret readable", False, "no secret id or Stripe mode given",
                            "Pass --stack NAME, or --secret-id and --mode"))
    else:
        try:
            value = client("secretsmanager").get_secret_value(SecretId=target.secret_id).get("SecretString")
            checks.append(Check("secret readable", True))
            key_checks = check_stripe_key(value or "", expected_mode=target.mode, api_base=target.stripe_api_base,
                                          portal_configuration_id=target.portal_configuration_id)
            checks += key_checks
            if target.table:
                checks.append(check_account_pin(key_checks, AccountPins(target.table, client("dynamodb")),
                                                target.mode))
        except (ClientError, BotoCoreError) as exc:
            checks.append(Check("secret readable", False, aws_error(exc),
                                "Check the secret id and that your credentials may read it"))

    checks.append(_check_jwks(target.jwks_url))

    if not target.user_pool_id or not target.client_ids:
        checks.append(Check("app clients in pool", False, "no user pool or client ids given",
                            "Pass --stack NAME, or --user-pool-id and --client-ids"))
    else:
        cognito = client("cognito-idp")
        for client_id in target.client_ids:
            try:
                cognito.describe_user_pool_client(UserPoolId=target.user_pool_id, ClientId=client_id)
                checks.append(Check(f"app client {client_id}", True))
            except (ClientError, BotoCoreError) as exc:
                checks.append(Check(f"app client {client_id}", False, aws_error(exc),
                                    "Fix CognitoClientIds: the id must be an app client of the pool"))

    if not target.table:
        checks.append(Check("customers table", False, "no table given", "Pass --stack NAME or --table"))
    else:
        try:
            status = client("dynamodb").describe_table(TableName=target.table)["Table"]["TableStatus"]
            checks.append(Check("customers table", status == "ACTIVE", status,
                                "Wait for the table to become ACTIVE"))
        except (ClientError, BotoCoreError) as exc:
            checks.append(Check("customers table", False, aws_error(exc), "Deploy the stack; check the table name"))
    return checks


def _check_jwks(url: str | None) -> Check:
    from .auth import JwksCache
    from .errors import AuthUnavailable

    if not url:
        return Check("JWKS reachable", False, "no user pool given", "Pass --stack NAME or --user-pool-id")
    try:
        keys = JwksCache(url, timeout=5)._download()
    except AuthUnavailable as exc:
        return Check("JWKS reachable", False, exc.log_detail or "", "Check the user pool id or CognitoJwksUrl")
    usable = sum(1 for _, key in keys.values() if key is not None)
    return Check("JWKS reachable", usable > 0, f"{usable} RS256 signing key(s)", "The JWKS has no RS256 keys")


# --- rotate-key -------------------------------------------------------------------------------------------------
def read_new_key(stdin: TextIO) -> str:
    if stdin.isatty():
        return getpass.getpass("New Stripe key (input hidden): ")
    return stdin.readline()


def run_rotate(target: Target, new_key: str, *, stage_only: bool, wait_seconds: float, out: TextIO,
               client: Callable[[str], Any] = _boto) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    if not target.secret_id or not target.mode:
        print("FAIL  need --stack NAME, or --secret-id and --mode", file=out)
        return EXIT_USAGE
    checks = check_stripe_key(new_key, expected_mode=target.mode, api_base=target.stripe_api_base,
                              portal_configuration_id=target.portal_configuration_id)
    if target.table:
        checks.append(check_account_pin(checks, AccountPins(target.table, client("dynamodb")), target.mode))
    print_checks(checks, out)
    if not target.table:
        print("note  no --table (or --stack): the rotation function checks the Stripe account instead", file=out)
    if not passed(checks):
        print("The new key was refused; nothing was changed.", file=out)
        return EXIT_FAILED
    secrets = client("secretsmanager")
    token = str(uuid.uuid4())
    value = json.dumps({"api_key": new_key.strip()})
    try:
        secrets.put_secret_value(SecretId=target.secret_id, ClientRequestToken=token, SecretString=value,
                                 VersionStages=["AWSPENDING"])
    except (ClientError, BotoCoreError) as exc:
        print(f"FAIL  staging the key: {getattr(exc, 'response', {}).get('Error', {}).get('Code', type(exc).__name__)}",
              file=out)
        return EXIT_FAILED
    print(f"PASS  staged as AWSPENDING (version {token})", file=out)
    if stage_only:
        print("Staged only: start rotation from the console or with `aws secretsmanager rotate-secret`.", file=out)
        return EXIT_OK
    rotate_args = {"SecretId": target.secret_id, "ClientRequestToken": token, "RotateImmediately": True}
    if target.rotation_function_arn:
        rotate_args["RotationLambdaARN"] = target.rotation_function_arn
    try:
        secrets.rotate_secret(**rotate_args)
    except (ClientError, BotoCoreError) as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        print(f"FAIL  starting rotation: {code}. The key is staged; the live key is unchanged.", file=out)
        print("      fix: pass --rotation-function-arn (stack output RotationFunctionArn) or use --stack", file=out)
        return EXIT_FAILED
    print("PASS  rotation started", file=out)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        stages = secrets.describe_secret(SecretId=target.secret_id).get("VersionIdsToStages", {}).get(token, [])
        if "AWSCURRENT" in stages:
            print("PASS  the new key is AWSCURRENT; functions pick it up within their cache TTL", file=out)
            return EXIT_OK
        time.sleep(2)
    print("FAIL  rotation did not finish in time; see the rotation function's logs. The old key stays live "
          "until it does.", file=out)
    return EXIT_FAILED


# --- entry point ---------------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="stripe-portal-admin", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    for name, helptext in (("rotate-key", "validate, stage and rotate in a new Stripe key (read from stdin)"),
                           ("check", "preflight: is this deployment ready for customers?")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--stack", help="CloudFormation stack name (reads ids from it)")
        sub.add_argument("--secret-id", help="Secrets Manager id or ARN of the Stripe key")
        sub.add_argument("--mode", choices=["test", "live"], help="STRIPE_MODE of the deployment")
        sub.add_argument("--portal-configuration-id", help="bpc_... if the deployment sets one")
        sub.add_argument("--table", help="customers table name (holds the pinned Stripe account)")
        if name == "rotate-key":
            sub.add_argument("--rotation-function-arn", help="rotation function (stack output RotationFunctionArn)")
            sub.add_argument("--stage-only", action="store_true", help="validate and stage, do not start rotation")
            sub.add_argument("--wait", type=float, default=120, help="seconds to wait for the rotation to finish")
        else:
            sub.add_argument("--user-pool-id")
            sub.add_argument("--client-ids", help="comma-separated app client ids")
            sub.add_argument("--jwks-url", help="JWKS URL override")
    return root


def main(argv: list[str] | None = None, *, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout,
         client: Callable[[str], Any] = _boto) -> int:
    args = parser().parse_args(argv)
    try:
        target = resolve_target(args, client)
    except Exception as exc:  # noqa: BLE001 - any lookup failure is reported, not dumped
        print(f"FAIL  could not read the stack: {type(exc).__name__}", file=out)
        return EXIT_FAILED
    if args.command == "check":
        checks = run_check(target, client)
        print_checks(checks, out)
        ok = passed(checks)
        print("All checks passed." if ok else "Some checks failed.", file=out)
        return EXIT_OK if ok else EXIT_FAILED
    new_key = read_new_key(stdin).strip()
    if not new_key:
        print("FAIL  no key given (pipe it on stdin or type it at the prompt)", file=out)
        return EXIT_USAGE
    return run_rotate(target, new_key, stage_only=args.stage_only, wait_seconds=args.wait, out=out, client=client)


if __name__ == "__main__":
    sys.exit(main())

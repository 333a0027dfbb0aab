"""stripe-portal-admin: the operator's command for a deployed stripe portal gateway.

  rotate-key  reads the new Stripe key from stdin or a hidden prompt (never from argv), validates it exactly
              as the rotation function will, stages it as AWSPENDING and starts rotation, then reports.
  check       the preflight: secret, key, Stripe account, permissions, portal configuration, JWKS, app
              clients, plain-link sign-in (domain, callback, flows, scopes, OAuth secret), table.
  whois / link / unlink / forget
              support: who is mapped to which Stripe customer, and the audited changes to that mapping.
  smoke       after a deploy: /health, unauthenticated /portal, CORS preflight, and with a token the whole way.
All take `--stack NAME` (ids read from the stack's parameters and outputs) or explicit ids. Failures are
printed on stderr as what is wrong and the fix; the exit codes are EXIT_* below (docs/operations.md).
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

from .key_check import AccountPins, Check, check_stripe_key, passed

# 0 done / all checks passed; 1 a check failed or a change was refused; 2 the command line is incomplete or
# wrong; 3 AWS or Stripe could not be reached or refused the credentials; 4 what was asked for does not exist.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4


class AdminError(Exception):
    """A failure to report as one line (what is wrong) plus its fix, with an exit code; never a traceback."""

    def __init__(self, what: str, fix: str = "", code: int = EXIT_FAILED):
        super().__init__(what)
        self.what, self.fix, self.code = what, fix, code


def aws_problem(exc: Exception, doing: str) -> AdminError:
    """An AWS SDK exception as a sentence an operator can act on (no class names, no stack traces)."""
    name = type(exc).__name__
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
    if name == "NoRegionError":
        return AdminError(f"{doing}: no AWS region", "Pass --region, or set AWS_REGION (or AWS_DEFAULT_REGION)",
                          EXIT_USAGE)
    if name in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"):
        found = "the profile does not exist" if name == "ProfileNotFound" else "none found"
        return AdminError(f"{doing}: no usable AWS credentials ({found})",
                          "Pass --profile, set AWS_PROFILE, or run `aws configure` / `aws sso login`",
                          EXIT_UNREACHABLE)
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
        return AdminError(f"{doing}: AWS could not be reached", "Check the network and the region", EXIT_UNREACHABLE)
    if code in ("ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId",
                "SignatureDoesNotMatch"):
        return AdminError(f"{doing}: AWS refused the credentials ({code})",
                          "Refresh them (`aws sso login`) or pick another --profile", EXIT_UNREACHABLE)
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return AdminError(f"{doing}: your credentials are not allowed to do this ({code})",
                          "Use a role that may operate this stack (docs/operations.md)", EXIT_UNREACHABLE)
    if code == "ValidationError" and "does not exist" in str(exc):
        return AdminError(f"{doing}: no such stack in this region", "Check the stack name and --region",
                          EXIT_NOT_FOUND)
    if code in ("ResourceNotFoundException", "UserNotFoundException"):
        return AdminError(f"{doing}: not found ({code})", "Check the ids (or --stack) and the region", EXIT_NOT_FOUND)
    return AdminError(f"{doing}: AWS answered {code or name}", "Try again; see the AWS service's health page",
                      EXIT_UNREACHABLE)


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
    cognito_domain: str | None = None
    callback_url: str | None = None
    return_url: str | None = None  # ReturnUrl: the default sign-out page, an allowed sign-out URL of the client
    stack: str | None = None
    audit_retention_days: int = 400
    oauth_client_id: str | None = None
    oauth_secret_id: str | None = None
    portal_url: str | None = None
    allowed_origins: tuple[str, ...] = ()


def boto_factory(region: str | None = None, profile: str | None = None) -> Callable[[str], Any]:
    """boto3 clients for --region/--profile. The region also comes from AWS_REGION, which botocore itself does
    not read (only AWS_DEFAULT_REGION), so "set AWS_REGION" works as people expect."""
    def client(service: str):
        import boto3

        session = boto3.Session(profile_name=profile or None)
        return session.client(service, region_name=region or os.environ.get("AWS_REGION") or session.region_name)
    return client


_boto = boto_factory()


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
            cognito_domain=params.get("CognitoDomain") or None,
            # Without a CallbackUrl parameter the function derives this very address (docs/deploy.md, step 5).
            callback_url=params.get("CallbackUrl") or outputs.get("CallbackUrlToRegister") or None,
            return_url=params.get("ReturnUrl") or None,
            stack=args.stack,
            audit_retention_days=int(params.get("AuditRetentionDays") or 400),
            oauth_client_id=params.get("OAuthClientId") or None,
            oauth_secret_id=outputs.get("OAuthSecretArn"),
            portal_url=outputs.get("PortalUrl"),
            allowed_origins=tuple(o for o in params.get("AllowedOrigins", "").split(",") if o),
        )
    for field, value in (
        ("secret_id", getattr(args, "secret_id", None)), ("mode", getattr(args, "mode", None)),
        ("user_pool_id", getattr(args, "user_pool_id", None)),
        ("table", getattr(args, "table", None)), ("jwks_url", getattr(args, "jwks_url", None)),
        ("portal_configuration_id", getattr(args, "portal_configuration_id", None)),
        ("rotation_function_arn", getattr(args, "rotation_function_arn", None)),
    ):
        if value:
            setattr(target, field, value)
    if getattr(args, "client_ids", None):
        target.client_ids = tuple(c.strip() for c in args.client_ids.split(",") if c.strip())
    target.stripe_api_base = os.environ.get("STRIPE_API_BASE") or None
    if target.jwks_url is None and target.user_pool_id:
        target.jwks_url = default_jwks_url(target.user_pool_id)
    return target


def default_jwks_url(user_pool_id: str) -> str | None:
    """The pool's JWKS, from the one place that knows Cognito's host per partition (what the function uses)."""
    from .aws_endpoints import EndpointError, cognito_issuer

    try:
        return f"{cognito_issuer(user_pool_id, user_pool_id.split('_', 1)[0])}/.well-known/jwks.json"
    except EndpointError:
        return None


# Which step of the deploy guide (docs/deploy.md) a failed check belongs to, so a fresh stack's `check` reads as
# a to-do list in the guide's order.
README_STEPS = (
    (1, "prepare Cognito (user pool, app client, Hosted UI domain, code grant, scopes)",
     ("app client", "sign-in domain", "sign-in app client", "authorization code flow", "sign-in scopes",
      "JWKS reachable")),
    (2, "prepare Stripe (save the customer portal settings; a restricted key with the listed permissions)",
     ("portal configuration", "permission: Customers read", "permission: Customers write",
      "permission: Customer portal write")),
    (3, "deploy the stack (sam deploy --guided)", ("customers table", "OAuth secret", "secret readable")),
    (4, "put the Stripe key in: stripe-portal-admin rotate-key --stack <stack>",
     ("key format", "key mode", "Stripe accepts the key", "Stripe reachable", "Stripe account",
      "same Stripe account as before")),
    (5, "register the stack output CallbackUrlToRegister (callback) and ReturnUrl (sign-out) on the app client",
     ("callback URL registered", "sign-out URL registered")),
)


def steps_to_do(checks: list[Check]) -> list[tuple[int, str]]:
    """The deploy guide's steps the failed checks point at, once each, in the guide's order."""
    failed = {"app client" if c.name.startswith("app client ") else c.name for c in checks if not c.ok}
    return [(number, text) for number, text, names in README_STEPS if failed.intersection(names)]


def current_secret(client: Callable[[str], Any], secret_id: str) -> str:
    """The AWSCURRENT value, by name (what a plain read means in AWS; moto needs it said after a rotation)."""
    return client("secretsmanager").get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT").get(
        "SecretString") or ""


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
            value = current_secret(client, target.secret_id)
            checks.append(Check("secret readable", True))
            pins = AccountPins(target.table, client("dynamodb")) if target.table else None
            checks += check_stripe_key(value or "", expected_mode=target.mode, api_base=target.stripe_api_base,
                                       portal_configuration_id=target.portal_configuration_id, pins=pins)
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

    if target.cognito_domain:
        checks += _check_sign_in(target, client, aws_error)

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


SIGN_IN_SCOPES = ("openid", "email")  # what the plain-link sign-in asks for (oauth.py); nothing more is needed


def _check_sign_in(target: Target, client: Callable[[str], Any], aws_error: Callable[[Exception], str]) -> list[Check]:
    """The plain-link sign-in: the Hosted UI domain, the app client's callback, flows and scopes, the OAuth secret."""
    from urllib.parse import urlsplit

    from botocore.exceptions import BotoCoreError, ClientError

    checks: list[Check] = []
    cognito = client("cognito-idp")
    domain = target.cognito_domain or ""
    host = urlsplit(domain if "://" in domain else f"https://{domain}").hostname or ""
    prefix = host.split(".")[0] if host.endswith(".amazoncognito.com") else host
    try:
        described = cognito.describe_user_pool_domain(Domain=prefix).get("DomainDescription") or {}
        ok = described.get("UserPoolId") == target.user_pool_id
        checks.append(Check("sign-in domain", ok, host if ok else f"{host} is not a domain of this user pool",
                            "Create the Hosted UI / managed login domain on the pool, or fix CognitoDomain"))
    except (ClientError, BotoCoreError) as exc:
        checks.append(Check("sign-in domain", False, aws_error(exc), "Check CognitoDomain"))
    client_id = target.oauth_client_id or (target.client_ids[0] if target.client_ids else "")
    try:
        app_client = cognito.describe_user_pool_client(UserPoolId=target.user_pool_id,
                                                       ClientId=client_id)["UserPoolClient"]
    except (ClientError, BotoCoreError) as exc:
        return checks + [Check("sign-in app client", False, aws_error(exc), "Fix OAuthClientId / CognitoClientIds")]
    callbacks = app_client.get("CallbackURLs") or []
    if not target.callback_url:
        checks.append(Check("callback URL registered", False, "the callback URL is unknown without --stack",
                            "Pass --stack NAME (its output CallbackUrlToRegister is the callback URL)"))
    else:
        checks.append(Check("callback URL registered", target.callback_url in callbacks,
                            f"{len(callbacks)} callback URL(s) on the app client",
                            "Add the stack output CallbackUrlToRegister to the app client's allowed callback URLs"))
    if target.return_url:
        logout_urls = app_client.get("LogoutURLs") or []
        checks.append(Check("sign-out URL registered", target.return_url in logout_urls,
                            f"{len(logout_urls)} sign-out URL(s) on the app client",
                            f"Add {target.return_url} (ReturnUrl) to the app client's allowed sign-out URLs, so "
                            "/portal/signout can end the Hosted UI session"))
    flows = app_client.get("AllowedOAuthFlows") or []
    flows_ok = "code" in flows and app_client.get("AllowedOAuthFlowsUserPoolClient")
    checks.append(Check("authorization code flow", bool(flows_ok), "",
                        "On the app client, enable OAuth with the Authorization code grant"))
    scopes = set(app_client.get("AllowedOAuthScopes") or [])
    missing = [scope for scope in SIGN_IN_SCOPES if scope not in scopes]
    checks.append(Check("sign-in scopes", not missing, "missing: " + ", ".join(missing) if missing else "openid email",
                        "Allow the scopes openid and email on the app client"))
    if not target.oauth_secret_id:
        checks.append(Check("OAuth secret", False, "no OAuthSecretArn output",
                            "Deploy the stack with CognitoDomain set (it creates the secret)"))
        return checks
    try:
        value = json.loads(current_secret(client, target.oauth_secret_id))
        cookie_ok = isinstance(value.get("cookie_key"), str) and len(value["cookie_key"]) >= 32
        needs_secret = bool(app_client.get("ClientSecret"))
        secret_ok = not needs_secret or bool(value.get("client_secret"))
        detail = "cookie key present" if cookie_ok else "cookie_key missing or shorter than 32 characters"
        if not secret_ok:
            detail = "the app client has a secret but the OAuth secret's client_secret is empty"
        checks.append(Check("OAuth secret", cookie_ok and secret_ok, detail,
                            "Put the app client's secret in the OAuth secret's client_secret field (docs/deploy.md)"))
    except (ClientError, BotoCoreError) as exc:
        checks.append(Check("OAuth secret", False, aws_error(exc), "Check the OAuthSecretArn output and your access"))
    except (ValueError, TypeError, KeyError):
        checks.append(Check("OAuth secret", False, "not JSON with a cookie_key", "Let the stack recreate it"))
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
        raise AdminError("no secret or Stripe mode to rotate", "Pass --stack NAME, or --secret-id and --mode",
                         EXIT_USAGE)
    pins = AccountPins(target.table, client("dynamodb")) if target.table else None
    checks = check_stripe_key(new_key, expected_mode=target.mode, api_base=target.stripe_api_base,
                              portal_configuration_id=target.portal_configuration_id, pins=pins)
    print_checks(checks, out)
    if not target.table:
        print("note  no --table (or --stack): the rotation function checks the Stripe account instead", file=out)
    if not passed(checks):
        print("The new key was refused; nothing was changed.", file=out)
        return EXIT_FAILED
    secrets = client("secretsmanager")
    stages = secrets.describe_secret(SecretId=target.secret_id).get("VersionIdsToStages", {})
    previous = next((version for version, names in stages.items() if "AWSCURRENT" in names), None)
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
            _audit_rotation(target, client, out, previous=previous, current=token)
            return EXIT_OK
        time.sleep(2)
    print("FAIL  rotation did not finish in time; see the rotation function's logs. The old key stays live "
          "until it does.", file=out)
    return EXIT_FAILED


def _audit_rotation(target: Target, client: Callable[[str], Any], out: TextIO, *, previous: str | None,
                    current: str) -> None:
    """Key rotations are recorded like support changes (secret version ids only, never a key)."""
    if not target.table:
        return
    from . import support

    ctx = support.Context(table=target.table, mode=target.mode, user_pool_id=target.user_pool_id or "",
                          client=client, stripe=None, out=out, stack=target.stack,
                          audit_retention_days=target.audit_retention_days)
    who = client("sts").get_caller_identity()["Arn"]
    support.Audit(ctx, who, "rotate-key", "Stripe key rotated with stripe-portal-admin rotate-key",
                  subject="stripe-key", before=previous, after=current).done()


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
    "smoke": ("after a deploy: does the API answer as documented?",
              "/health, an unauthenticated /portal (401, or 302 to the sign-in), the CORS preflight when origins "
              "are set, and with --token-stdin the whole way to a portal URL (never printed). Exit 1 on any "
              "failure."),
}


def parser() -> argparse.ArgumentParser:
    from . import __version__

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
            sub.add_argument("--stage-only", action="store_true", help="validate and stage, do not start rotation")
            sub.add_argument("--wait", type=float, default=120, help="seconds to wait for the rotation (default 120)")
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
        return _run(args, stdin, out, client)
    except AdminError as exc:
        _fail(err, exc.what, exc.fix)
        return exc.code
    except Exception as exc:  # noqa: BLE001 - an AWS SDK error: one sentence and the fix, never a traceback
        if type(exc).__module__.startswith(("botocore", "boto3")):
            problem = aws_problem(exc, COMMANDS[args.command][0].split(":")[0].split(" (")[0])
            _fail(err, problem.what, problem.fix)
            return problem.code
        from .support import SupportError

        if isinstance(exc, SupportError):
            _fail(err, exc.what, exc.fix)
            return exc.code
        raise


def _run(args: argparse.Namespace, stdin: TextIO, out: TextIO, client: Callable[[str], Any]) -> int:
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
        return run_rotate(target, new_key, stage_only=args.stage_only, wait_seconds=args.wait, out=out,
                          client=client)
    if args.command == "smoke":
        from .smoke import checked_portal_url, run_smoke

        url = args.url or target.portal_url
        if not url:
            raise AdminError("no portal URL", "Pass --stack NAME or --url", EXIT_USAGE)
        problem = checked_portal_url(url)
        if problem:
            raise AdminError(problem, "Pass the stack output PortalUrl: https://<api>/portal", EXIT_USAGE)
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
    from . import support

    missing = [flag for flag, value in (("--table", target.table), ("--mode", target.mode),
                                        ("--user-pool-id", target.user_pool_id)) if not value]
    if missing:
        raise AdminError(f"missing {', '.join(missing)}", "Pass --stack NAME, or the ids", EXIT_USAGE)
    ctx = support.Context(table=target.table, mode=target.mode, user_pool_id=target.user_pool_id, client=client,
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


def _stripe_caller(target: Target, client: Callable[[str], Any]):
    """(method, path, params) -> answer, with the deployment's own key; None when the key cannot be read."""
    from .errors import StripeKeyUnavailable
    from .stripe_http import StripeHttp
    from .stripe_key import parse_stripe_key

    if not target.secret_id:
        return None
    try:
        key = parse_stripe_key(current_secret(client, target.secret_id))
    except StripeKeyUnavailable:
        return None
    return StripeHttp(api_base=target.stripe_api_base, timeout_seconds=10).with_key(key)


if __name__ == "__main__":
    sys.exit(main())

"""Key commands: `check` (the preflight, ending with what is still to do in the deploy guide's order) and
`rotate-key` (validate exactly as the rotation function will, stage, rotate, record it)."""

from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from portal_gateway.checks.stripe_key_check import AccountPins, Check, check_stripe_key, passed

from portal_admin.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AdminError,
    Target,
    current_secret,
    default_aws_client,
    print_checks,
)

# Which step of the deploy guide (docs/deploy.md) a failed check belongs to, so a fresh stack's `check` reads as
# a to-do list in the guide's order.
README_STEPS = (
    (1, "prepare Cognito (user pool, app client, Hosted UI domain, code grant, scopes)",
     ("app client", "sign-in domain", "sign-in app client", "authorization code flow", "sign-in scopes",
      "JWKS reachable")),
    (2, "prepare Stripe (save the customer portal settings; a restricted key with the listed permissions)",
     ("portal configuration", "permission: Customers read", "permission: Customers write",
      "permission: Customer portal write", "permission: Subscriptions read", "permission: Entitlements read")),
    (3, "deploy the stack (sam deploy --guided)", ("customers table", "OAuth secret", "secret readable")),
    (4, "put the Stripe key in: stripe-portal-admin rotate-key --stack <stack>",
     ("key format", "key mode", "Stripe accepts the key", "Stripe reachable", "Stripe account",
      "same Stripe account as before")),
    (5, "register the stack output CallbackUrlToRegister (callback) and ReturnUrl (sign-out) on the app client",
     ("callback URL registered", "sign-out URL registered")),
    (6, "set up the billing status webhook: stripe-portal-admin webhooks setup --stack <stack>",
     ("webhook endpoint", "webhook events", "webhook URL", "webhook reachable")),
)


def steps_to_do(checks: list[Check]) -> list[tuple[int, str]]:
    """The deploy guide's steps the failed checks point at, once each, in the guide's order."""
    failed = {"app client" if c.name.startswith("app client ") else c.name for c in checks if not c.ok}
    return [(number, text) for number, text, names in README_STEPS if failed.intersection(names)]


# --- check -----------------------------------------------------------------------------------------------------
def run_check(target: Target, client: Callable[[str], Any] = default_aws_client) -> list[Check]:
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
                                       portal_configuration_id=target.portal_configuration_id, pins=pins,
                                       checkout=bool(target.checkout_prices), write_pin=False)  # a preflight
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


SIGN_IN_SCOPES = ("openid", "email")  # what the plain-link sign-in asks for (web/sign_in.py); nothing more is needed


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
    from portal_gateway.errors import AuthUnavailable
    from portal_gateway.identity.tokens import JwksCache

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


def run_rotate(target: Target, new_key: str, *, stage_only: bool, out: TextIO,
               client: Callable[[str], Any] = default_aws_client) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    if not target.secret_id or not target.mode:
        raise AdminError("no secret or Stripe mode to rotate", "Pass --stack NAME, or --secret-id and --mode",
                         EXIT_USAGE)
    pins = AccountPins(target.table, client("dynamodb")) if target.table else None
    checks = check_stripe_key(new_key, expected_mode=target.mode, api_base=target.stripe_api_base,
                              portal_configuration_id=target.portal_configuration_id, pins=pins,
                              checkout=bool(target.checkout_prices))
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
        print("Staged only: the live key is unchanged. Run rotate-key again without --stage-only to validate and "
              "promote a key.", file=out)
        return EXIT_OK
    if not target.rotation_function_arn:
        print("FAIL  validating and promoting: no rotation function. The key is staged; the live key is unchanged.",
              file=out)
        print("      fix: pass --rotation-function-arn (stack output RotationFunctionArn) or use --stack", file=out)
        return EXIT_FAILED
    # Secrets Manager's RotateSecret makes its own AWSPENDING version and cannot take a value staged beforehand
    # (Stripe keys cannot be generated by a rotation function), so its steps are run here, in its order, by the
    # rotation function itself: it checks the staged key again inside AWS (testSecret) and moves AWSCURRENT to it
    # (finishSecret). A refused key never becomes AWSCURRENT.
    functions = client("lambda")
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        try:
            answer = functions.invoke(FunctionName=target.rotation_function_arn, Payload=json.dumps(
                {"Step": step, "SecretId": target.secret_id, "ClientRequestToken": token}).encode())
        except (ClientError, BotoCoreError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            print(f"FAIL  {step}: {code}. The key is staged; the live key is unchanged.", file=out)
            print("      fix: check --rotation-function-arn (stack output RotationFunctionArn) and that you may "
                  "invoke it (lambda:InvokeFunction)", file=out)
            return EXIT_FAILED
        if answer.get("FunctionError"):
            try:
                reason = json.loads(answer["Payload"].read()).get("errorMessage", "")
            except (ValueError, AttributeError, KeyError):
                reason = ""
            print(f"FAIL  {step}: {reason or answer['FunctionError']}. The live key is unchanged.", file=out)
            return EXIT_FAILED
    stages = secrets.describe_secret(SecretId=target.secret_id).get("VersionIdsToStages", {}).get(token, [])
    if "AWSCURRENT" not in stages:
        print("FAIL  the rotation function did not make the new key AWSCURRENT; see its log. The old key stays "
              "live.", file=out)
        return EXIT_FAILED
    print("PASS  checked again by the rotation function and made AWSCURRENT; functions pick it up within their "
          "cache TTL", file=out)
    _audit_rotation(target, client, out, mode=target.mode, previous=previous, current=token)
    return EXIT_OK


def _audit_rotation(target: Target, client: Callable[[str], Any], out: TextIO, *, mode: str, previous: str | None,
                    current: str) -> None:
    """Key rotations are recorded like support changes (secret version ids only, never a key)."""
    if not target.table:
        return
    from portal_admin import support

    ctx = support.Context(table=target.table, mode=mode, user_pool_id=target.user_pool_id or "",
                          client=client, stripe=None, out=out, stack=target.stack,
                          audit_retention_days=target.audit_retention_days)
    who = client("sts").get_caller_identity()["Arn"]
    with support.Audit(ctx, who, "rotate-key", "Stripe key rotated with stripe-portal-admin rotate-key",
                       subject="stripe-key", before=previous, after=current).recorded():
        pass  # the rotation itself is the rotation function's, done and checked above

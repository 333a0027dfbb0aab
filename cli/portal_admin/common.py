"""What every command of stripe-portal-admin shares: exit codes, failures as a sentence and a fix, the deployment
it acts on (read from the stack or given as ids), AWS clients, the secret's current value, printed checks."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from portal_gateway.checks.stripe_key_check import Check

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
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"):  # "403": no code given
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
    webhook_url: str | None = None
    webhook_secret_id: str | None = None
    checkout_prices: tuple[str, ...] = ()  # CheckoutPrices: Subscribe is deployed, its key permissions are checked
    event_source_name: str | None = None  # StripeEventSourceName: Stripe's events come through EventBridge
    event_archive_arn: str | None = None  # the bus's archive (output StripeEventArchiveArn), for events replay
    event_rule_arn: str | None = None  # the rule to the StripeEventsFunction (output StripeEventsRuleArn)


def boto_factory(region: str | None = None, profile: str | None = None) -> Callable[[str], Any]:
    """boto3 clients for --region/--profile. The region also comes from AWS_REGION, which botocore itself does
    not read (only AWS_DEFAULT_REGION), so "set AWS_REGION" works as people expect."""
    def client(service: str):
        import boto3

        session = boto3.Session(profile_name=profile or None)
        return session.client(service, region_name=region or os.environ.get("AWS_REGION") or session.region_name)
    return client


default_aws_client = boto_factory()


def resolve_target(args: argparse.Namespace, client: Callable[[str], Any] = default_aws_client) -> Target:
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
            webhook_url=outputs.get("WebhookUrl"),
            webhook_secret_id=outputs.get("WebhookSecretArn"),
            checkout_prices=tuple(p for p in params.get("CheckoutPrices", "").split(",") if p),
            event_source_name=params.get("StripeEventSourceName") or None,
            event_archive_arn=outputs.get("StripeEventArchiveArn"),
            event_rule_arn=outputs.get("StripeEventsRuleArn"),
        )
    for field, value in (
        ("secret_id", getattr(args, "secret_id", None)), ("mode", getattr(args, "mode", None)),
        ("user_pool_id", getattr(args, "user_pool_id", None)),
        ("table", getattr(args, "table", None)), ("jwks_url", getattr(args, "jwks_url", None)),
        ("portal_configuration_id", getattr(args, "portal_configuration_id", None)),
        ("rotation_function_arn", getattr(args, "rotation_function_arn", None)),
        ("webhook_url", getattr(args, "webhook_url", None)),
        ("webhook_secret_id", getattr(args, "webhook_secret_id", None)),
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
    from portal_gateway.aws.endpoints import EndpointError, cognito_issuer

    try:
        return f"{cognito_issuer(user_pool_id, user_pool_id.split('_', 1)[0])}/.well-known/jwks.json"
    except EndpointError:
        return None


def current_secret(client: Callable[[str], Any], secret_id: str) -> str:
    """The AWSCURRENT value, by name (what a plain read means in AWS; moto needs it said after a rotation)."""
    return client("secretsmanager").get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT").get(
        "SecretString") or ""


def scan_items(client: Callable[[str], Any], table: str, condition: str, values: dict,
               projection: str | None = None) -> list[dict]:
    """Every item of the table that matches, all pages (boto3's paginator; operator commands are rare)."""
    extra = {"ProjectionExpression": projection} if projection else {}
    pages = client("dynamodb").get_paginator("scan").paginate(
        TableName=table, FilterExpression=condition, ExpressionAttributeValues=values, **extra)
    return [item for page in pages for item in page.get("Items", [])]


def print_checks(checks: list[Check], out: TextIO) -> None:
    width = max((len(c.name) for c in checks), default=10)
    for check in checks:
        line = f"{'PASS' if check.ok else 'FAIL'}  {check.name:<{width}}"
        if check.detail:
            line += f"  {check.detail}"
        if not check.ok and check.fix:
            line += f"\n      fix: {check.fix}"
        print(line, file=out)

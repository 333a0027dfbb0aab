"""CodeDeploy PreTraffic hook: checks the new version of the portal function before any traffic shifts to it,
and tells CodeDeploy "Succeeded" or "Failed" (a failed check stops the release; the old version keeps serving)."""

from __future__ import annotations

import base64
import json
import os

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from portal_gateway.checks.release_check import Invocation, check_release, outcome
from portal_gateway.checks.stripe_key_check import AccountPins, Check, check_stripe_key

logger = Logger(service="stripe-portal-gateway-pre-traffic")
copy_config_to_registered_loggers(source_logger=logger, include={"portal_gateway"})
NEW_VERSION = os.environ["NEW_VERSION"]  # the version CodeDeploy is about to shift traffic to
STRIPE_MODE = os.environ["STRIPE_MODE"]
lambda_client = boto3.client("lambda")
codedeploy = boto3.client("codedeploy")
secrets = boto3.client("secretsmanager")
account_pins = AccountPins(os.environ["CUSTOMERS_TABLE"], boto3.client("dynamodb"))


def invoke(event: dict) -> Invocation:
    answer = lambda_client.invoke(FunctionName=NEW_VERSION, Payload=json.dumps(event).encode(), LogType="Tail")
    log = base64.b64decode(answer.get("LogResult", "")).decode("utf-8", "replace")
    payload = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError") or not isinstance(payload, dict):
        return Invocation(None, function_error=answer.get("FunctionError") or "no answer", log=log)
    return Invocation(payload.get("statusCode"), payload.get("body") or "", payload.get("headers") or {}, log=log)


def key_checks() -> list[Check]:
    current = secrets.get_secret_value(SecretId=os.environ["STRIPE_SECRET_ID"], VersionStage="AWSCURRENT")
    value = current.get("SecretString") or ""
    return check_stripe_key(value, expected_mode=STRIPE_MODE, api_base=os.environ.get("STRIPE_API_BASE") or None,
                            portal_configuration_id=os.environ.get("PORTAL_CONFIGURATION_ID") or None,
                            pins=account_pins, checkout=bool(os.environ.get("CHECKOUT_PRICES", "").strip()))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    checks = check_release(invoke=invoke, key_checks=key_checks, hosted_ui=os.environ.get("HOSTED_UI") == "true")
    for check in checks:
        logger.info("pre-traffic check", extra={"check": check.name, "ok": check.ok, "detail": check.detail,
                                                "fix": "" if check.ok else check.fix})
    status = outcome(checks)
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"], lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status)
    logger.info("pre-traffic verdict", extra={"status": status})
    return {"status": status}

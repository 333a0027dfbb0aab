"""Secrets Manager rotation function for the Stripe key: validates a staged key before it goes live."""

from __future__ import annotations

import os

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from portal_gateway.checks.rotation import RotationError, rotate
from portal_gateway.checks.stripe_key_check import AccountPins, check_stripe_key

logger = Logger(service="stripe-portal-gateway-rotation")
copy_config_to_registered_loggers(source_logger=logger, include={"portal_gateway"})
STRIPE_MODE = os.environ["STRIPE_MODE"]
PORTAL_CONFIGURATION_ID = os.environ.get("PORTAL_CONFIGURATION_ID") or None
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE") or None
CHECKOUT = bool(os.environ.get("CHECKOUT_PRICES", "").strip())  # Subscribe is deployed: its permissions too
secrets = boto3.client("secretsmanager")
# The Stripe account this deployment's customers live in, pinned in the customers table by the first good key.
account_pins = AccountPins(os.environ["CUSTOMERS_TABLE"], boto3.client("dynamodb"))


def validate(value: str):
    return check_stripe_key(value, expected_mode=STRIPE_MODE, api_base=STRIPE_API_BASE,
                            portal_configuration_id=PORTAL_CONFIGURATION_ID, pins=account_pins, checkout=CHECKOUT)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    step, secret_id, token = event["Step"], event["SecretId"], event["ClientRequestToken"]
    logger.append_keys(step=step)
    try:
        rotate(step, secret_id, token, client=secrets, validate=validate)
    except RotationError as exc:
        logger.error("Rotation step refused", extra={"reason": str(exc)})
        raise

"""The naive baseline, written the way common samples do it: everything imported eagerly, the secret read
on every request, customers looked up by email on every request, PyJWKClient for the keys. For the benchmark
only; it has none of the service's safety checks (no owner check, no mapping, no idempotency)."""

import json
import os

import boto3
import jwt
import stripe
from jwt import PyJWKClient

secrets = boto3.client("secretsmanager")
jwks = PyJWKClient(os.environ["COGNITO_JWKS_URL"])
ISSUER = "https://cognito-idp.{}.amazonaws.com/{}".format(
    os.environ["COGNITO_USER_POOL_ID"].split("_")[0], os.environ["COGNITO_USER_POOL_ID"])


def lambda_handler(event, context):
    token = event["headers"]["authorization"].split(" ", 1)[1]
    key = jwks.get_signing_key_from_jwt(token).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=os.environ["COGNITO_CLIENT_IDS"], issuer=ISSUER)
    api_key = json.loads(secrets.get_secret_value(SecretId=os.environ["STRIPE_SECRET_ID"])["SecretString"])["api_key"]
    client = stripe.StripeClient(api_key, base_addresses={"api": os.environ["STRIPE_API_BASE"]})
    found = client.v1.customers.list(params={"email": claims["email"]}).data
    customer = found[0].id if found else client.v1.customers.create(params={"email": claims["email"]}).id
    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": os.environ["RETURN_URL"]})
    return {"statusCode": 302, "headers": {"Location": session.url}, "body": ""}

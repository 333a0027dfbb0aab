"""The SigV4 client against a moto server that checks signatures and IAM policies (as AWS does), with the
portal function's own policy actions taken from template.yaml: the code's calls are signed correctly and
the template grants the actions they need, and nothing else.

moto authorises Secrets Manager and DynamoDB calls against the resource "*" only, so the statements'
resources are widened to "*" here; that they name exactly one table and the two secrets is checked by
tests/template, and resources and conditions by the IAM simulation of tests/deploy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from portal_gateway.aws.client import COGNITO_USER_POOLS, DYNAMODB, SECRETS_MANAGER, AwsJsonClient, Credentials
from portal_gateway.aws.mapping_store import CustomerMappingStore
from portal_gateway.aws.secrets import SecretsManagerReader
from portal_gateway.aws.user_directory import CognitoUserDirectory
from portal_gateway.billing.stripe_key import SecretUnreadable
from portal_gateway.errors import MappingStoreUnavailable
from portal_gateway.identity.tokens import Identity

from devstack.cfn import load_template
from tests.deploy.iam import as_moto_evaluates

REGION = "us-east-1"
SETUP_ACTIONS = 9  # moto lets this many requests through unchecked: the setup below, then checks everything


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resolve(value, refs: dict):
    """Resolve the template's intrinsic functions for one deployment: every !If takes its true branch."""
    if isinstance(value, list):
        return [v for v in (resolve(item, refs) for item in value) if v is not None]
    if isinstance(value, dict):
        if "Ref" in value:
            return None if value["Ref"] == "AWS::NoValue" else refs[value["Ref"]]
        if "Fn::GetAtt" in value:
            return refs[".".join(value["Fn::GetAtt"])]
        if "Fn::If" in value:
            return resolve(value["Fn::If"][1], refs)
        return {key: resolve(item, refs) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def checking_aws():
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)  # nosec B310 - our loopback server
            break
        except OSError:
            time.sleep(0.05)
    setup = dict(region_name=REGION, endpoint_url=url, aws_access_key_id="setup", aws_secret_access_key="setup")
    dynamodb, secrets, iam = (boto3.client(name, **setup) for name in ("dynamodb", "secretsmanager", "iam"))
    table = dynamodb.create_table(TableName="customers", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                  AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                  BillingMode="PAY_PER_REQUEST")["TableDescription"]["TableArn"]
    stripe_secret = secrets.create_secret(Name="stripe", SecretString="sk_test_x")["ARN"]
    cognito = boto3.client("cognito-idp", **setup)
    pool = cognito.create_user_pool(PoolName="users")["UserPool"]["Id"]
    user = cognito.admin_create_user(UserPoolId=pool, Username="ada", UserAttributes=[
        {"Name": "email", "Value": "ada@example.com"}, {"Name": "email_verified", "Value": "true"}])["User"]
    oauth_secret = secrets.create_secret(Name="oauth", SecretString="{}")["ARN"]
    statements = load_template()["Resources"]["PortalFunction"]["Properties"]["Policies"][0]["Statement"]
    resolved = resolve(statements, {
        "StripeApiKeySecret": stripe_secret, "OAuthSecret": oauth_secret, "CustomersTable.Arn": table,
        "CognitoUserPoolId": pool})
    assert all(statement["Resource"] for statement in resolved)
    # As moto can evaluate it (tests/deploy/iam.py): resources widened, the Deny on audit and pin items (a
    # condition on dynamodb:LeadingKeys, which moto has no value for) left to the IAM simulation there.
    policy = as_moto_evaluates({"Version": "2012-10-17", "Statement": resolved})
    iam.create_user(UserName="portal-function")
    iam.put_user_policy(UserName="portal-function", PolicyName="template", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="portal-function")["AccessKey"]
    iam.create_user(UserName="nobody")  # the 7th unchecked request; from here on moto checks everything
    sub = next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
    yield {"url": url, "table": "customers", "stripe_secret": stripe_secret, "oauth_secret": oauth_secret,
           "pool": pool, "sub": sub,
           "credentials": Credentials(key["AccessKeyId"], key["SecretAccessKey"])}
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def signed(checking_aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", checking_aws["url"])

    def client(service, credentials=None):
        credentials = credentials or checking_aws["credentials"]
        return AwsJsonClient(service, REGION, credentials=lambda: credentials, sleep=lambda seconds: None)
    return client


IDENTITY = Identity(sub="sub-1", user_pool_id="us-east-1_Pool", token_use="id", email=None,
                    email_verified=False, name=None, client_id="c")


def test_the_function_reads_its_secrets_and_writes_its_table_with_the_templates_policy(checking_aws, signed):
    read = SecretsManagerReader(signed(SECRETS_MANAGER))
    assert read(checking_aws["stripe_secret"]) == "sk_test_x"
    assert read(checking_aws["oauth_secret"]) == "{}"
    store = CustomerMappingStore(checking_aws["table"], stripe_mode="test", client=signed(DYNAMODB))
    key = store.key_for(IDENTITY)
    assert store.get(key) is None
    assert store.put_if_absent(key, "cus_A") == "cus_A"
    assert store.put_if_absent(key, "cus_B") == "cus_A"  # conditional write lost: the first mapping stands
    assert store.replace(key, "cus_A", "cus_C") == "cus_C"
    assert store.claim(IDENTITY, "cus_C") is True
    users = CognitoUserDirectory(checking_aws["pool"], REGION, client=signed(COGNITO_USER_POOLS))
    ada = users.lookup(Identity(sub=checking_aws["sub"], user_pool_id=checking_aws["pool"], token_use="access",
                                client_id="c", username="ada"))
    assert ada.enabled and ada.profile.email == "ada@example.com" and ada.profile.email_verified


def test_a_wrong_signature_is_refused(checking_aws, signed):
    forged = Credentials(checking_aws["credentials"].access_key, checking_aws["credentials"].secret_key + "x")
    store = CustomerMappingStore(checking_aws["table"], stripe_mode="test", client=signed(DYNAMODB, forged))
    with pytest.raises(MappingStoreUnavailable) as caught:
        store.get("test#pool#sub")
    assert "SignatureDoesNotMatch" in caught.value.log_detail
    with pytest.raises(SecretUnreadable):
        SecretsManagerReader(signed(SECRETS_MANAGER, forged))(checking_aws["stripe_secret"])


def test_nothing_beyond_the_policy_is_allowed(checking_aws, signed):
    other = boto3.client("secretsmanager", region_name=REGION, endpoint_url=checking_aws["url"],
                         aws_access_key_id=checking_aws["credentials"].access_key,
                         aws_secret_access_key=checking_aws["credentials"].secret_key)
    with pytest.raises(other.exceptions.ClientError):
        other.list_secrets()  # the function may read its two secrets, not list the account's
    deleting = signed(DYNAMODB)
    with pytest.raises(Exception) as caught:
        deleting.call("DeleteItem", {"TableName": checking_aws["table"], "Key": {"pk": {"S": "x"}}})
    assert getattr(caught.value, "code", "") in ("AccessDenied", "AccessDeniedException")
    describing = signed(SECRETS_MANAGER)
    with pytest.raises(Exception) as caught:
        describing.call("PutSecretValue", {"SecretId": checking_aws["stripe_secret"], "SecretString": "sk_test_y"})
    assert getattr(caught.value, "code", "") in ("AccessDenied", "AccessDeniedException")
    assert SecretsManagerReader(signed(SECRETS_MANAGER))(checking_aws["stripe_secret"]) == "sk_test_x"

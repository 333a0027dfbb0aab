"""IAM enforced by moto for the deploy rehearsal: the operator's documented policy (docs/iam/operator-policy.json)
and each function's role from the translated template, as IAM principals in moto; every AWS request recorded by
moto's own recorder, so a test can hold the actions each principal used to the actions its policy grants.

What moto evaluates (moto/iam/access_control.py): the principal's policies, Allow and Deny, by action. It passes
"*" as the resource for these services and has no values for conditions such as `dynamodb:LeadingKeys`, so the
policies it is given here have their resources widened to "*" and their conditions left out; the actions are
exactly the documented ones.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs

import boto3

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_POLICY = ROOT / "docs/iam/operator-policy.json"
# The one call every identity may make without a permission (AWS: "No permissions are required").
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}


def _moto_api(moto, path: str, data: bytes | None = None) -> bytes:
    # bandit B310: the URL is this process's own loopback moto server.
    # text/plain: werkzeug would read a form body as form fields and leave the raw data empty.
    request = urllib.request.Request(f"{moto.endpoint}/moto-api/{path}", data=data, method="POST" if data is not None
                                     else "GET", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # nosec B310
        return answer.read()


def as_moto_evaluates(document: dict) -> dict:
    """The policy with resources widened to "*" and conditions left out (see the module's docstring)."""
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    widened = []
    for statement in statements:
        statement = {k: v for k, v in statement.items() if k not in ("Condition", "Resource", "NotResource")}
        widened.append({**statement, "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": widened}


def actions_of(document: dict) -> set[str]:
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    found: set[str] = set()
    for statement in statements:
        if statement.get("Effect") == "Allow":
            actions = statement["Action"]
            found |= {actions} if isinstance(actions, str) else set(actions)
    return found


class EnforcedIam:
    """Principals made while moto lets every request through; then every request is checked."""

    def __init__(self, moto, region: str):
        self.moto, self.region = moto, region
        self.keys: dict[str, str] = {}  # access key id -> principal name
        self.granted: dict[str, set[str]] = {}  # principal name -> the actions its policies allow
        _moto_api(moto, "reset-auth", b"inf")
        iam = boto3.client("iam", region_name=region, endpoint_url=moto.endpoint, aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        self._iam = iam
        self.admin = self.user("rehearsal-admin", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]})

    def user(self, name: str, document: dict) -> dict[str, str]:
        self._iam.create_user(UserName=name)
        self.granted[name] = actions_of(document)
        self._iam.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=json.dumps(
            as_moto_evaluates(document)))
        key = self._iam.create_access_key(UserName=name)["AccessKey"]
        self.keys[key["AccessKeyId"]] = name
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def role(self, name: str, documents: list[dict]) -> dict[str, str]:
        """A function's role, with the template's policies, and credentials of a session of it (what Lambda gives
        the function in its environment)."""
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "lambda.amazonaws.com"}}]}
        self.granted[name] = set().union(*(actions_of(d) for d in documents))
        arn = self._iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        for index, document in enumerate(documents):
            self._iam.put_role_policy(RoleName=name, PolicyName=f"policy{index}",
                                      PolicyDocument=json.dumps(as_moto_evaluates(document)))
        sts = boto3.client("sts", region_name=self.region, endpoint_url=self.moto.endpoint, **self.admin)
        credentials = sts.assume_role(RoleArn=arn, RoleSessionName=name)["Credentials"]
        self.keys[credentials["AccessKeyId"]] = name
        return {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": credentials[
            "SecretAccessKey"], "AWS_SESSION_TOKEN": credentials["SessionToken"]}

    @contextmanager
    def enforced(self):
        """From here every request needs a principal whose policy allows it; moto records each one."""
        _moto_api(self.moto, "recorder/reset-recording", b"")
        _moto_api(self.moto, "recorder/start-recording", b"")
        _moto_api(self.moto, "reset-auth", b"0")
        try:
            yield self
        finally:
            _moto_api(self.moto, "reset-auth", b"inf")
            _moto_api(self.moto, "recorder/stop-recording", b"")

    def used(self) -> dict[str, set[str]]:
        """The actions each principal asked for (allowed or not), from moto's recording."""
        used: dict[str, set[str]] = {}
        for line in _moto_api(self.moto, "recorder/download-recording").decode().splitlines():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            key = re.search(r"Credential=([^/]+)/", headers.get("authorization", ""))
            principal = self.keys.get(key.group(1)) if key else None
            action = action_of(entry, headers)
            if principal and action:
                used.setdefault(principal, set()).add(action)
        return used


# The IAM prefix of a JSON-protocol target's service (X-Amz-Target "<prefix>.<Operation>").
TARGET_PREFIXES = {"DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager",
                   "AWSCognitoIdentityProviderService": "cognito-idp"}


def action_of(entry: dict, headers: dict[str, str]) -> str | None:
    target = headers.get("x-amz-target")
    if target:
        prefix, _, operation = target.partition(".")
        return f"{TARGET_PREFIXES.get(prefix, prefix)}:{operation}"
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    service = re.search(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/", headers.get("authorization", ""))
    form = parse_qs(body)
    if service and "Action" in form:  # the query protocol: STS, CloudFormation, IAM
        return f"{service.group(1)}:{form['Action'][0]}"
    return None

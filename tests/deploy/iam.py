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
from urllib.parse import parse_qs, urlparse

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


def filled_policy(path: Path, **values: str) -> dict:
    """A documented policy with its placeholders (${Region}, ${Account}, ...) filled in, as the docs say to."""
    text = path.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, f"{path.name}: a placeholder left unfilled"
    return json.loads(text)


def as_moto_evaluates(document: dict) -> dict:
    """The policy with resources widened to "*" and conditions left out (see the module's docstring): a Deny that
    holds only under a condition is left out whole (unconditional, it would refuse what it does not cover)."""
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    widened = []
    for statement in statements:
        if statement.get("Effect") == "Deny" and "Condition" in statement:
            continue
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
        self.policies: dict[str, list[dict]] = {}  # principal name -> its policies as written (for the simulator)
        self.arns: dict[str, str] = {}  # principal name -> the ARN IAM sees
        _moto_api(moto, "reset-auth", b"inf")
        iam = boto3.client("iam", region_name=region, endpoint_url=moto.endpoint, aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        self._iam = iam
        self.admin = self.user("rehearsal-admin", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]})

    def user(self, name: str, document: dict) -> dict[str, str]:
        self.arns[name] = self._iam.create_user(UserName=name)["User"]["Arn"]
        self.granted[name], self.policies[name] = actions_of(document), [document]
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
        self.granted[name], self.policies[name] = set().union(*(actions_of(d) for d in documents)), documents
        arn = self._iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        for index, document in enumerate(documents):
            self._iam.put_role_policy(RoleName=name, PolicyName=f"policy{index}",
                                      PolicyDocument=json.dumps(as_moto_evaluates(document)))
        sts = boto3.client("sts", region_name=self.region, endpoint_url=self.moto.endpoint, **self.admin)
        assumed = sts.assume_role(RoleArn=arn, RoleSessionName=name)
        credentials, self.arns[name] = assumed["Credentials"], assumed["AssumedRoleUser"]["Arn"]
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

    @contextmanager
    def lifted(self):
        """Every request let through for a moment (what a deploy does between two walks: new roles)."""
        _moto_api(self.moto, "reset-auth", b"inf")
        try:
            yield self
        finally:
            _moto_api(self.moto, "reset-auth", b"0")

    def requests(self) -> list[tuple[str, str, dict]]:
        """Every request of a known principal, from moto's recording: (principal, action, what it named)."""
        found = []
        for line in _moto_api(self.moto, "recorder/download-recording").decode().splitlines():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            key = re.search(r"Credential=([^/]+)/", headers.get("authorization", ""))
            principal = self.keys.get(key.group(1)) if key else None
            action = action_of(entry, headers)
            if principal and action:
                body = body_of(entry) if not action.startswith("s3:") else {"Path": urlparse(entry["url"]).path}
                found.append((principal, action, body))
        return found

    def used(self) -> dict[str, set[str]]:
        """The actions each principal asked for (allowed or not)."""
        used: dict[str, set[str]] = {}
        for principal, action, _ in self.requests():
            used.setdefault(principal, set()).add(action)
        return used


# The IAM prefix of a JSON-protocol target's service (X-Amz-Target "<prefix>.<Operation>").
TARGET_PREFIXES = {"DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager",
                   "AWSCognitoIdentityProviderService": "cognito-idp", "AWSEvents": "events"}


def _text_of(entry: dict) -> str:
    body = entry.get("body") or ""
    return base64.b64decode(body).decode("utf-8", "replace") if entry.get("body_encoded") else body


def body_of(entry: dict) -> dict:
    """A JSON-protocol request's body, or a query-protocol request's form fields (one value each)."""
    text = _text_of(entry)
    try:
        return json.loads(text) if text.startswith("{") else {k: v[0] for k, v in parse_qs(text).items()}
    except ValueError:
        return {}


def action_of(entry: dict, headers: dict[str, str]) -> str | None:
    target = headers.get("x-amz-target")
    if target:
        prefix, _, operation = target.partition(".")
        return f"{TARGET_PREFIXES.get(prefix, prefix)}:{operation}"
    service = re.search(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/", headers.get("authorization", ""))
    if service and service.group(1) == "s3":
        return s3_action(entry["method"], urlparse(entry["url"]).path)
    form = parse_qs(_text_of(entry))
    if service and "Action" in form:  # the query protocol: STS, CloudFormation, IAM
        return f"{service.group(1)}:{form['Action'][0]}"
    return None


def s3_action(method: str, path: str) -> str | None:
    """The IAM action of a path-style S3 REST request (the few the SAM CLI makes; HEAD needs what GET needs)."""
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "s3:ListAllMyBuckets" if method == "GET" else None
    if not key:
        return {"GET": "s3:ListBucket", "HEAD": "s3:ListBucket", "PUT": "s3:CreateBucket"}.get(method)
    return {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
            "DELETE": "s3:DeleteObject"}.get(method)


# --- resources and conditions: @cloud-copilot/iam-simulate (tests/iam_simulator) --------------------------------
SIMULATOR = ROOT / "tests/iam_simulator"


def simulator_missing() -> str | None:
    """Why the IAM simulator cannot run here, or None (make test installs it where npm exists)."""
    import shutil

    if shutil.which("node") is None:
        return "Node.js is not installed: resources and conditions of the IAM policies are not simulated"
    if not (SIMULATOR / "node_modules/@cloud-copilot/iam-simulate").is_dir():
        return "tests/iam_simulator is not installed (make test runs npm ci there)"
    return None


def simulate(requests: list[dict]) -> list[str]:
    """Each request's verdict under its policies: Allowed, ImplicitlyDenied, ExplicitlyDenied (or an error)."""
    import subprocess

    run = subprocess.run(["node", "simulate.mjs"], cwd=SIMULATOR, input=json.dumps(
        [{**request, "id": index} for index, request in enumerate(requests)]), capture_output=True, text=True,
        timeout=120, check=True)
    return [answer["result"] if not answer["errors"] else f"invalid: {answer['errors']}"
            for answer in json.loads(run.stdout)]


def resources_of(action: str, body: dict, region: str, account: str) -> list[str | None]:
    """Every ARN IAM evaluates a request against. Most requests name one resource; StartReplay needs its action
    allowed on three, the archive, the bus it replays to and the replay (the Service Authorization Reference marks
    all three required)."""
    if action == "events:StartReplay":
        return [body["EventSourceArn"], body["Destination"]["Arn"],
                f"arn:aws:events:{region}:{account}:replay/{body['ReplayName']}"]
    return [resource_of(action, body, region, account)]


def resource_of(action: str, body: dict, region: str, account: str) -> str | None:
    """The ARN IAM evaluates a request against, from what the request names (None: no resource-level check)."""
    service = action.split(":")[0]
    if service == "dynamodb":
        return f"arn:aws:dynamodb:{region}:{account}:table/{body['TableName']}"
    if service == "secretsmanager":
        secret = body["SecretId"]
        return secret if secret.startswith("arn:") else f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}"
    if action == "cognito-idp:DescribeUserPoolDomain":
        return None
    if service == "cognito-idp":
        pool = body["UserPoolId"]
        return f"arn:aws:cognito-idp:{pool.split('_')[0]}:{account}:userpool/{pool}"
    if service == "cloudformation":
        stack = body["StackName"]
        return stack if stack.startswith("arn:") else f"arn:aws:cloudformation:{region}:{account}:stack/{stack}/x"
    if service == "events" and "ArchiveName" in body:
        return f"arn:aws:events:{region}:{account}:archive/{body['ArchiveName']}"
    if action == "events:DescribeRule":
        bus = body.get("EventBusName") or "default"
        return f"arn:aws:events:{region}:{account}:rule/{'' if bus == 'default' else bus + '/'}{body['Name']}"
    if service == "events" and "ReplayName" in body:
        return f"arn:aws:events:{region}:{account}:replay/{body['ReplayName']}"
    if service == "s3":
        return f"arn:aws:s3:::{body['Path'].lstrip('/')}" if body["Path"].strip("/") else None
    raise AssertionError(f"no resource rule for {action}")


def condition_keys(action: str, body: dict) -> dict[str, list[str] | str]:
    """The DynamoDB condition keys IAM takes from a request (docs: "Using IAM policy conditions for fine-grained
    access control"): dynamodb:LeadingKeys, the partition key it names (the table's key is `pk`);
    dynamodb:Select; dynamodb:Attributes, the top-level attributes its projection names."""
    if not action.startswith("dynamodb:"):
        return {}
    found: dict[str, list[str] | str] = {}
    for field in ("Key", "Item"):
        if isinstance(body.get(field), dict) and "pk" in body[field]:
            found["dynamodb:LeadingKeys"] = [body[field]["pk"]["S"]]
    if body.get("Select"):
        found["dynamodb:Select"] = body["Select"]
    if body.get("ProjectionExpression"):
        names = body.get("ExpressionAttributeNames", {})
        found["dynamodb:Attributes"] = sorted({names.get(part.strip(), part.strip()).split(".")[0].split("[")[0]
                                               for part in body["ProjectionExpression"].split(",")})
    return found

"""The deployer's documented policies (docs/iam/deployer-policy.json and deployer-resources-policy.json), held two
ways. What the SAM CLI itself calls: the real `sam deploy` runs against moto with IAM enforced under the policies,
so a missing action fails the deploy and an action no run used fails the suite. What CloudFormation calls with the
deployer's credentials to make the stack's resources: exactly the permissions CloudFormation's own resource
provider schemas list for the template's resource types (and for the SAM CLI's managed stack), so a new resource
type fails until the policy grants it, and a grant no type needs fails too. moto cannot execute the change set
(it does not apply SAM's transform) nor report the managed stack's outputs; both gaps are asserted exactly, so a
moto that can is noticed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from tests.deploy.cloudformation import ACCOUNT, Stack
from tests.deploy.cloudformation_permissions import managed_stack_types, needed
from tests.deploy.conftest import translate
from tests.deploy.iam import (
    NEEDS_NO_PERMISSION,
    EnforcedIam,
    filled_policy,
    resources_of,
    simulate,
    simulator_missing,
)
from tests.deploy.readme_script import ROOT
from tests.deploy.sam_cli import SAM, scratch_project

POLICIES = (ROOT / "docs/iam/deployer-policy.json", ROOT / "docs/iam/deployer-resources-policy.json")
REGION, STACK = "eu-west-1", "stripe-portal-gateway-dev"
THROUGH_CLOUDFORMATION = {"ForAnyValue:StringEquals": {"aws:CalledVia": "cloudformation.amazonaws.com"}}
MANAGED_POLICY_LIMIT = 6144  # IAM: characters of a customer managed policy, whitespace not counted
PARAMETERS = {"CognitoUserPoolId": f"{REGION}_AbCdEf123", "CognitoClientIds": "abc123",
              "ReturnUrl": "https://www.example.com/account"}
# Every optional part switched on: the types of both translations together are all the template can make.
EVERYTHING_ON = {**PARAMETERS, "StripeEventSourceName": "aws.partner/stripe.com/ed_61RehearsalDestination",
                 "EnableSnapStart": "true", "CognitoDomain": f"https://myshop.auth.{REGION}.amazoncognito.com",
                 "CheckoutPrices": "price_1Rehearsal"}
# moto's gaps, as it words them: the managed stack it creates has no Outputs (SAM then refuses it), and it executes
# the change set without SAM's transform.
MOTO_MANAGED_STACK_GAP = "Stack aws-sam-cli-managed-default is missing Tags and/or Outputs information"
MOTO_TRANSFORM_GAP = "Template error: instance of Fn::GetAtt references undefined resource"


def policies(stack: str = STACK) -> list[dict]:
    """The documented policies with their placeholders filled in, as docs/operations.md says to."""
    return [filled_policy(path, Region=REGION, Account=ACCOUNT, StackName=stack) for path in POLICIES]


def statements(documents: list[dict]) -> list[dict]:
    return [s for d in documents for s in d["Statement"]]


def actions(statement: dict) -> set[str]:
    return {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])


def test_cloudformation_is_granted_exactly_what_its_schemas_list_for_the_templates_resource_types():
    types = managed_stack_types()
    for template in translate([PARAMETERS, EVERYTHING_ON], REGION):
        types |= {resource["Type"] for resource in template["Resources"].values()}
    granted: set[str] = set()
    for statement in statements(policies()):
        if statement.get("Condition") == THROUGH_CLOUDFORMATION or actions(statement) == {"iam:PassRole"}:
            granted |= actions(statement)
    required = needed(types, REGION)
    assert sorted(required - granted) == [], "CloudFormation would be refused these while creating the stack"
    assert sorted(granted - required) == [], "granted, but no resource type of the template needs them"
    for statement in statements(policies()):  # the stack's roles, never any role of the account
        if any(action.startswith("iam:") for action in actions(statement)):
            assert statement["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/{STACK}/*", statement["Sid"]


def test_every_role_the_stack_makes_is_one_the_deployer_may_make_and_pass_however_long_the_stack_name():
    """CloudFormation names a role <stack>-<logical id>-<random>, both parts shortened to fit IAM's 64 characters
    (how much it keeps is not documented): a policy naming roles by the stack's name fails for a long one. Every
    role of every parameter set sits on the path /<stack name>/ instead, which CloudFormation never shortens."""
    why = simulator_missing()
    if why:
        pytest.skip(why)
    stack_name = ("stripe-portal-gateway-" + "production-eu-" * 9)[:128]  # CloudFormation's longest
    requests, names = [], []
    sets = [PARAMETERS, EVERYTHING_ON]
    for parameters, template in zip(sets, translate(sets, REGION), strict=True):
        stack = Stack(template, parameters, stack_name=stack_name, region=REGION)
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::IAM::Role" or not stack.exists(logical_id):
                continue
            path = stack.resolve(resource["Properties"].get("Path", "/"))
            arn = f"arn:aws:iam::{ACCOUNT}:role{path}{stack_name[:25]}-{logical_id[:25]}-AbCdEfGh1234"
            for action in ("iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRole"):
                names.append(f"{logical_id} {action}")
                requests.append({"action": action, "resource": arn,
                                 "context": {"aws:CalledVia": ["cloudformation.amazonaws.com"]}})
            names.append(f"{logical_id} iam:PassRole")
            requests.append({"action": "iam:PassRole", "resource": arn, "context": {}})
    assert len({n.split()[0] for n in names}) == 7  # the five functions', the hook's and CodeDeploy's
    others = [  # what must stay refused: a role of the account off the stack's path, and one by hand
        {"action": "iam:CreateRole", "resource": f"arn:aws:iam::{ACCOUNT}:role/{stack_name[:25]}-Admin-X",
         "context": {"aws:CalledVia": ["cloudformation.amazonaws.com"]}},
        {"action": "iam:PassRole", "resource": f"arn:aws:iam::{ACCOUNT}:role/admin", "context": {}},
        {"action": "iam:CreateRole", "resource": f"arn:aws:iam::{ACCOUNT}:role/{stack_name}/by-hand", "context": {}}]
    verdicts = simulate([{**request, "principal": f"arn:aws:iam::{ACCOUNT}:user/deployer", "accountId": ACCOUNT,
                          "policies": policies(stack_name)} for request in requests + others])
    assert [n for n, v in zip(names, verdicts, strict=False) if v != "Allowed"] == []
    assert verdicts[len(requests):] == ["ImplicitlyDenied"] * len(others)


def test_each_policy_fits_in_one_customer_managed_policy():
    for path in POLICIES:
        size = len(json.dumps(json.loads(path.read_text()), separators=(",", ":")))
        assert size <= MANAGED_POLICY_LIMIT, f"{path.name}: {size} characters (IAM allows {MANAGED_POLICY_LIMIT})"


def sam_deploy(project: Path, home: Path, credentials: dict[str, str], endpoint: str, *extra: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": REGION,
           "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"], "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(home / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-creds")}
    overrides = " ".join(f"{k}={v}" for k, v in PARAMETERS.items())
    run = subprocess.run(  # noqa: S603 - the project's own SAM CLI
        [str(SAM), "deploy", "--stack-name", STACK, "--capabilities", "CAPABILITY_IAM", "--no-confirm-changeset",
         "--region", REGION, "--parameter-overrides", overrides, *extra],
        cwd=project, env=env, capture_output=True, text=True, timeout=600)
    return run.stdout + run.stderr


def test_the_real_sam_deploy_runs_under_the_deployer_policies_with_iam_enforced(moto_server, tmp_path):
    moto_server.reset()
    project = scratch_project(tmp_path / "project")
    (project / "samconfig.toml").unlink()  # the command line says everything (samconfig would add --resolve-s3)
    # moto's CloudFormation reads SAM's TemplateURL from its own S3 only when the URL names "localhost".
    endpoint = moto_server.endpoint.replace("127.0.0.1", "localhost")
    enforced = EnforcedIam(moto_server, REGION)
    deployer = enforced.user("deployer", {"Version": "2012-10-17", "Statement": statements(policies())})
    with enforced.enforced():
        first = sam_deploy(project, tmp_path, deployer, endpoint, "--resolve-s3")  # makes SAM's managed stack
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server.endpoint, **enforced.admin)
        buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        (bucket,) = [b for b in buckets if b.startswith("aws-sam-cli-managed-default-samclisourcebucket-")]
        second = sam_deploy(project, tmp_path, deployer, endpoint, "--s3-bucket", bucket)
    for output in (first, second):
        assert "AccessDenied" not in output and "not authorized" not in output, output[-3000:]
    assert MOTO_MANAGED_STACK_GAP in first, first[-3000:]
    assert "Changeset created successfully" in second and MOTO_TRANSFORM_GAP in second, second[-3000:]

    requests = [(action, body) for principal, action, body in enforced.requests()
                if principal == "deployer" and action not in NEEDS_NO_PERMISSION]
    used = {action for action, _ in requests}
    by_cli = set().union(*(actions(s) for s in statements(policies())
                           if "Condition" not in s and actions(s) != {"iam:PassRole"}))
    assert sorted(by_cli - used) == [], "granted to the SAM CLI, but no deploy used them"
    assert sorted(used - by_cli) == []  # moto allowed them, so a statement must grant them (none by accident)

    why = simulator_missing()
    if why:
        pytest.skip(why)
    asked = {}
    for action, body in requests:  # every distinct request, under the policies as written (resources too)
        for resource in resources_of(action, body, REGION, ACCOUNT):
            asked[f"{action} {resource}"] = resource
    # Not simulated: CreateChangeSet on SAM's transform (arn:...:aws:transform/Serverless-2016-10-31, the
    # CloudFormation user guide's "Controlling access with IAM"); the simulator's service data has no such type.
    arn = enforced.arns["deployer"]
    verdicts = simulate([{"principal": arn, "action": what.split(" ")[0], "resource": resource or "*",
                          "accountId": ACCOUNT, "context": {}, "policies": policies()}
                         for what, resource in asked.items()])
    assert [w for w, v in zip(asked, verdicts, strict=True) if v != "Allowed"] == []
    other = policies("another-stack")  # the same policies filled for another stack refuse this one's requests
    refused = simulate([{"principal": arn, "action": "cloudformation:ExecuteChangeSet", "resource": (
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/x"), "accountId": ACCOUNT, "context": {},
        "policies": other}])
    assert refused == ["ImplicitlyDenied"]


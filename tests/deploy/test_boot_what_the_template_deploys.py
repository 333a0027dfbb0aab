"""Boot what the template would deploy, in the deploy guide's order, for every documented parameter set.

For each set: the parameters SAM saved after the deploy guide's guided deploy (every samconfig environment) and the
documented variants (SnapStart on, no plain links, a redeploy onto the kept table and secret); SAM's own
translator expands the template; CloudFormation's part (parameter checks, Rules, Conditions, intrinsics) is
done by tests/deploy/cloudformation.py; the resources the functions touch are created in moto from the
translated template's own properties; and every function (portal, rotation, pre-traffic) is started cold with
exactly the environment CloudFormation would give it and invoked for real. What differs from AWS is listed in
NETWORK (where the network goes) and REPLACED (ids that must name things that exist in moto); nothing else.
IAM is enforced throughout the walk (tests/deploy/iam.py): the operator's commands run under the documented
policy (docs/iam/operator-policy.json), each function under its role from the translated template.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
import secrets
import string
import uuid
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field

import boto3
import pytest

from devstack.http_api import build_event, load_handler_module, new_context
from devstack.stripe_standin import GUIDE_PERMISSIONS, StripeStandin, fake_key
from devstack.stripe_webhooks import signature_header
from tests.deploy.cloudformation import ACCOUNT, Stack
from tests.deploy.conftest import translate
from tests.deploy.iam import (
    NEEDS_NO_PERMISSION,
    OPERATOR_POLICY,
    EnforcedIam,
    condition_keys,
    filled_policy,
    resources_of,
    simulate,
    simulator_missing,
)
from tests.deploy.readme_script import ROOT, redeploy_answers
from tests.deploy.sam_cli import saved_parameters
from tests.functional.conftest import reset_logging

PASSWORD = "Correct-Horse-9"
FUNCTIONS = {"PortalFunction": "portal", "RotationFunction": "rotation", "PreTrafficHookFunction": "pre_traffic",
             "WebhookFunction": "webhooks", "ReconcileFunction": "webhooks"}
# What the rehearsal changes in a function's environment, and why: where the network goes (no AWS, no Stripe,
# no Cognito here). Everything else is exactly what the template gives.
NETWORK = ("AWS_ENDPOINT_URL", "STRIPE_API_BASE", "COGNITO_JWKS_URL")
# Parameters whose example values in the guide must name something that exists: moto's user pool and app client.
REPLACED = ("CognitoUserPoolId", "CognitoClientIds", "ExistingStripeSecretArn")


@dataclass
class Deployment:
    """One parameter set, deployed into moto as CloudFormation would leave it."""

    name: str
    stack_name: str
    region: str
    parameters: dict[str, str]
    template: dict = field(default_factory=dict)
    stack: Stack | None = None
    environments: dict[str, dict[str, str]] = field(default_factory=dict)
    api_domain: str = ""
    stripe_base: str = ""
    kept_customer: str | None = None  # a redeploy: the customer Ada had before the stack was deleted
    # IAM enforced (tests/deploy/iam.py): the operator's keys, and each function's role session in its environment.
    operator_credentials: dict[str, str] = field(default_factory=dict)
    role_environments: dict[str, dict[str, str]] = field(default_factory=dict)
    # Day two goes on to Stripe's events through EventBridge: `events setup`, then the deploy with its source.
    eventbridge_phase: bool = False
    enforced: EnforcedIam | None = None


def parameter_sets(guided_deploy) -> list[Deployment]:
    sets = []
    for environment in ("dev", "prod", "default"):
        project, _, run = guided_deploy(environment)
        parameters, deploy = saved_parameters(project / "samconfig.toml", environment)
        sets.append(Deployment(f"{environment}: the guide's first deploy", deploy["stack_name"], deploy["region"],
                               parameters))
    dev = sets[0]
    dev.eventbridge_phase = True
    sets.append(Deployment("dev: SnapStart on", dev.stack_name, dev.region, {**dev.parameters,
                                                                            "EnableSnapStart": "true"}))
    sets.append(Deployment("dev: tokens only, no plain links", dev.stack_name, dev.region,
                           {**dev.parameters, "CognitoDomain": ""}))
    kept = {a.prompt.removeprefix("Parameter "): a.typed for a in redeploy_answers()}
    sets.append(Deployment("dev: redeploy onto the kept table and secret", dev.stack_name, dev.region,
                           {**dev.parameters, **kept}))
    return sets


@pytest.fixture(scope="module")
def deployments(guided_deploy):
    sets = parameter_sets(guided_deploy)
    region = sets[0].region
    translated = translate([s.parameters for s in sets], region)
    for deployment, template in zip(sets, translated, strict=True):
        deployment.template = template
    return sets


@pytest.fixture
def aws(moto_server):
    moto_server.reset()
    return moto_server


TESTING_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def client(moto, service: str, region: str, credentials: dict[str, str] | None = None):
    """The rehearsal's own AWS client (while IAM is enforced, an administrator's); `credentials`: another's."""
    credentials = credentials or getattr(moto, "admin_credentials", None) or TESTING_CREDENTIALS
    return boto3.client(service, region_name=region, endpoint_url=moto.endpoint, **credentials)


def generated_secret(spec: dict) -> str:
    """A value as CloudFormation's GenerateSecretString makes it (template, key, length, no punctuation)."""
    alphabet = string.ascii_letters + string.digits if spec.get("ExcludePunctuation") else string.printable[:94]
    value = json.loads(spec["SecretStringTemplate"])
    value[spec["GenerateStringKey"]] = "".join(secrets.choice(alphabet) for _ in range(spec["PasswordLength"]))
    return json.dumps(value)


def deploy(deployment: Deployment, moto, standin: StripeStandin) -> Deployment:
    """Guide step 1 in moto (a pool, an app client, a user, a Hosted UI domain for plain links); what an earlier
    stack kept, for a redeploy; then what CloudFormation would create that the functions touch, from the
    translated template's own properties, and fabricated ids for what the functions only name."""
    region, name = deployment.region, deployment.stack_name
    cognito = client(moto, "cognito-idp", region)
    pool = cognito.create_user_pool(PoolName=f"{name}-users", AutoVerifiedAttributes=["email"])["UserPool"]["Id"]
    app_client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="site", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        AllowedOAuthFlows=["code"], AllowedOAuthScopes=["openid", "email"],
        AllowedOAuthFlowsUserPoolClient=True, CallbackURLs=["https://placeholder.example/portal/callback"],
    )["UserPoolClient"]["ClientId"]
    domain = deployment.parameters.get("CognitoDomain", "")
    if domain:  # Guide step 1 for plain links: a Hosted UI domain on the pool
        cognito.create_user_pool_domain(Domain=domain.split("//")[-1].split(".")[0], UserPoolId=pool)
    cognito.admin_create_user(UserPoolId=pool, Username="ada", MessageAction="SUPPRESS",
                              UserAttributes=[{"Name": "email", "Value": "ada@example.com"},
                                              {"Name": "email_verified", "Value": "true"}])
    cognito.admin_set_user_password(UserPoolId=pool, Username="ada", Password=PASSWORD, Permanent=True)
    parameters = {**deployment.parameters, "CognitoUserPoolId": pool, "CognitoClientIds": app_client}
    if parameters.get("ExistingCustomersTableName"):
        parameters["ExistingStripeSecretArn"] = keep_earlier_stack(deployment, moto, standin, pool, parameters)
    template = deployment.template
    resources = template["Resources"]
    api_id = "a1b2c3d4e5"
    version = next(k for k, r in resources.items() if r["Type"] == "AWS::Lambda::Version")
    physical = {"HttpApi": api_id, "CodeDeployServiceRole": f"{name}-CodeDeployServiceRole",
                "ServerlessDeploymentApplication": f"{name}-ServerlessDeploymentApplication",
                version: f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}-PortalFunction-R3h34rs4l:1"}
    for logical_id in FUNCTIONS:
        physical[logical_id] = f"{name}-{logical_id}-R3h34rs4l"
    attributes = {(logical_id, "Arn"): f"arn:aws:lambda:{region}:{ACCOUNT}:function:{physical[logical_id]}"
                  for logical_id in FUNCTIONS}
    stack = Stack(template, parameters, stack_name=name, region=region, physical_ids=physical,
                  attributes=attributes)
    assert stack.rule_failures() == [], "the template's Rules refuse the guide's answers"

    dynamodb, secretsmanager = client(moto, "dynamodb", region), client(moto, "secretsmanager", region)
    if stack.exists("CustomersTable"):
        table_name = f"{name}-CustomersTable-R3H34RS4L"
        properties = stack.resolve(resources["CustomersTable"]["Properties"])
        dynamodb.create_table(TableName=table_name, KeySchema=properties["KeySchema"],
                              AttributeDefinitions=properties["AttributeDefinitions"],
                              BillingMode=properties["BillingMode"])
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
        stack.physical_ids["CustomersTable"] = table_name
        stack.attributes[("CustomersTable", "Arn")] = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table_name}"
    for logical_id in ("StripeApiKeySecret", "OAuthSecret", "WebhookSigningSecret"):
        if stack.exists(logical_id):
            properties = stack.resolve(resources[logical_id]["Properties"])
            value = properties.get("SecretString") or generated_secret(properties["GenerateSecretString"])
            stack.physical_ids[logical_id] = secretsmanager.create_secret(
                Name=properties["Name"], SecretString=value)["ARN"]
    deployment.stack = stack
    deployment.api_domain = f"{api_id}.execute-api.{region}.amazonaws.com"
    for logical_id in FUNCTIONS:
        deployment.environments[logical_id] = stack.function_environment(logical_id)
    # What `describe-stacks` would answer (the admin command reads it with --stack).
    register_stack_record(deployment, moto)
    return deployment


def keep_earlier_stack(deployment: Deployment, moto, standin: StripeStandin, pool: str, parameters: dict) -> str:
    """What the deleted stack kept: its table, with Ada's mapping and the account pin, and its secret, with the
    key in it. Returns the kept secret's ARN (moto makes its own: the guide's example ARN cannot exist)."""
    region, mode = deployment.region, parameters.get("StripeMode", "test")
    cognito = client(moto, "cognito-idp", region)
    ada = next(a["Value"] for a in cognito.admin_get_user(UserPoolId=pool, Username="ada")["UserAttributes"]
               if a["Name"] == "sub")
    customer = standin.add_customer(email="ada@example.com", subscription_status="active",
                                    metadata={"cognito_sub": ada, "cognito_user_pool": pool})
    dynamodb = client(moto, "dynamodb", region)
    from devstack.aws_standin import table_definition

    table = parameters["ExistingCustomersTableName"]
    dynamodb.create_table(TableName=table, **table_definition())
    dynamodb.put_item(TableName=table, Item={"pk": {"S": f"{mode}#{pool}#{ada}"}, "customer_id": {"S": customer}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": f"{mode}#stripe-account"},
                                             "account_id": {"S": standin.account.id}})
    kept_name = parameters["ExistingStripeSecretArn"].split(":secret:", 1)[1].rsplit("-", 1)[0]
    key = standin.add_key(fake_key("rk", mode), GUIDE_PERMISSIONS)
    deployment.kept_customer = customer
    return client(moto, "secretsmanager", region).create_secret(
        Name=kept_name, SecretString=json.dumps({"api_key": key}))["ARN"]


def register_stack_record(deployment: Deployment, moto) -> None:
    stack = deployment.stack
    outputs = {name: stack.output(name) for name in stack.template["Outputs"]}
    body = {"Parameters": {name: {"Type": "String"} for name in stack.parameters},
            "Resources": {"Record": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {name: {"Value": value} for name, value in outputs.items() if value is not None}}
    client(moto, "cloudformation", deployment.region).create_stack(
        StackName=deployment.stack_name, TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in stack.parameters.items()])


def lambda_environment(deployment: Deployment, logical_id: str, *, moto, stripe_base: str) -> dict[str, str]:
    """What Lambda sets, the template's variables, and the NETWORK redirections."""
    region = deployment.region
    pool = deployment.stack.parameters["CognitoUserPoolId"]
    env = {
        "AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        **deployment.role_environments.get(logical_id, {}),  # the function's role, as Lambda gives it
        "AWS_LAMBDA_FUNCTION_NAME": deployment.stack.physical_ids[logical_id],
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if deployment.parameters.get("EnableSnapStart") == "true"
        and logical_id == "PortalFunction" else "on-demand",
        **deployment.environments[logical_id],
    }
    assert not set(NETWORK) & set(deployment.environments[logical_id]) - {"COGNITO_JWKS_URL"}
    assert deployment.environments[logical_id].get("COGNITO_JWKS_URL", "") == ""  # the guide leaves it empty
    env.update(AWS_ENDPOINT_URL=moto.endpoint, STRIPE_API_BASE=stripe_base)
    if logical_id == "PortalFunction":
        env["COGNITO_JWKS_URL"] = f"{moto.endpoint}/{pool}/.well-known/jwks.json"
    return env


class ColdStart:
    """Start a function's handler module with exactly `env`, and run its invocations in that environment again
    (each function is its own process in Lambda; here they share one, so the environment is swapped)."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.names = set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', "".join(
            p.read_text() for p in (ROOT / "layers/core/portal_gateway").glob("*.py")))) | {
            "NEW_VERSION", "HOSTED_UI", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "AWS_ENDPOINT_URL",
            "POWERTOOLS_METRICS_NAMESPACE", "AWS_LAMBDA_INITIALIZATION_TYPE"}

    def use(self, env: dict[str, str]) -> None:
        for name in list(os.environ):
            if name in self.names or name.startswith(("AWS_", "STRIPE_", "COGNITO_", "POWERTOOLS_")):
                self.monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)

    @contextmanager
    def running(self, env: dict[str, str]):
        before = {name: os.environ.get(name) for name in set(os.environ) | set(env)}
        self.use(env)
        try:
            yield
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def __call__(self, kind: str, env: dict[str, str]):
        self.use(env)
        boto3.setup_default_session()
        reset_logging()
        module = load_handler_module(ROOT / "functions" / kind / "app.py")
        module.rehearsal_env, module.cold_start = dict(env), self
        return module


class RotationFunctionInvoke:
    """Lambda's Invoke of the rotation function (moto runs no function code without a container runtime): its
    module, booted with the environment CloudFormation gives it, answers as Lambda would, an error included.
    Secrets Manager itself is moto's, every call of it real: the staging, the reads by version, the stage moves."""

    def __init__(self, rotation_module, cold_start):
        self._rotation, self._cold_start = rotation_module, cold_start

    def invoke(self, *, FunctionName, Payload, **_):  # noqa: N803
        event = json.loads(Payload)
        with self._cold_start.running(self._rotation.rehearsal_env):
            try:
                self._rotation.lambda_handler(event, new_context(60))
            except Exception as exc:  # noqa: BLE001 - Lambda reports a function's exception as a FunctionError
                error = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}).encode()
                return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(error)}
        return {"StatusCode": 200, "Payload": io.BytesIO(b"null")}


class LambdaInvoke:
    """Lambda's Invoke of the new version, for the pre-traffic hook: the portal module booted with its env."""

    def __init__(self, portal_module, cold_start):
        self.portal, self._cold_start = portal_module, cold_start

    def invoke(self, *, FunctionName, Payload, LogType="None"):  # noqa: N803
        captured = io.StringIO()
        with redirect_stdout(captured), self._cold_start.running(self.portal.rehearsal_env):
            answer = self.portal.lambda_handler(json.loads(Payload), new_context())
        data = json.dumps(answer).encode()
        return {"StatusCode": 200, "Payload": io.BytesIO(data),
                "LogResult": base64.b64encode(captured.getvalue().encode()[-4096:]).decode()}


class CodeDeploy:
    def __init__(self):
        self.verdicts: list[str] = []

    def put_lifecycle_event_hook_execution_status(self, **kwargs):
        self.verdicts.append(kwargs["status"])
        return {"lifecycleEventHookExecutionId": kwargs["lifecycleEventHookExecutionId"]}


def put_current(secretsmanager, secret_id: str, value: str) -> None:
    """aws secretsmanager put-secret-value: the new version becomes AWSCURRENT and the old one loses it. AWS does
    both in the one call; moto keeps AWSCURRENT on the old version too, so the move is made explicit."""
    old = next(v for v, stages in secretsmanager.describe_secret(SecretId=secret_id)["VersionIdsToStages"].items()
               if "AWSCURRENT" in stages)
    new = secretsmanager.put_secret_value(SecretId=secret_id, SecretString=value, VersionStages=["AWSPENDING"])
    secretsmanager.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSCURRENT",
                                               MoveToVersionId=new["VersionId"], RemoveFromVersionId=old)


def failed_release_checks(hook) -> list:
    """The hook's failed checks, run again for the assertion message."""
    from portal_gateway.checks.release_check import check_release

    checks = check_release(invoke=hook.invoke, key_checks=hook.key_checks,
                           hosted_ui=os.environ.get("HOSTED_UI") == "true")
    return [(c.name, c.detail, c.fix) for c in checks if not c.ok]


def admin(argv: list[str], deployment: Deployment, moto, *, stdin: str = "", rotation=None,
          cold_start=None) -> tuple[int, str]:
    from portal_admin import cli

    def factory(service: str):
        real = client(moto, service, deployment.region, deployment.operator_credentials or None)
        if service == "lambda" and rotation:
            # moto cannot run the function (and names the action lambda:Invoke): the invoke is counted here.
            OPERATOR_CALLS_MOTO_CANNOT_SEE.add("lambda:InvokeFunction")
            return RotationFunctionInvoke(rotation, cold_start)
        return real

    out = io.StringIO()
    # The operator's machine: a region, and Stripe (here its stand-in); AWS through the client factory.
    operator = {"AWS_REGION": deployment.region, "STRIPE_API_BASE": deployment.stripe_base}
    with cold_start.running(operator):
        code = cli.main(argv, stdin=io.StringIO(stdin), out=out, err=out, client=factory)
    return code, out.getvalue()


def api(module, method: str, path: str, deployment: Deployment, **headers) -> dict:
    """A request through API Gateway to the function, in its own environment (its role's credentials)."""
    event = build_event(method, path, headers={"host": deployment.api_domain, **headers})
    with module.cold_start.running(module.rehearsal_env):
        return module.lambda_handler(event, new_context())


def test_every_documented_parameter_set_passes_the_templates_parameter_checks_and_rules(deployments):
    for deployment in deployments:
        stack = Stack(deployment.template, {**deployment.parameters, "CognitoUserPoolId": "eu-west-1_AbCdEf123",
                                            "CognitoClientIds": "abc123"},
                      stack_name=deployment.stack_name, region=deployment.region)
        assert stack.rule_failures() == [], deployment.name


OPERATOR_CALLS_MOTO_CANNOT_SEE: set[str] = set()
# Per parameter set walked: principal -> (the actions its policy grants, the actions the walk used).
WALKED: dict[str, dict[str, tuple[set[str], set[str]]]] = {}
# Per parameter set walked: (what, the request for the IAM simulator, whether it must be allowed).
SIMULATIONS: dict[str, list[tuple[str, dict, bool]]] = {}
# Granted actions the walk does not reach, each with where it is needed; anything else granted and unused fails.
NOT_REACHED_BY_THE_WALK = {
    "PortalFunctionRole": {
        "cognito-idp:AdminGetUser": "the status check of a token over a minute old (the walk's tokens are fresh)",
        "cognito-idp:ListUsers": "an email match (Ada's customer is created, not matched)"},
    "RotationFunctionRole": {
        "dynamodb:PutItem": "pinning the account when the rotation function checks a key first (rotate-key pins)",
        "dynamodb:UpdateItem": "completing a pin written without a portal configuration"},
    "PreTrafficHookFunctionRole": {
        "lambda:InvokeFunction": "invoking the new version (moto runs no function: LambdaInvoke stands in)",
        "codedeploy:PutLifecycleEventHookExecutionStatus": "the verdict (moto has no CodeDeploy hooks: CodeDeploy "
                                                           "stands in)",
        "dynamodb:PutItem": "pinning the account when the release check is the first to check a key",
        "dynamodb:UpdateItem": "completing a pin written without a portal configuration"},
    "WebhookFunctionRole": {
        "cognito-idp:ListUsers": "binding a purchase that names no user by its buyer's verified email",
        "dynamodb:DeleteItem": "dropping the mapping of a customer deleted in Stripe"},
    "StripeEventsFunctionRole": {
        "cognito-idp:ListUsers": "binding a purchase that names no user by its buyer's verified email",
        "dynamodb:DeleteItem": "dropping the mapping of a customer deleted in Stripe",
        "sqs:SendMessage": "Lambda's dead-letter queue for an event still failing after the retries (Lambda sends "
                           "with the function's role; moto runs no asynchronous invocation)"},
    "ReconcileFunctionRole": {
        "cognito-idp:ListUsers": "binding a missed purchase by its buyer's verified email",
        "dynamodb:DeleteItem": "clearing a catalog change once every status showing it was read again"},
}


def principal_kind(name: str) -> str:
    """"operator", or the role's logical id (the role's name is the stack's name and it)."""
    return re.sub(r"^.*-(\w+Role)$", r"\1", name)


@pytest.mark.parametrize("index", range(6))
def test_the_readmes_order_works_from_an_empty_account(deployments, index, aws, monkeypatch, capsys):
    """...with IAM enforced: the operator under the documented policy, each function under its role."""
    standin = StripeStandin().start()
    try:
        standin.create_default_portal_configuration(deployments[index].parameters.get("StripeMode", "test"))
        deployment = deploy(deployments[index], aws, standin)
        enforced = principals(deployment, aws)
        deployment.enforced = enforced
        OPERATOR_CALLS_MOTO_CANNOT_SEE.clear()
        aws.admin_credentials = enforced.admin
        with enforced.enforced():
            walk_the_readme(deployment, aws, standin, ColdStart(monkeypatch), capsys)
        used = enforced.used()
        used.setdefault("operator", set()).update(OPERATOR_CALLS_MOTO_CANNOT_SEE)
        for principal, actions in used.items():  # moto refused anything else already; this covers the invoke too
            if principal != "rehearsal-admin":
                assert actions - NEEDS_NO_PERMISSION <= enforced.granted[principal], principal
        SIMULATIONS[deployments[index].name] = simulations(deployment, enforced)
        WALKED[deployments[index].name] = {principal_kind(p): (enforced.granted[p], used.get(p, set()))
                                           for p in enforced.granted if p != "rehearsal-admin"}
    finally:
        aws.admin_credentials = None
        standin.close()


def operator_policy(deployment: Deployment) -> dict:
    """docs/iam/operator-policy.json with its placeholders filled in, as the guide says to."""
    return filled_policy(OPERATOR_POLICY, Region=deployment.region, Account=ACCOUNT, StackName=deployment.stack_name,
                         UserPoolId=deployment.stack.parameters["CognitoUserPoolId"])


def simulations(deployment: Deployment, enforced: EnforcedIam) -> list[tuple[str, dict, bool]]:
    """What the IAM simulator is asked: every distinct request of the walk under the policies as written
    (resources and conditions included), expected allowed; and what must stay refused, expected not."""
    region, mode, name = deployment.region, deployment.stack.parameters["StripeMode"], deployment.stack_name

    def request(principal: str, action: str, resource: str | None, context: dict | None = None) -> dict:
        return {"principal": enforced.arns[principal], "action": action, "resource": resource or "*",
                "accountId": ACCOUNT, "context": context or {}, "policies": enforced.policies[principal]}

    asked, seen = [], set()
    for principal, action, body in enforced.requests():
        if principal == "rehearsal-admin" or action in NEEDS_NO_PERMISSION:
            continue
        context = condition_keys(action, body)
        for resource in resources_of(action, body, region, ACCOUNT):
            what = f"{principal} {action} {resource} {json.dumps(context, sort_keys=True)}"
            if what not in seen:
                seen.add(what)
                asked.append((what, request(principal, action, resource, context), True))
    # The operator's invoke is allowed by the tags CloudFormation puts on every function it makes (a long stack
    # name shortens the function's name): this stack's rotation function only.
    for what, logical_id, stack_tag, allowed in (
            ("operator invokes the rotation function", "RotationFunction", name, True),
            ("operator invokes the portal function", "PortalFunction", name, False),
            ("operator invokes another stack's rotation function", "RotationFunction", "another-stack", False)):
        function = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{deployment.stack.physical_ids[logical_id]}"
        tags = {"aws:ResourceTag/aws:cloudformation:stack-name": stack_tag,
                "aws:ResourceTag/aws:cloudformation:logical-id": logical_id}
        asked.append((what, request("operator", "lambda:InvokeFunction", function, tags), allowed))
    table = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{deployment.environments['PortalFunction']['CUSTOMERS_TABLE']}"
    for logical_id in ("PortalFunction", "WebhookFunction", "ReconcileFunction"):
        role = f"{name}-{logical_id}Role"
        writes = enforced.granted[role] & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
        for action in sorted(writes):
            for key in (f"{mode}#audit#stripe-key#2026-12-04T00:00:00Z", f"{mode}#stripe-account"):
                asked.append((f"{role} {action} {key}", request(role, action, table,
                                                                  {"dynamodb:LeadingKeys": [key]}), False))
    other = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/another-stack-CustomersTable-X"
    asked.append(("operator scans another stack's table", request("operator", "dynamodb:Scan", other), False))
    return asked


def principals(deployment: Deployment, moto) -> EnforcedIam:
    """The operator (docs/iam/operator-policy.json) and each function's role (the translated template's)."""
    enforced = EnforcedIam(moto, deployment.region)
    deployment.operator_credentials = enforced.user("operator", operator_policy(deployment))
    resources = deployment.template["Resources"]
    for logical_id in FUNCTIONS:
        role_id = resources[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        properties = deployment.stack.resolve(resources[role_id]["Properties"])
        deployment.role_environments[logical_id] = enforced.role(
            f"{deployment.stack_name}-{role_id}", [p["PolicyDocument"] for p in properties.get("Policies", [])])
    return enforced


def walk_the_readme(deployment: Deployment, moto, standin: StripeStandin, cold_start: ColdStart, capsys) -> None:
    mode = deployment.stack.parameters["StripeMode"]
    plain_links = bool(deployment.stack.parameters["CognitoDomain"])
    env = {logical_id: lambda_environment(deployment, logical_id, moto=moto, stripe_base=standin.base_url)
           for logical_id in FUNCTIONS}
    deployment.stripe_base = standin.base_url

    redeploy = deployment.kept_customer is not None
    callback = deployment.stack.output("CallbackUrlToRegister")

    # Step 3, the deploy: every function starts (no INIT failure), and the portal says what is missing.
    portal = cold_start("portal", env["PortalFunction"])
    health = api(portal, "GET", "/health", deployment, accept="application/json")
    if redeploy:  # the kept secret still holds the key
        assert health["statusCode"] == 200, health["body"]
    else:
        assert health["statusCode"] == 503 and json.loads(health["body"])["missing"] == ["stripe_key"]
    if plain_links:  # the guide's plain link: straight to the Hosted UI, with the API's own callback
        link = api(portal, "GET", "/portal", deployment, accept="text/html")
        assert link["statusCode"] == 302, link["body"]
        location = link["headers"]["Location"]
        assert location.startswith(deployment.stack.parameters["CognitoDomain"].rstrip("/") + "/oauth2/authorize?")
        assert f"redirect_uri={callback.replace(':', '%3A').replace('/', '%2F')}" in location
    code, out = admin(["check", "--stack", deployment.stack_name], deployment, moto, cold_start=cold_start)
    assert code == 1
    todo = out[out.index("Still to do"):]
    assert ("step 4: put the Stripe key in" in todo) != redeploy and "step 3" not in todo, out
    assert ("step 5: register the stack output CallbackUrlToRegister" in todo) == plain_links
    signout = api(portal, "GET", "/portal/signout", deployment, accept="text/html")
    assert signout["statusCode"] == 302
    assert signout["headers"]["Location"].startswith(
        f"{deployment.stack.parameters['CognitoDomain'].rstrip('/')}/logout?" if plain_links
        else deployment.stack.parameters["ReturnUrl"])

    # Step 4: the key goes in through rotate-key --stack; Secrets Manager drives the rotation function.
    rotation = cold_start("rotation", env["RotationFunction"])
    # The restricted key with the permissions docs/deploy.md lists, the billing status's included.
    key = standin.add_key(fake_key("rk", mode), GUIDE_PERMISSIONS | {"webhook_endpoints_write"} | (
        {"event_destinations_read"} if deployment.eventbridge_phase else set()))  # check reads the destination
    code, out = admin(["rotate-key", "--stack", deployment.stack_name], deployment, moto,
                      stdin=key + "\n", rotation=rotation, cold_start=cold_start)
    assert code == 0, out
    assert key not in out
    table = deployment.environments["PortalFunction"]["CUSTOMERS_TABLE"]
    audit = [item for item in client(moto, "dynamodb", deployment.region).scan(TableName=table)["Items"]
             if "#audit#stripe-key#" in item["pk"]["S"]]
    assert [item["command"]["S"] for item in audit] == ["rotate-key"] and key not in str(audit)

    # Step 5 (plain links): register the callback the stack reports; then `check` passes everything but what
    # moto cannot hold (a Hosted UI domain).
    if plain_links:
        cognito = client(moto, "cognito-idp", deployment.region)
        pool, app_client = deployment.stack.parameters["CognitoUserPoolId"], deployment.stack.parameters[
            "CognitoClientIds"]
        described = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=app_client)["UserPoolClient"]
        cognito.update_user_pool_client(UserPoolId=pool, ClientId=app_client, CallbackURLs=[callback],
                                        LogoutURLs=[deployment.stack.parameters["ReturnUrl"]],
                                        AllowedOAuthFlows=described["AllowedOAuthFlows"],
                                        AllowedOAuthScopes=described["AllowedOAuthScopes"],
                                        AllowedOAuthFlowsUserPoolClient=True,
                                        ExplicitAuthFlows=described["ExplicitAuthFlows"])
    # Step 6: the billing status webhook, at the stack's WebhookUrl, its secret stored; then the backfill.
    code, out = admin(["webhooks", "setup", "--stack", deployment.stack_name], deployment, moto,
                      cold_start=cold_start)
    assert code == 0, out
    webhook_url = deployment.stack.output("WebhookUrl")
    (endpoint,) = standin.account.webhook_endpoints.values()
    assert endpoint["url"] == webhook_url and endpoint["_signing_secrets"][0] not in out
    code, out = admin(["backfill", "--stack", deployment.stack_name], deployment, moto, cold_start=cold_start)
    assert code == 0 and "mapped customers" in out, out

    code, out = admin(["check", "--stack", deployment.stack_name], deployment, moto, cold_start=cold_start)
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    # The only failures left: the JWKS is Cognito's real URL and the webhook the API's, and there is no network
    # here (the webhook function itself is invoked below).
    assert [line.split()[1:3] for line in failed] == [["JWKS", "reachable"], ["webhook", "reachable"]], out

    # Step 7, a signed-in user clicks: health is ok and they land in their own portal.
    assert api(portal, "GET", "/health", deployment)["statusCode"] == 200
    cognito = client(moto, "cognito-idp", deployment.region)
    app_client = deployment.stack.parameters["CognitoClientIds"]
    token = cognito.initiate_auth(ClientId=app_client, AuthFlow="USER_PASSWORD_AUTH",
                                  AuthParameters={"USERNAME": "ada", "PASSWORD": PASSWORD})["AuthenticationResult"]
    landed = api(portal, "GET", "/portal", deployment, accept="text/html",
                 authorization=f"Bearer {token['IdToken']}")
    assert landed["statusCode"] == 302, landed["body"]
    assert landed["headers"]["Location"].startswith(standin.base_url + "/p/session/")
    (customer,) = standin.customers(mode)
    landed_on = standin.account.sessions[landed["headers"]["Location"].rsplit("/", 1)[-1]]["customer"]
    assert landed_on == customer["id"]
    if redeploy:  # the kept table brought Ada back to the customer she had: nothing new was created
        assert customer["id"] == deployment.kept_customer

    # Her page asks what she has; a subscription reaches the webhook function, signed as Stripe signs it.
    status = api(portal, "GET", "/billing/status", deployment, accept="application/json",
                 authorization=f"Bearer {token['IdToken']}")
    assert status["statusCode"] == 200 and json.loads(status["body"])["has_billing_account"] is True
    price = standin.add_product("Pro", lookup_key="pro", features=("pro-feature",))
    standin.add_subscription(customer["id"], "active", price_id=price)
    webhooks = cold_start("webhooks", env["WebhookFunction"])
    for event in standin.events()[-2:]:  # the subscription and the entitlement summary
        body = json.dumps(event)
        with cold_start.running(webhooks.rehearsal_env):
            delivery = webhooks.lambda_handler(build_event(
                "POST", "/webhooks/stripe", body=body, headers={
                    "host": deployment.api_domain, "content-type": "application/json",
                    "stripe-signature": signature_header(body.encode(), endpoint["_signing_secrets"])}), new_context())
        assert delivery["statusCode"] == 200, delivery["body"]
    cold_start.use(env["PortalFunction"])
    status = api(portal, "GET", "/billing/status", deployment, accept="application/json",
                 authorization=f"Bearer {token['IdToken']}")
    assert json.loads(status["body"])["entitlements"] == ["pro-feature"], status["body"]
    # The scheduled reconciliation (EventBridge's schedule invokes it): nothing missed, nothing stale.
    reconcile = cold_start("webhooks", env["ReconcileFunction"])
    with cold_start.running(reconcile.rehearsal_env):
        report = reconcile.reconcile_handler({"source": "aws.scheduler"}, new_context(300))
    assert report["pass_completed"] and not report["out_of_time"], report

    # A later deploy: the pre-traffic hook checks the new version and lets it through.
    new_version = cold_start("portal", env["PortalFunction"])
    hook = cold_start("pre_traffic", env["PreTrafficHookFunction"])
    hook.lambda_client, hook.codedeploy = LambdaInvoke(new_version, cold_start), CodeDeploy()
    event = {"DeploymentId": "d-REHEARSAL", "LifecycleEventHookExecutionId": str(uuid.uuid4())}
    with cold_start.running(hook.rehearsal_env):
        verdict = hook.lambda_handler(event, new_context(300))
    assert verdict == {"status": "Succeeded"}, failed_release_checks(hook)
    assert hook.codedeploy.verdicts == ["Succeeded"]

    # Day two, as docs/operations.md shows it: who is Ada, start her over, link her back, roll the webhook secret.
    sub = next(a["Value"] for a in cognito.admin_get_user(UserPoolId=deployment.stack.parameters["CognitoUserPoolId"],
                                                           Username="ada")["UserAttributes"] if a["Name"] == "sub")
    for argv in (["whois", "--username", "ada"], ["unlink", sub, "--reason", "ticket 1"],
                 ["link", sub, customer["id"], "--reason", "ticket 2"], ["webhooks", "roll"]):
        code, out = admin([*argv, "--stack", deployment.stack_name], deployment, moto, cold_start=cold_start)
        assert code == 0, (argv, out)

    if deployment.eventbridge_phase:
        switch_to_eventbridge(deployment, moto, standin, cold_start, customer["id"])

    # A rotation to a key of another Stripe account is refused, and a release holding one is rolled back.
    other = standin.add_account()
    standin.create_default_portal_configuration(mode, account=other)
    foreign = standin.add_key(fake_key("rk", mode), frozenset({"customers_write", "portal_write"}), account=other)
    code, out = admin(["rotate-key", "--stack", deployment.stack_name], deployment, moto,
                      stdin=foreign + "\n", rotation=rotation, cold_start=cold_start)
    assert code == 1 and "same Stripe account as before" in out
    put_current(client(moto, "secretsmanager", deployment.region), deployment.stack.output("StripeSecretArn"),
                json.dumps({"api_key": foreign}))  # by hand, around rotate-key's checks
    broken = cold_start("portal", env["PortalFunction"])
    cold_start.use(env["PreTrafficHookFunction"])
    hook.lambda_client, hook.codedeploy = LambdaInvoke(broken, cold_start), CodeDeploy()
    with cold_start.running(hook.rehearsal_env):
        assert hook.lambda_handler(event, new_context(300)) == {"status": "Failed"}
    assert hook.codedeploy.verdicts == ["Failed"]
    assert customer["id"] in {c["id"] for c in standin.customers(mode)}


def switch_to_eventbridge(deployment: Deployment, moto, standin: StripeStandin, cold_start: ColdStart,
                          customer: str) -> None:
    """docs/deploy.md, "Stripe's events through Amazon EventBridge", in two phases: the operator makes Stripe's
    event destination (Stripe then makes the partner event source in the stack's account); the deploy with that
    source adds the bus, its archive, the rule and the StripeEventsFunction (made in moto from the translated
    template's own properties). Then Stripe's events arrive through the bus, `check` says so, and `events replay`
    brings the archive back, the operator's commands under the documented policy and the function under its role.
    moto cannot deliver to a Lambda target: an SQS queue in the target's place shows what the rule hands over,
    and the function is invoked with each message (the target's own properties are checked as translated)."""
    from tests.support import moto_partner_buses

    moto_partner_buses.install()
    region, name, enforced = deployment.region, deployment.stack_name, deployment.enforced
    key = standin.add_key(fake_key("rk", deployment.stack.parameters["StripeMode"]),
                          frozenset({"event_destinations_write"}))
    code, out = admin(["events", "setup", "--stack", name, "--key-stdin"], deployment, moto, stdin=key + "\n",
                      cold_start=cold_start)
    assert code == 0 and key not in out, out
    source = re.search(r"Parameter StripeEventSourceName: (\S+)", out).group(1)
    events = client(moto, "events", region)  # Stripe's own AWS side: the partner event source, for this account
    events.create_partner_event_source(Name=source, Account=ACCOUNT)

    # Deploy again with the source: the same translated template, the new answer, what CloudFormation adds.
    before = deployment.stack
    stack = Stack(deployment.template, {**before.parameters, "StripeEventSourceName": source}, stack_name=name,
                  region=region, physical_ids=before.physical_ids, attributes=before.attributes)
    assert stack.rule_failures() == [] and stack.exists("StripeEventsFunction")
    resources = deployment.template["Resources"]
    bus = stack.resolve(resources["StripeEventBus"]["Properties"])
    stack.physical_ids["StripeEventBus"] = bus["Name"]
    stack.attributes[("StripeEventBus", "Arn")] = events.create_event_bus(**bus)["EventBusArn"]
    sqs = client(moto, "sqs", region)
    queue = sqs.create_queue(QueueName=f"{name}-StripeEventsDeadLetterQueue-R3H34RS4L")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.physical_ids["StripeEventsDeadLetterQueue"] = queue
    stack.attributes[("StripeEventsDeadLetterQueue", "Arn")] = queue_arn
    stack.attributes[("StripeEventsDeadLetterQueue", "QueueName")] = queue_arn.rsplit(":", 1)[1]
    archive = stack.resolve(resources["StripeEventArchive"]["Properties"])
    made = events.create_archive(ArchiveName=f"StripeEventArchive-{uuid.uuid4().hex[:12]}",
                                 EventSourceArn=archive["SourceArn"], RetentionDays=int(archive["RetentionDays"]))
    stack.attributes[("StripeEventArchive", "Arn")] = made["ArchiveArn"]
    function = f"{name}-StripeEventsFunction-R3h34rs4l"
    stack.physical_ids["StripeEventsFunction"] = function
    stack.attributes[("StripeEventsFunction", "Arn")] = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{function}"
    rule = stack.resolve(resources["StripeEventsFunctionStripeEvents"]["Properties"])
    rule_name = f"{name}-StripeEventsFunctionStripeEv-R3H34RS4L"
    stack.attributes[("StripeEventsFunctionStripeEvents", "Arn")] = events.put_rule(
        Name=rule_name, EventBusName=rule["EventBusName"], EventPattern=json.dumps(rule["EventPattern"]),
        State=rule.get("State", "ENABLED"))["RuleArn"]
    handed = sqs.create_queue(QueueName="what-the-rule-hands-the-function")["QueueUrl"]
    handed_arn = sqs.get_queue_attributes(QueueUrl=handed, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    (target,) = rule["Targets"]
    assert target["Arn"] == stack.attributes[("StripeEventsFunction", "Arn")]
    assert target["DeadLetterConfig"]["Arn"] == queue_arn
    # moto raises NotImplementedError when a rule delivers to a Lambda target: the queue takes the target's place.
    events.put_targets(Rule=rule_name, EventBusName=rule["EventBusName"],
                       Targets=[{"Id": target["Id"], "Arn": handed_arn}])
    deployment.stack = stack
    client(moto, "cloudformation", region).delete_stack(StackName=name)
    register_stack_record(deployment, moto)
    deployment.environments["StripeEventsFunction"] = stack.function_environment("StripeEventsFunction")
    role_id = resources["StripeEventsFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]
    with enforced.lifted():  # IAM creates the new role during the deploy
        deployment.role_environments["StripeEventsFunction"] = enforced.role(
            f"{name}-{role_id}", [p["PolicyDocument"] for p in stack.resolve(resources[role_id]["Properties"]).get(
                "Policies", [])])
    env = lambda_environment(deployment, "StripeEventsFunction", moto=moto, stripe_base=standin.base_url)
    bridge = cold_start("webhooks", env)

    def apply(messages: list[dict]) -> list[str]:
        with cold_start.running(bridge.rehearsal_env):
            return [bridge.eventbridge_handler(m, new_context())["outcome"] for m in messages]

    def received() -> list[dict]:
        found = []
        while messages := sqs.receive_message(QueueUrl=handed, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=handed, ReceiptHandle=message["ReceiptHandle"])
        return found

    # Stripe puts its events on the source; the bus's rule hands the handled ones to the function.
    stripe_events = client(moto, "events", region)
    standin.associate_event_bus(source, lambda m: stripe_events.put_partner_events(Entries=[{
        "Source": source, "DetailType": m["detail-type"], "Detail": json.dumps(m["detail"]),
        "Time": datetime.datetime.fromtimestamp(m["detail"]["created"], datetime.UTC)}]))
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    standin.add_subscription(customer, "active", price_id=standin.add_product("Team", lookup_key="team",
                                                                             features=("team-feature",)))
    standin.eventbridge.deliver()
    first = received()
    assert first and "processed" in apply(first), first
    code, out = admin(["check", "--stack", name], deployment, moto, cold_start=cold_start)
    passed = {line.split("  ")[1].strip() for line in out.splitlines() if line.startswith("PASS")}
    assert {"event destination", "event destination events", "event bus associated", "event rule"} <= passed, out

    # The recovery the webhook path lacks: the archive replayed; what was applied is recognised and skipped.
    code, out = admin(["events", "replay", "--stack", name, "--since", since.strftime("%Y-%m-%dT%H:%M:%SZ")],
                      deployment, moto, cold_start=cold_start)
    assert code == 0 and "completed" in out, out
    again = received()
    assert len(again) == len(first) and set(apply(again)) == {"duplicate"}


def test_every_action_a_policy_grants_is_one_the_walks_used():
    """A missing action fails the walk itself (moto refuses it); an extra one fails here. The operator's policy
    (docs/iam/operator-policy.json) is exactly what the commands of the deploy guide and the runbook used."""
    if len(WALKED) < 6:
        pytest.skip("needs the walks of test_the_readmes_order_works_from_an_empty_account in the same run")
    granted: dict[str, set[str]] = {}
    used: dict[str, set[str]] = {}
    for walk in WALKED.values():
        for principal, (allowed, asked) in walk.items():
            granted.setdefault(principal, set()).update(allowed)
            used.setdefault(principal, set()).update(asked)
    assert set(granted) == {"operator", "StripeEventsFunctionRole", *(f"{f}Role" for f in FUNCTIONS)}
    for principal in granted:
        unused = granted[principal] - used[principal]
        assert unused == set(NOT_REACHED_BY_THE_WALK.get(principal, {})), (principal, sorted(unused))


def test_every_request_of_the_walks_is_allowed_as_written_and_no_function_writes_audit_records_or_the_pin():
    """Resources and conditions, which moto does not evaluate: each distinct request of the six walks under its
    principal's policies as written (the operator's from docs/iam, each role's from the translated template),
    by @cloud-copilot/iam-simulate. The portal, webhook and reconciliation roles may not write an audit record or
    the account pin (dynamodb:LeadingKeys); the operator may not touch another stack's table."""
    missing = simulator_missing()
    if missing:
        pytest.skip(missing)
    if len(SIMULATIONS) < 6:
        pytest.skip("needs the walks of test_the_readmes_order_works_from_an_empty_account in the same run")
    asked = [item for walk in SIMULATIONS.values() for item in walk]
    verdicts = simulate([request for _, request, _ in asked])
    wrong = [(what, verdict) for (what, _, allowed), verdict in zip(asked, verdicts, strict=True)
             if (verdict == "Allowed") != allowed]
    assert wrong == [], "\n".join(f"{verdict}: {what}" for what, verdict in sorted(set(wrong)))
    assert sum(1 for _, _, allowed in asked if not allowed) >= 6 * 8  # the refusals were asked, every walk

"""What an ops engineer relies on when reading template.yaml: the contract with the code, least privilege,
safe defaults, and sample events that really route."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from portal_gateway.config import Settings

from devstack.cfn import load_template
from devstack.http_api import build_event

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template():
    return load_template(ROOT / "template.yaml")


def resources_of(template, kind):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def resolve(value, template, samples):
    """Turn a template value into what CloudFormation would pass, using parameter samples/defaults."""
    if isinstance(value, dict) and "Ref" in value:
        ref = value["Ref"]
        if ref in template["Parameters"]:
            return str(samples.get(ref, template["Parameters"][ref].get("Default", "")))
        return f"resolved-{ref}"
    if isinstance(value, dict) and "Fn::If" in value:
        return resolve(value["Fn::If"][1], template, samples)
    return str(value)


def test_function_environment_is_a_valid_configuration(template):
    fn = template["Resources"]["PortalFunction"]["Properties"]
    samples = {"CognitoUserPoolId": "eu-west-1_AbCdEf123", "CognitoClientIds": "abc123def456",
               "ReturnUrl": "https://www.example.com/account",
               "AllowedReturnUrls": "https://www.example.com,https://www.example.com/help/"}
    env = {k: resolve(v, template, samples) for k, v in fn["Environment"]["Variables"].items()}
    settings = Settings.from_env(env)  # raises, naming the variable, if the template and code disagree
    assert settings.stripe_mode == "test"
    assert settings.allowed_return_urls == ("https://www.example.com", "https://www.example.com/help/")
    contract = {"STRIPE_SECRET_ID", "STRIPE_MODE", "COGNITO_USER_POOL_ID", "COGNITO_CLIENT_IDS", "COGNITO_JWKS_URL",
                "CUSTOMERS_TABLE", "ALLOW_CUSTOMER_CREATION", "MATCH_EXISTING_BY_EMAIL", "RETURN_URL",
                "ALLOWED_RETURN_URLS", "PORTAL_CONFIGURATION_ID", "ALLOW_CUSTOM_JWKS_URL", "CHECK_USER_STATUS"}
    assert contract <= set(env)
    assert "STRIPE_API_BASE" not in env  # local stand-ins only, never in a deployment
    assert env["ALLOW_CUSTOM_JWKS_URL"] == "false"  # a foreign JWKS host is refused unless asked for
    assert settings.check_user_status is True  # disabled and deleted users are refused by default
    samples.update(CognitoDomain="https://login.example.com", CallbackUrl="https://api.example.com/portal/callback",
                   AllowedOrigins="https://www.example.com")
    env = {k: resolve(v, template, samples) for k, v in fn["Environment"]["Variables"].items()}
    with_login = Settings.from_env(env)
    assert with_login.cognito_domain == "https://login.example.com"
    assert with_login.oauth_client_id == "abc123def456" and with_login.oauth_secret_id == "resolved-OAuthSecret"
    assert with_login.allowed_origins == ("https://www.example.com",)


def test_oauth_secret_is_generated_never_written_in_the_template(template):
    secret = template["Resources"]["OAuthSecret"]
    assert secret["Condition"] == "UseHostedUi"
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "cookie_key" and generated["PasswordLength"] >= 32
    assert "SecretString" not in secret["Properties"]


def test_every_variable_the_code_reads_is_documented_in_readme():
    names = set(re.findall(r'"([A-Z][A-Z_]+)"', (ROOT / "layers/core/portal_gateway/config.py").read_text()))
    readme = (ROOT / "docs/reference.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"README configuration table lacks {missing}"


def test_runtime_architecture_and_layer_build(template):
    assert template["Globals"]["Function"]["Runtime"] == "python3.13"
    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]
    [layer] = resources_of(template, "AWS::Serverless::LayerVersion").values()
    assert layer["Metadata"]["BuildMethod"] == "makefile" and layer["Metadata"]["BuildArchitecture"] == "arm64"
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "requirements.txt").is_file()
    assert not (content / "python").exists(), "the build puts the package under python/; a nested one breaks imports"
    makefile = (content / "Makefile").read_text()
    for needed in ("build-CoreLayer:", "manylinux2014_aarch64", "--python-version 3.13", "compileall"):
        assert needed in makefile
    fn = template["Resources"]["PortalFunction"]["Properties"]
    assert fn["Layers"] == [{"Ref": "CoreLayer"}]


def test_layer_requirements_are_pinned():
    lines = [line.split("#")[0].strip() for line in (ROOT / "layers/core/requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements
    assert all(re.match(r"^[A-Za-z0-9_.\-\[\]]+==[0-9][^\s]*$", r) for r in requirements), requirements
    names = {r.split("==")[0].lower() for r in requirements}
    assert {"aws-lambda-powertools", "cryptography"} <= names
    assert "boto3" not in names  # provided by the Lambda runtime
    assert not names & {"stripe", "pyjwt", "requests", "urllib3"}  # replaced by the standard library: not shipped


def test_iam_is_least_privilege(template):
    policies = template["Resources"]["PortalFunction"]["Properties"]["Policies"]
    statements = [s for p in policies for s in p["Statement"]]
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {"ReadStripeKey", "CustomerMapping", "LookUpUsers", "NeverAuditRecordsOrThePin"}
    # AdminGetUser: the caller's status and current profile; ListUsers: whether another user holds their email.
    assert by_sid["LookUpUsers"]["Action"] == ["cognito-idp:AdminGetUser", "cognito-idp:ListUsers"]
    assert by_sid["LookUpUsers"]["Resource"] == {"Fn::Sub": [
        "arn:${AWS::Partition}:cognito-idp:${PoolRegion}:${AWS::AccountId}:userpool/${CognitoUserPoolId}",
        {"PoolRegion": {"Fn::Select": [0, {"Fn::Split": ["_", {"Ref": "CognitoUserPoolId"}]}]}}]}  # one pool
    assert by_sid["ReadStripeKey"]["Action"] == "secretsmanager:GetSecretValue"
    assert by_sid["ReadStripeKey"]["Resource"] == [
        {"Fn::If": ["CreateStripeSecret", {"Ref": "StripeApiKeySecret"}, {"Ref": "ExistingStripeSecretArn"}]},
        {"Fn::If": ["UseHostedUi", {"Ref": "OAuthSecret"}, {"Ref": "AWS::NoValue"}]}]
    assert sorted(by_sid["CustomerMapping"]["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert by_sid["CustomerMapping"]["Resource"] == TABLE_ARN
    # The one Deny: no write of an audit record or the account pin (proven by tests/deploy's IAM simulation).
    never = by_sid.pop("NeverAuditRecordsOrThePin")
    assert never["Effect"] == "Deny" and never["Resource"] == TABLE_ARN
    assert never["Condition"] == {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["*#audit#*", "*#stripe-account"]}}
    for statement in by_sid.values():
        assert statement["Effect"] == "Allow"
        assert "*" not in json.dumps(statement["Action"]) and "*" not in json.dumps(statement["Resource"])


# The stack's own table, or one kept from an earlier stack (ExistingCustomersTableName): every reference alike.
TABLE_NAME = {"Fn::If": ["CreateCustomersTable", {"Ref": "CustomersTable"}, {"Ref": "ExistingCustomersTableName"}]}
TABLE_ARN = {"Fn::If": ["CreateCustomersTable", {"Fn::GetAtt": ["CustomersTable", "Arn"]}, {"Fn::Sub": (
    "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${ExistingCustomersTableName}")}]}


def test_every_reference_to_the_table_follows_the_existing_table_parameter(template):
    text = json.dumps(template["Resources"]) + json.dumps(template["Outputs"])
    assert text.count('{"Ref": "CustomersTable"}') == text.count(json.dumps(TABLE_NAME))
    assert text.count('{"Fn::GetAtt": ["CustomersTable", "Arn"]}') == text.count(json.dumps(TABLE_ARN))
    assert template["Resources"]["CustomersTable"]["Condition"] == "CreateCustomersTable"


def test_table_is_on_demand_encrypted_and_retained(template):
    table = template["Resources"]["CustomersTable"]
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


def test_secret_is_created_only_without_an_existing_arn_and_holds_no_key(template):
    secret = template["Resources"]["StripeApiKeySecret"]
    assert secret["Condition"] == "CreateStripeSecret"
    assert template["Conditions"]["CreateStripeSecret"] == {"Fn::Equals": [{"Ref": "ExistingStripeSecretArn"}, ""]}
    assert not re.search(r"(sk|rk)_(test|live)_", secret["Properties"]["SecretString"])


def test_parameters_are_described_and_constrained(template):
    for name, parameter in template["Parameters"].items():
        assert parameter.get("Description"), name
    assert template["Parameters"]["StripeMode"]["AllowedValues"] == ["test", "live"]
    for flag in ("AllowCustomerCreation", "MatchExistingByEmail", "AllowCustomJwksUrl", "CheckUserStatus"):
        assert template["Parameters"][flag]["AllowedValues"] == ["true", "false"]


def test_routes_and_outputs(template):
    events = template["Resources"]["PortalFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()}
    assert routes == {("GET", "/portal"), ("POST", "/portal"), ("OPTIONS", "/portal"), ("GET", "/portal/callback"),
                      ("GET", "/portal/signout"), ("GET", "/billing/status"), ("OPTIONS", "/billing/status"),
                      ("GET", "/billing/checkout"), ("POST", "/billing/checkout"), ("OPTIONS", "/billing/checkout"),
                      ("POST", "/billing/customer-session"), ("OPTIONS", "/billing/customer-session"),
                      ("GET", "/health")}
    assert all(e["Type"] == "HttpApi" for e in events.values())
    webhook = template["Resources"]["WebhookFunction"]["Properties"]["Events"]
    assert [(e["Properties"]["Method"], e["Properties"]["Path"]) for e in webhook.values()] == [
        ("POST", "/webhooks/stripe")]
    assert "/webhooks/stripe" in template["Outputs"]["WebhookUrl"]["Value"]["Fn::Sub"]
    assert "/portal" in template["Outputs"]["PortalUrl"]["Value"]["Fn::Sub"]
    assert template["Outputs"]["CheckoutUrl"]["Value"]["Fn::Sub"].endswith("/billing/checkout")
    assert template["Outputs"]["CustomerSessionUrl"]["Value"]["Fn::Sub"].endswith("/billing/customer-session")
    access_log = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]["Format"]
    assert "queryString" not in access_log and "header" not in access_log.lower()


def test_samconfig_has_dev_and_prod():
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert 'StripeMode=\\"test\\"' in json.dumps(config["dev"]["deploy"]["parameters"]["parameter_overrides"])
    assert 'StripeMode=\\"live\\"' in json.dumps(config["prod"]["deploy"]["parameters"]["parameter_overrides"])


@pytest.mark.parametrize("path", sorted((ROOT / "events").glob("*.json")), ids=lambda p: p.name)
def test_sample_events_are_http_api_v2_events_for_real_routes(path, template):
    event = json.loads(path.read_text())
    assert event["version"] == "2.0"
    method, route = event["routeKey"].split(" ")
    events = template["Resources"]["PortalFunction"]["Properties"]["Events"].values()
    assert (method, route) in {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events}
    assert event["requestContext"]["http"]["method"] == method
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", path.read_text()), "sample events must not carry a real JWT"
    rebuilt = build_event(method, event["rawPath"], query=event["rawQueryString"], headers=event["headers"])
    assert set(rebuilt) - {"body", "isBase64Encoded", "queryStringParameters", "cookies"} <= set(event)


def test_rotation_function_may_only_rotate_the_one_secret(template):
    fn = template["Resources"]["RotationFunction"]["Properties"]
    statements = {s["Sid"]: s for p in fn["Policies"] for s in p["Statement"]}
    assert set(statements) == {"RotateStripeKey", "StripeAccountPin", "SampleMappedCustomers"}
    rotate = statements["RotateStripeKey"]
    # No PutSecretValue: Stripe keys cannot be minted, the function only checks and promotes the staged one.
    assert sorted(rotate["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                                        "secretsmanager:UpdateSecretVersionStage"]
    secret = {"Fn::If": ["CreateStripeSecret", {"Ref": "StripeApiKeySecret"}, {"Ref": "ExistingStripeSecretArn"}]}
    assert rotate["Resource"] == secret
    pin = statements["StripeAccountPin"]
    assert sorted(pin["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert pin["Resource"] == TABLE_ARN
    assert pin["Condition"] == {"ForAllValues:StringEquals": {
        "dynamodb:LeadingKeys": [{"Fn::Sub": "${StripeMode}#stripe-account"}]}}  # the pin item, no mapping
    assert statements["SampleMappedCustomers"] == SAMPLE_MAPPED_CUSTOMERS
    assert fn["Environment"]["Variables"]["STRIPE_MODE"] == {"Ref": "StripeMode"}
    assert fn["Environment"]["Variables"]["CUSTOMERS_TABLE"] == TABLE_NAME
    permission = template["Resources"]["RotationFunctionPermission"]["Properties"]
    assert permission["Principal"] == "secretsmanager.amazonaws.com"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert permission["SourceArn"] == secret  # only this secret's rotation may invoke it
    assert "RotationFunctionArn" in template["Outputs"]


def test_no_function_gets_wildcards_or_managed_admin_policies(template):
    for name, fn in resources_of(template, "AWS::Serverless::Function").items():
        for policy in fn["Properties"].get("Policies", []):
            assert isinstance(policy, dict) and "Statement" in policy, f"{name}: only inline statements"
            for statement in policy["Statement"]:
                resource = json.dumps(statement["Resource"])
                if statement.get("Sid") == "ReportToCodeDeploy":
                    # The deployment groups of this stack's own CodeDeploy application (naming the group itself
                    # would be a circular reference: the group names this hook).
                    resource = resource.replace("${ServerlessDeploymentApplication}/*", "")
                assert "*" not in json.dumps(statement["Action"]) + resource, name


def test_alarms_cover_5xx_rate_stripe_errors_function_errors_and_throttles(template):
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    watched = {(a["Properties"].get("Namespace"), a["Properties"].get("MetricName")) for a in alarms.values()}
    assert ("StripePortalGateway", "StripeErrors") in watched
    assert ("StripePortalGateway", "StripeAccountMismatch") in watched
    assert ("StripePortalGateway", "StripeSecretUnusable") in watched  # serving on the last good key
    assert ("StripePortalGateway", "PortalConfigurationInvalid") in watched
    assert ("StripePortalGateway", "StripeKeyUnusable") in watched  # the first refused user, not the 20th
    assert ("AWS/Lambda", "Errors") in watched and ("AWS/Lambda", "Throttles") in watched
    rate = alarms["Api5xxRateAlarm"]["Properties"]["Metrics"]
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in rate if "MetricStat" in m} == {"5xx", "Count"}
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_metric_names_in_alarms_are_the_ones_the_code_emits(template):
    code = "".join((ROOT / path).read_text() for path in (
        "layers/core/portal_gateway/service.py", "functions/portal/app.py", "functions/webhooks/app.py"))
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        if alarm["Properties"].get("Namespace") == "StripePortalGateway":
            name = alarm["Properties"]["MetricName"]
            # A metric per dimension value is named after the count and its dimensions (portal_gateway.metrics):
            # "UnexpectedErrorsByVersion" is count("UnexpectedErrors", version=...).
            counted, _, by = name.partition("By")
            assert f'"{name}"' in code or (by and f'"{counted}"' in code and f"{by.lower()}=" in code), name


@pytest.mark.parametrize("document", ["docs/reference.md", "docs/runbook.md"])
def test_every_error_code_is_documented_with_its_status(document):
    from portal_gateway.web.answers import STATUS_BY_CODE

    text = (ROOT / document).read_text()
    rows = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\| (\d{3}) \| `([a-z_]+)` \|", text, re.M)}
    assert rows == STATUS_BY_CODE


# --- parameter formats: a malformed value fails at deploy, not at the first click ------------------------------
PARAMETER_SAMPLES = {
    "CognitoUserPoolId": (["eu-west-1_AbCdEf123", "us-gov-west-1_X1", "eusc-de-east-1_Pool1", "cn-north-1_a"],
                          ["", " eu-west-1_AbC", "eu-west-1", "eu-west-1_", "EU-WEST-1_abc", "eu-west-1_abc def"]),
    "CognitoClientIds": (["abc123def456", "abc123,def456"], ["", "abc 123", "abc,", ",abc", "abc;def"]),
    "ReturnUrl": (["https://www.example.com/account", "https://www.example.com"],
                  ["", "http://www.example.com/", "www.example.com", "https://a.example/x,https://b.example/"]),
    "AllowedReturnUrls": (["", "https://www.example.com", "https://a.example,https://b.example/help/"],
                          ["http://a.example", "https://a.example/?x=1", "https://a.example, https://b.example"]),
    "AllowedOrigins": (["", "https://www.example.com", "https://a.example,https://b.example"],
                       ["https://a.example/path", "http://a.example", "a.example"]),
    "CognitoDomain": (["", "https://myapp.auth.eu-west-1.amazoncognito.com", "login.example.com"],
                      ["https://", "https://login example.com", "javascript:alert(1)"]),
    "OAuthClientId": (["", "abc123"], ["abc,def", "abc 123"]),
    "CallbackUrl": (["", "https://abc.execute-api.eu-west-1.amazonaws.com/portal/callback"],
                    ["https://abc.execute-api.eu-west-1.amazonaws.com/portal", "http://x.example/portal/callback"]),
    "CognitoJwksUrl": (["", "https://keys.example.com/jwks.json", "http://127.0.0.1:5000/p/.well-known/jwks.json"],
                       ["http://keys.example.com/jwks.json", "ftp://x"]),
    "ExistingStripeSecretArn": (["", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:stripe-AbCdEf"],
                                ["stripe-key", "arn:aws:s3:::bucket"]),
    "PortalConfigurationId": (["", "bpc_1AbC"], ["bpc_", "cus_123"]),
    "ExistingCustomersTableName": (["", "stripe-portal-gateway-dev-CustomersTable-1A2B3C4D5E6F"],
                                   ["ab", "table name", "arn:aws:dynamodb:eu-west-1:123456789012:table/t"]),
    "AlarmTopicArn": (["", "arn:aws:sns:eu-west-1:123456789012:alarms"], ["alarms"]),
    "StripeEventSourceName": (["", "aws.partner/stripe.com/ed_61SAmpleId", "aws.partner/stripe.com/acct_1/ed-2.x"],
                              [" ", "aws.partner/stripe.com/", "aws.partner/example.com/ed_1",
                               "arn:aws:events:eu-west-1::event-source/aws.partner/stripe.com/ed_1",
                               "aws.partner/stripe.com/ed 1"]),
    "CheckoutPrices": (["", "pro_monthly", "pro_monthly,pro_yearly", "a.b:c/d-e"],
                       ["pro monthly", "pro,", ",pro", "pro;team", ",".join(f"p{i}" for i in range(11))]),
}


def test_every_free_text_parameter_has_a_format_and_says_what_it_expects(template):
    for name, parameter in template["Parameters"].items():
        if parameter["Type"] == "String" and "AllowedValues" not in parameter:
            assert parameter.get("AllowedPattern"), name
            assert parameter.get("ConstraintDescription"), name
            assert name in PARAMETER_SAMPLES, f"{name}: add samples to PARAMETER_SAMPLES"


@pytest.mark.parametrize("name", sorted(PARAMETER_SAMPLES))
def test_parameter_patterns_accept_good_values_and_refuse_bad_ones(template, name):
    pattern = re.compile(template["Parameters"][name]["AllowedPattern"])
    good, bad = PARAMETER_SAMPLES[name]
    assert [value for value in good if not pattern.fullmatch(value)] == []
    assert [value for value in bad if pattern.fullmatch(value)] == []
    if "Default" not in template["Parameters"][name]:
        assert not pattern.fullmatch(""), f"{name} is required: an empty answer must fail at deploy"


def test_values_the_patterns_accept_start_the_function(template):
    """The patterns are not looser than the function's own configuration check for the samples."""
    fn = template["Resources"]["PortalFunction"]["Properties"]
    for index in range(2):
        samples = {name: good[min(index, len(good) - 1)] for name, (good, _) in PARAMETER_SAMPLES.items()}
        samples.update(CognitoJwksUrl="", CognitoDomain="", CallbackUrl="", OAuthClientId="")
        env = {k: resolve(v, template, samples) for k, v in fn["Environment"]["Variables"].items()}
        Settings.from_env(env)


# --- safe releases ------------------------------------------------------------------------------------------------
def test_releases_go_through_an_alias_with_a_pre_traffic_check_and_alarm_rollback(template):
    fn = template["Resources"]["PortalFunction"]["Properties"]
    assert fn["AutoPublishAlias"] == "live"
    preference = fn["DeploymentPreference"]
    assert preference["Type"] == {"Ref": "DeploymentStrategy"}
    assert {a["Ref"] for a in preference["Alarms"]} == {"Api5xxRateAlarm", "PortalFunctionErrorsAlarm",
                                                          "NewVersionUnexpectedErrorsAlarm"}
    # A bug after sign-in answers 500 through the resolver (Lambda's Errors stays 0): watched on the new version.
    alarm = template["Resources"]["NewVersionUnexpectedErrorsAlarm"]["Properties"]
    assert alarm["MetricName"] == "UnexpectedErrorsByVersion" and alarm["Threshold"] == 1 and alarm["Period"] == 60
    assert preference["Hooks"] == {"PreTraffic": {"Ref": "PreTrafficHookFunction"}}
    strategy = template["Parameters"]["DeploymentStrategy"]
    assert strategy["Default"] == "AllAtOnce" and "Canary10Percent5Minutes" in strategy["AllowedValues"]


def test_pre_traffic_hook_checks_the_new_version_with_least_privilege(template):
    hook = template["Resources"]["PreTrafficHookFunction"]["Properties"]
    assert hook["FunctionName"]["Fn::Join"][1][0] == "CodeDeployHook_"  # CodeDeploy may invoke it
    assert hook["DeploymentPreference"] == {"Enabled": False}
    assert hook["Environment"]["Variables"]["NEW_VERSION"] == {"Ref": "PortalFunction.Version"}
    statements = {s["Sid"]: s for p in hook["Policies"] for s in p["Statement"]}
    assert set(statements) == {"InvokeNewVersion", "ReportToCodeDeploy", "ReadStripeKey", "StripeAccountPin",
                               "SampleMappedCustomers"}
    assert statements["SampleMappedCustomers"] == SAMPLE_MAPPED_CUSTOMERS
    assert statements["InvokeNewVersion"]["Resource"] == {"Ref": "PortalFunction.Version"}  # that version only
    assert statements["ReportToCodeDeploy"]["Action"] == "codedeploy:PutLifecycleEventHookExecutionStatus"
    assert statements["StripeAccountPin"]["Condition"] == {"ForAllValues:StringEquals": {
        "dynamodb:LeadingKeys": [{"Fn::Sub": "${StripeMode}#stripe-account"}]}}


# Scan, but only customer ids come back (and pk, which the filter reads): how a restricted key's account is proven.
SAMPLE_MAPPED_CUSTOMERS = {
    "Sid": "SampleMappedCustomers", "Effect": "Allow", "Action": "dynamodb:Scan",
    "Resource": TABLE_ARN,
    "Condition": {"ForAllValues:StringEquals": {"dynamodb:Attributes": ["pk", "customer_id"]},
                  "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}},
}


def test_samconfig_prod_releases_by_canary_and_dev_all_at_once():
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert 'DeploymentStrategy=\\"Canary10Percent5Minutes\\"' in json.dumps(
        config["prod"]["deploy"]["parameters"]["parameter_overrides"])
    assert 'DeploymentStrategy=\\"AllAtOnce\\"' in json.dumps(
        config["dev"]["deploy"]["parameters"]["parameter_overrides"])
    assert config["default"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"


# --- publishable ----------------------------------------------------------------------------------------------------
def test_serverless_repo_metadata_is_complete_and_versions_agree(template):
    import tomllib

    import portal_gateway

    app = template["Metadata"]["AWS::ServerlessRepo::Application"]
    for field in ("Name", "Description", "Author", "SpdxLicenseId", "LicenseUrl", "ReadmeUrl", "SemanticVersion",
                  "SourceCodeUrl"):
        assert app.get(field), field
    assert app["SpdxLicenseId"] == "MIT" and "MIT License" in (ROOT / app["LicenseUrl"]).read_text()
    assert (ROOT / app["ReadmeUrl"]).is_file()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert app["SemanticVersion"] == version == portal_gateway.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f"## {version} - " in (ROOT / "CHANGELOG.md").read_text()  # the released version is described


def test_ci_workflow_runs_the_readme_test_command():
    workflow = (ROOT / ".github/workflows/test.yml").read_text()
    readme_test_command = (ROOT / "README.md").read_text().split("```sh", 1)[1].split("```", 1)[0]
    assert "make test" in readme_test_command and "make test" in workflow
    assert "push" in workflow and "pull_request" in workflow
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_admin_command_dependencies_are_declared():
    """Every third-party package the admin command imports is a dependency of the project (pipx install .)."""
    import ast
    import tomllib

    declared = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower()
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    distribution = {"boto3": "boto3", "botocore": "boto3", "stripe": "stripe", "jwt": "pyjwt", "urllib3": "urllib3"}
    roots = {"portal_admin": ROOT / "cli", "portal_gateway": ROOT / "layers/core"}

    def source(module: str) -> Path | None:
        base = roots.get(module.split(".")[0])
        if base is None:
            return None
        path = base.joinpath(*module.split("."))
        return path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"

    seen, queue, needed = set(), ["portal_admin.cli"], set()
    while queue:
        module = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        for node in ast.walk(ast.parse(source(module).read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                path = source(target)
                if path is not None and path.is_file():
                    queue.append(target)
                elif target.split(".")[0] not in roots:
                    needed.add(target.split(".")[0])
    third_party = {name for name in needed if name in distribution}
    assert "boto3" in third_party or "botocore" in third_party  # the walk does reach the admin's AWS imports
    assert {distribution[name] for name in third_party} <= declared


def test_readme_parameter_table_matches_the_template(template):
    """The reference's "Template parameters" rows say what the template really wires."""
    text = (ROOT / "docs/reference.md").read_text()
    table = text.split("## Template parameters", 1)[1].split("\n\n", 3)[2]
    env = template["Resources"]["PortalFunction"]["Properties"]["Environment"]["Variables"]
    rows = re.findall(r"^\| `(\w+)` \| `([A-Z_]+)` \|$", table, re.M)
    assert len(rows) >= 15
    for parameter, variable in rows:
        assert parameter in template["Parameters"], parameter
        assert variable in env and parameter in json.dumps(env[variable]), (parameter, variable)
    documented = set(re.findall(r"`(\w+)`", table))
    assert set(template["Parameters"]) <= documented, set(template["Parameters"]) - documented


def test_snapstart_is_opt_in_on_published_versions(template):
    assert template["Parameters"]["EnableSnapStart"]["Default"] == "false"
    fn = template["Resources"]["PortalFunction"]["Properties"]
    assert fn["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}}
    assert fn["AutoPublishAlias"]  # SnapStart needs the published versions the alias brings
    assert template["Conditions"]["SnapStartOn"] == {"Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]}


def test_memory_size_is_the_one_the_benchmark_chose(template):
    import ast

    bench = (ROOT / "bench/run.py").read_text()
    chosen = next(node for node in ast.walk(ast.parse(bench)) if isinstance(node, ast.Call)
                  and getattr(node.func, "attr", "") == "add_argument" and node.args
                  and getattr(node.args[0], "value", "") == "--chosen-memory")
    default = next(k.value.value for k in chosen.keywords if k.arg == "default")
    assert template["Globals"]["Function"]["MemorySize"] == default


def makefile_copy(directory: Path) -> None:
    """What `make` reads to make the virtualenvs, copied: nothing is installed from it here."""
    import shutil

    for name in ("Makefile", "requirements-dev.txt", "requirements-sam.txt", "requirements-scan.txt",
                 "pyproject.toml"):
        shutil.copy(ROOT / name, directory / name)
    (directory / "layers/core").mkdir(parents=True)
    shutil.copy(ROOT / "layers/core/requirements.txt", directory / "layers/core/requirements.txt")


def test_make_rebuilds_a_virtualenv_made_with_another_python_and_runs_from_anywhere(tmp_path):
    import shutil
    import subprocess
    import sys
    import venv

    makefile_copy(tmp_path)
    other = shutil.which("python3.11") or shutil.which("python3.12")  # no path of one machine's here
    if not other:
        pytest.skip("no second Python (python3.11 or python3.12 on the PATH) to make a wrong virtualenv with")
    subprocess.run([other, "-m", "venv", str(tmp_path / ".venv")], check=True)
    (tmp_path / ".venv/.installed").touch()
    shown = subprocess.run(["make", "-C", str(tmp_path), "-n", ".venv/.installed", f"PYTHON313={sys.executable}"],
                           capture_output=True, text=True, cwd="/")
    assert ".venv was made with another Python than 3.13: rebuilding it" in shown.stdout
    assert not (tmp_path / ".venv").exists()
    assert f"{sys.executable} -m venv .venv" in shown.stdout
    venv.create(tmp_path / ".venv")  # a 3.13 one is kept
    (tmp_path / ".venv/.installed").touch()
    kept = subprocess.run(["make", "-C", str(tmp_path), "-n", ".venv/.installed", f"PYTHON313={sys.executable}"],
                          capture_output=True, text=True, cwd="/")
    assert "rebuilding" not in kept.stdout and (tmp_path / ".venv/bin/python").exists()


def test_make_names_a_wrong_python313_in_one_line_before_making_anything(tmp_path):
    import shutil
    import subprocess

    makefile_copy(tmp_path)
    other = shutil.which("python3.11") or shutil.which("python3.12")
    cases = [("/nonexistent/python3.13", "PYTHON313=/nonexistent/python3.13 does not run")]
    if other:
        cases.append((other, f"PYTHON313={other} is Python 3.1"))
    for given, said in cases:
        run = subprocess.run(["make", "-C", str(tmp_path), ".venv/.installed", f"PYTHON313={given}"],
                             capture_output=True, text=True, cwd="/", timeout=60)
        assert run.returncode != 0 and said in run.stdout, run.stdout + run.stderr
        assert not (tmp_path / ".venv").exists()  # nothing made with it


def test_the_update_bot_watches_every_pinned_requirements_file_and_the_workflows_actions():
    import yaml

    config = yaml.safe_load((ROOT / ".github/dependabot.yml").read_text())
    watched = {(u["package-ecosystem"], u["directory"].strip("/")) for u in config["updates"]}
    pinned = {str(p.parent.relative_to(ROOT)).replace(".", "") for p in ROOT.glob("**/requirements*.txt")
              if "==" in p.read_text() and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
              and "bench" not in p.parts}
    assert {("pip", directory) for directory in pinned} <= watched, pinned
    assert ("github-actions", "") in watched


def test_the_workflows_actions_are_pinned_by_commit_and_cache_the_virtualenvs():
    import yaml

    for path in (ROOT / ".github/workflows").glob("*.yml"):
        workflow = yaml.safe_load(path.read_text())
        steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
        used = [step["uses"] for step in steps if "uses" in step]
        assert used, path
        for action in used:  # a tag or a branch can be moved to other code; a commit cannot
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{path.name}: {action} not pinned by commit"
        # Every line that uses an action names the release it is, for people and the update bot.
        assert all(re.search(r"@[0-9a-f]{40} # v\d", line) for line in path.read_text().splitlines()
                   if "uses:" in line), path.name
    test = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    cached = [step["with"] for step in test["jobs"]["test"]["steps"]
              if step.get("uses", "").startswith("actions/cache@")]
    assert cached, "the workflow caches no virtualenv"
    makefile = (ROOT / "Makefile").read_text()
    venvs = set(re.findall(r"^[A-Z_]*VENV := (\S+)$", makefile, re.M))
    assert venvs and venvs <= set(cached[0]["path"].split()), venvs
    # The key changes with any pinned requirement (a stale venv is never reused) and with the Python.
    key = cached[0]["key"]
    assert "hashFiles(" in key and "requirements" in key and "python-version" in key


def test_stripes_events_through_eventbridge_are_opt_in_and_lose_nothing(template):
    """With StripeEventSourceName empty nothing of the EventBridge path exists; with it, the partner bus, its
    archive, the rule to the StripeEventsFunction, and one dead-letter queue (alarmed) for what EventBridge could
    not deliver and what still failed after Lambda's retries."""
    resources = template["Resources"]
    path = [name for name, r in resources.items() if r.get("Condition") == "UseStripeEventBridge"]
    assert set(path) == {"StripeEventBus", "StripeEventArchive", "StripeEventsDeadLetterQueue",
                         "StripeEventsDeadLetterQueuePolicy", "StripeEventsFunction", "StripeEventsFunctionLogGroup",
                         "StripeEventsDeadLetterAlarm"}
    assert template["Conditions"]["UseStripeEventBridge"] == {"Fn::Not": [{"Fn::Equals": [
        {"Ref": "StripeEventSourceName"}, ""]}]}
    bus = resources["StripeEventBus"]["Properties"]
    assert bus["Name"] == bus["EventSourceName"] == {"Ref": "StripeEventSourceName"}  # a partner bus
    assert resources["StripeEventArchive"]["Properties"]["RetentionDays"] == {"Ref": "EventArchiveRetentionDays"}
    function = resources["StripeEventsFunction"]["Properties"]
    queue = {"Fn::GetAtt": ["StripeEventsDeadLetterQueue", "Arn"]}
    assert function["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": queue}
    rule = function["Events"]["StripeEvents"]
    assert rule["Type"] == "EventBridgeRule" and rule["Properties"]["EventBusName"] == {"Ref": "StripeEventBus"}
    assert rule["Properties"]["DeadLetterConfig"] == {"Arn": queue}
    assert function["Handler"] == "app.eventbridge_handler" and function["CodeUri"] == "functions/webhooks/"
    # The same permissions as the webhook function's, less its signing secret, which it never reads.
    webhook = resources["WebhookFunction"]["Properties"]["Policies"][0]["Statement"]
    events = function["Policies"][0]["Statement"]
    assert [s for s in webhook if s["Sid"] != "ReadSecrets"] == [s for s in events if s["Sid"] != "ReadStripeKey"]
    alarm = resources["StripeEventsDeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {
        "Fn::GetAtt": ["StripeEventsDeadLetterQueue", "QueueName"]}}] and alarm["Threshold"] == 1
    assert template["Outputs"]["StripeEventBusName"]["Condition"] == "UseStripeEventBridge"

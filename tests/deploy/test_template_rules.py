"""The template's Rules, evaluated as CloudFormation evaluates them when a change set is made, against the
parameter sets each one guards (and the ones it must let through); and the names that must not collide."""

from __future__ import annotations

import json

import pytest

from devstack.cfn import load_template
from tests.deploy.cloudformation import Stack, TemplateError
from tests.deploy.readme_script import ROOT

BASE = {"CognitoUserPoolId": "eu-west-1_AbCdEf123", "CognitoClientIds": "abc123",
        "ReturnUrl": "https://www.example.com/account"}
DOMAIN = "https://myshop.auth.eu-west-1.amazoncognito.com"
SOURCE = "aws.partner/stripe.com/ed_61RulesCheck"


@pytest.fixture(scope="module")
def template():
    return load_template(ROOT / "template.yaml")


def failures(template, **parameters) -> list[str]:
    return Stack(template, {**BASE, **parameters}, stack_name="s", region="eu-west-1").rule_failures()


@pytest.mark.parametrize("parameters, refused", [
    ({"CallbackUrl": "https://billing.example.com/api/portal/callback"}, "CallbackUrl is used only"),
    ({"OAuthClientId": "abc123"}, "OAuthClientId is used only"),
    ({"AllowCustomJwksUrl": "true"}, "AllowCustomJwksUrl=true"),
    ({"StripeWebhookEndpoint": "disabled"}, "With StripeWebhookEndpoint=disabled"),
])
def test_each_rule_refuses_the_combination_it_guards_and_says_what_to_set(template, parameters, refused):
    (message,) = failures(template, **parameters)
    assert message.startswith(refused) and ("Set " in message)


@pytest.mark.parametrize("parameters", [
    {},
    {"CognitoDomain": DOMAIN},  # the the guide's first deploy: no CallbackUrl needed any more
    {"CognitoDomain": DOMAIN, "CallbackUrl": "https://billing.example.com/api/portal/callback",
     "OAuthClientId": "abc123"},
    {"AllowCustomJwksUrl": "true", "CognitoJwksUrl": "https://keys.example.com/jwks.json"},
    {"StripeWebhookEndpoint": "disabled", "StripeEventSourceName": SOURCE},
])
def test_the_rules_let_every_working_combination_through(template, parameters):
    assert failures(template, **parameters) == []


def test_a_required_parameter_left_empty_is_refused_before_anything_is_created(template):
    with pytest.raises(TemplateError, match="CognitoUserPoolId"):
        Stack(template, {**BASE, "CognitoUserPoolId": ""}, stack_name="s", region="eu-west-1")


def test_a_stack_created_again_under_the_same_name_gets_a_new_secret_name(template):
    """The created secret is kept when the stack is deleted; a new stack of the same name must not collide."""
    names = set()
    for stack_id in ("1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d", "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f"):
        stack = Stack(template, BASE, stack_name="stripe-portal-gateway-dev", region="eu-west-1")
        stack.pseudo["AWS::StackId"] = f"arn:aws:cloudformation:eu-west-1:123456789012:stack/x/{stack_id}"
        names.add(stack.resolve(template["Resources"]["StripeApiKeySecret"]["Properties"]["Name"]))
    assert len(names) == 2
    assert all(name.startswith("stripe-portal-gateway-dev/stripe-api-key-") for name in names)


def test_a_long_stack_name_still_gives_the_pre_traffic_hook_a_name_lambda_takes(template):
    """CloudFormation allows 128-character stack names, Lambda 64-character function names: the hook is named
    after the stack's id, so no stack name fails the create halfway."""
    long_name = "stripe-portal-gateway-" + "x" * 100
    stack = Stack(template, BASE, stack_name=long_name, region="eu-west-1")
    stack.pseudo["AWS::StackId"] = ("arn:aws:cloudformation:eu-west-1:123456789012:stack/"
                                    f"{long_name}/1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d")
    name = stack.resolve(template["Resources"]["PreTrafficHookFunction"]["Properties"]["FunctionName"])
    assert name == "CodeDeployHook_1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d" and len(name) <= 64


class AnyAttribute(dict):
    def __missing__(self, key: tuple[str, str]) -> str:
        return f"arn:aws:svc:eu-west-1:123456789012:kind/{key[0]}-physical/{key[1]}"  # ARN-shaped: Split/Select work


SETS = {"webhook": {}, "webhook and EventBridge": {"StripeEventSourceName": SOURCE},
        "EventBridge alone": {"StripeWebhookEndpoint": "disabled", "StripeEventSourceName": SOURCE},
        "hosted UI, kept table, SnapStart": {"CognitoDomain": DOMAIN, "ExistingCustomersTableName": "kept-table",
                                             "EnableSnapStart": "true"}}


@pytest.fixture(scope="module")
def translated_sets() -> dict[str, dict]:
    from tests.deploy.conftest import translate

    return dict(zip(SETS, translate([{**BASE, **p} for p in SETS.values()], "eu-west-1"), strict=True))


@pytest.mark.parametrize("name", SETS)
def test_nothing_created_refers_to_what_the_parameter_set_does_not_create(name, translated_sets):
    """As CloudFormation resolves the translated template: every property and output of what a parameter set
    creates resolves (a reference to a resource its conditions leave out fails the whole create)."""
    parameters, translated = SETS[name], translated_sets[name]
    resources = translated["Resources"]
    stack = Stack(translated, {**BASE, **parameters}, stack_name="s", region="eu-west-1",
                  physical_ids={n: f"arn:aws:svc:eu-west-1:123456789012:kind:{n}-physical:1" for n in resources})
    stack.attributes = AnyAttribute()  # every attribute named after what it is
    assert stack.rule_failures() == []
    created = [name for name in resources if stack.exists(name)]
    for name in created:
        stack.resolve(resources[name].get("Properties", {}))
    outputs = {name: stack.output(name) for name in translated["Outputs"]}
    webhook = parameters.get("StripeWebhookEndpoint", "enabled") == "enabled"
    assert ("WebhookFunction" in created) == webhook and (outputs["WebhookUrl"] is not None) == webhook
    assert ("StripeEventsFunction" in created) == bool(parameters.get("StripeEventSourceName"))
    routes = [r for r in created if resources[r]["Type"] == "AWS::ApiGatewayV2::Api"]
    body = json.dumps([stack.resolve(resources[r]["Properties"]) for r in routes])
    assert ("/webhooks/stripe" in body) == webhook  # the route goes with the function
    dashboard = stack.resolve(resources["OperatorDashboard"]["Properties"]["DashboardBody"])
    assert ("WebhookFunction-physical" in dashboard) == webhook
    assert ("StripeEventsFunction-physical" in dashboard) == bool(parameters.get("StripeEventSourceName"))

"""`stripe-portal-admin events setup --stack …` against the Stripe stand-in's v2 event destinations and moto: one
destination for the stack's account and region and exactly the handled events, made once and then kept in step,
and the partner event source to deploy with, whose bus association the command reports."""

from __future__ import annotations

import io
import json
import urllib.request

import pytest
from portal_admin import cli as admin
from portal_gateway.billing.status_projection import HANDLED_EVENTS

from devstack.stripe_eventbridge import source_name
from devstack.stripe_standin import fake_key


@pytest.fixture
def stack_record(stack, stripe_standin, monkeypatch):
    """What describe-stacks answers for a deployed stack (its StripeEventSourceName as given)."""
    monkeypatch.setenv("STRIPE_API_BASE", stripe_standin.base_url)

    def record(name: str = "portal-events", source: str = "") -> str:
        template = {"Parameters": {n: {"Type": "String", "Default": ""} for n in ("StripeMode",
                                                                                    "StripeEventSourceName")},
                    "Resources": {"Record": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                    "Outputs": {"StripeSecretArn": {"Value": stack.secret_id}}}
        cloudformation = stack.moto.client("cloudformation")
        if source:
            cloudformation.delete_stack(StackName=name)
        cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template), Parameters=[
            {"ParameterKey": "StripeMode", "ParameterValue": "test"},
            {"ParameterKey": "StripeEventSourceName", "ParameterValue": source}])
        return name

    return record


def run(stack, argv, stdin_text=""):
    out = io.StringIO()
    code = admin.main(argv, stdin=io.StringIO(stdin_text), out=out, err=out, client=stack.moto.client)
    return code, out.getvalue()


def test_setup_makes_one_destination_for_the_stacks_account_and_region_and_says_what_to_deploy(
        stack, stripe_standin, stack_record):
    name = stack_record()
    code, out = run(stack, ["events", "setup", "--stack", name])
    assert code == 0, out
    (destination,) = stripe_standin.account.event_destinations.values()
    bridge = destination["amazon_eventbridge"]
    assert destination["type"] == "amazon_eventbridge" and destination["event_payload"] == "snapshot"
    assert sorted(destination["enabled_events"]) == sorted(HANDLED_EVENTS)
    sts = stack.moto.client("sts")
    account, region = sts.get_caller_identity()["Account"], sts.meta.region_name  # the stack's
    assert bridge["aws_account_id"] == account and f":events:{region}:" in bridge["aws_event_source_arn"]
    source = source_name(destination)
    assert "created" in out and f"Parameter StripeEventSourceName: {source}" in out and "(pending)" in out
    assert stripe_standin.key not in out

    # Again, after someone narrowed its events and disabled it in the Workbench: the same destination, put back.
    destination["enabled_events"], destination["status"] = ["customer.deleted"], "disabled"
    code, out = run(stack, ["events", "setup", "--stack", name])
    assert code == 0, out
    assert list(stripe_standin.account.event_destinations) == [destination["id"]]
    assert destination["status"] == "enabled" and sorted(destination["enabled_events"]) == sorted(HANDLED_EVENTS)

    # Deployed with the source, its bus associated: the command says the events arrive.
    stripe_standin.associate_event_bus(source, lambda message: None)
    stack_record(name, source)
    code, out = run(stack, ["events", "setup", "--stack", name])
    assert code == 0 and "unchanged" in out and "(active)" in out and "reach the StripeEventsFunction" in out


def test_a_key_that_may_not_write_event_destinations_is_refused_in_one_line(stack, stripe_standin, stack_record):
    name = stack_record()
    weak = stripe_standin.add_key(fake_key("rk", "test"), frozenset({"customers_write"}))
    code, out = run(stack, ["events", "setup", "--stack", name, "--key-stdin"], stdin_text=weak + "\n")
    assert code == admin.EXIT_FAILED and "Stripe refused the key" in out and "Traceback" not in out
    assert stripe_standin.account.event_destinations == {}
    code, out = run(stack, ["events", "setup"])
    assert code == admin.EXIT_USAGE and "--stack" in out


def test_check_says_whether_the_destination_behind_the_stacks_source_is_enabled_complete_and_associated(
        stack, stripe_standin, stack_record):
    name = stack_record()
    assert run(stack, ["events", "setup", "--stack", name])[0] == 0
    (destination,) = stripe_standin.account.event_destinations.values()
    source = source_name(destination)
    stack_record(name, source)  # deployed with it, but (as here) before the bus exists

    def lines() -> list[str]:
        _, out = run(stack, ["check", "--stack", name])
        return [line for line in out.splitlines() if "event destination" in line or "event bus" in line]

    found = lines()
    assert found[0].startswith("PASS  event destination") and destination["id"] in found[0]
    assert found[1].startswith("PASS  event destination events")
    assert found[2].startswith("FAIL  event bus associated") and "pending" in found[2]
    stripe_standin.associate_event_bus(source, lambda message: None)
    destination["enabled_events"] = ["customer.deleted"]
    found = lines()
    assert found[1].startswith("FAIL  event destination events") and "customer.subscription.updated" in found[1]
    assert found[2].startswith("PASS  event bus associated")
    stripe_standin.account.event_destinations.clear()
    assert lines()[0].startswith("FAIL  event destination") and "no event destination" in lines()[0]


def test_setup_finds_its_destination_on_a_later_page_of_stripes_v2_list(stack, stripe_standin, stack_record):
    """Stripe's v2 lists come a page at a time (`next_page_url`): other stacks' destinations first, ours on the
    third page, and setup must keep it rather than make a second one."""
    name = stack_record()
    sts = stack.moto.client("sts")
    account, region = sts.get_caller_identity()["Account"], sts.meta.region_name
    for index in range(12):  # another stack's destinations, made first
        stripe_standin.account.event_destinations[f"ed_other{index:02d}"] = {
            "id": f"ed_other{index:02d}", "type": "amazon_eventbridge", "livemode": False, "status": "enabled",
            "enabled_events": ["customer.created"], "metadata": {"stripe_portal_gateway_stack": "another-stack"},
            "amazon_eventbridge": {"aws_account_id": account, "aws_event_source_arn": (
                f"arn:aws:events:{region}::event-source/aws.partner/stripe.com/ed_other{index:02d}")}}
    assert run(stack, ["events", "setup", "--stack", name])[0] == 0
    assert len(stripe_standin.account.event_destinations) == 13
    request = urllib.request.Request(f"{stripe_standin.base_url}/v2/core/event_destinations",
                                     headers={"Authorization": f"Bearer {stripe_standin.key}"})
    first = json.loads(urllib.request.urlopen(request).read())
    assert len(first["data"]) == 10 and first["next_page_url"] and first["previous_page_url"] is None
    code, out = run(stack, ["events", "setup", "--stack", name])
    assert code == 0 and "unchanged" in out, out
    assert len(stripe_standin.account.event_destinations) == 13  # none made twice

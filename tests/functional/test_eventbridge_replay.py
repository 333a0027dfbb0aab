"""`stripe-portal-admin events replay --stack … --since …`: the recovery the webhook path lacks, on moto's
EventBridge (its partner event source, bus, archive, rule and StartReplay; tests/support/moto_partner_buses.py
corrects what moto gets wrong about partner buses), run under the operator's documented policy with IAM enforced.

Stripe's side is the stand-in: its events go to the partner source with PutPartnerEvents, as Stripe puts them. The
bus's rule is the template's own pattern; moto does not invoke Lambda targets, so the rule's other target, an SQS
queue, shows what the StripeEventsFunction would be handed, and each message is given to its handler."""

from __future__ import annotations

import datetime
import io
import json

import boto3
import pytest
from portal_admin import cli as admin
from portal_gateway.billing.status_projection import project

from devstack.aws_standin import REGION
from devstack.cfn import load_template
from devstack.http_api import new_context
from devstack.stripe_eventbridge import source_name
from tests.deploy.iam import OPERATOR_POLICY, EnforcedIam, filled_policy, resources_of, simulate, simulator_missing
from tests.functional.test_eventbridge import changes, destination
from tests.support import moto_partner_buses

ACCOUNT, STACK = "123456789012", "portal-bus"


@pytest.fixture(autouse=True)
def corrected_moto():
    moto_partner_buses.install()


class Bus:
    """The stack's EventBridge part in moto, made from the template's own properties (bus named after the source,
    archive of the bus, rule with the template's pattern)."""

    def __init__(self, moto, source: str):
        self.moto, self.source = moto, source
        events, sqs = moto.client("events"), moto.client("sqs")
        events.create_partner_event_source(Name=source, Account=ACCOUNT)  # what Stripe's destination made
        self.bus_arn = events.create_event_bus(Name=source, EventSourceName=source)["EventBusArn"]
        self.archive_arn = events.create_archive(ArchiveName="stripe-events", EventSourceArn=self.bus_arn,
                                                 RetentionDays=0)["ArchiveArn"]
        pattern = load_template()["Resources"]["StripeEventsFunction"]["Properties"]["Events"]["StripeEvents"][
            "Properties"]["Pattern"]
        self.rule_arn = events.put_rule(Name="StripeEventsFunctionStripeEvents", EventBusName=source,
                                        EventPattern=json.dumps(pattern))["RuleArn"]
        self.queue = sqs.create_queue(QueueName="what-the-function-is-handed")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"]
        events.put_targets(Rule="StripeEventsFunctionStripeEvents", EventBusName=source,
                           Targets=[{"Id": "function", "Arn": queue_arn}])

    def put(self, message: dict) -> None:
        """Stripe puts an event on its partner source (the stand-in's delivery to an associated bus)."""
        entry = {"Source": self.source, "DetailType": message["detail-type"], "Detail": json.dumps(message["detail"]),
                 "Time": datetime.datetime.fromtimestamp(message["detail"]["created"], datetime.UTC)}
        assert self.moto.client("events").put_partner_events(Entries=[entry])["FailedEntryCount"] == 0

    def handed(self) -> list[dict]:
        sqs, found = self.moto.client("sqs"), []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])


def record_stack(stack, bus: Bus) -> None:
    template = {"Parameters": {"StripeMode": {"Type": "String"}, "StripeEventSourceName": {"Type": "String"}},
                "Resources": {"Record": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {"StripeSecretArn": {"Value": stack.secret_id},
                            "StripeEventArchiveArn": {"Value": bus.archive_arn},
                            "StripeEventsRuleArn": {"Value": bus.rule_arn}}}
    stack.moto.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template), Parameters=[
        {"ParameterKey": "StripeMode", "ParameterValue": "test"},
        {"ParameterKey": "StripeEventSourceName", "ParameterValue": bus.source}])


def operator_policy() -> dict:
    """docs/iam/operator-policy.json filled in for this stack, as docs/operations.md says."""
    return filled_policy(OPERATOR_POLICY, Region=REGION, Account=ACCOUNT, StackName=STACK, UserPoolId="x")


def test_a_wiped_table_is_whole_again_after_events_replay_run_under_the_operators_policy(
        billing, stack, stripe_standin):
    from portal_gateway.aws.projection_store import event_key, projection_key

    stripe_standin.deliverer.paused = True  # no webhook: EventBridge alone
    source = source_name(json.loads(destination(stripe_standin).last_response.body))
    bus = Bus(stack.moto, source)
    stripe_standin.associate_event_bus(source, bus.put)
    record_stack(stack, bus)
    handler, store = billing.webhooks.eventbridge_handler, billing.webhooks.events.projections
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    customers = changes(stripe_standin, customers=3, rounds=3)
    stripe_standin.eventbridge.deliver()
    first = bus.handed()
    assert first and {m["source"] for m in first} == {source} and not any("replay-name" in m for m in first)
    assert {handler(m, new_context())["outcome"] for m in first} <= {"processed", "duplicate", "stale"}

    dynamodb = stack.moto.client("dynamodb")
    prefixes = (projection_key("test", ""), event_key("test", ""))
    for item in dynamodb.scan(TableName=stack.table_name)["Items"]:
        if item["pk"]["S"].startswith(prefixes):
            dynamodb.delete_item(TableName=stack.table_name, Key={"pk": item["pk"]})
    assert all(store.get(c) is None for c in customers)

    enforced = EnforcedIam(stack.moto, REGION)
    operator = enforced.user("operator", operator_policy())

    def as_operator(service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=stack.moto.endpoint, **operator)

    out = io.StringIO()
    since = before.strftime("%Y-%m-%dT%H:%M:%SZ")
    with enforced.enforced():
        code = admin.main(["events", "replay", "--stack", STACK, "--since", since], stdin=io.StringIO(), out=out,
                          err=out, client=as_operator)
    assert code == admin.EXIT_OK, out.getvalue()
    assert "completed" in out.getvalue() and "Traceback" not in out.getvalue()
    used = enforced.used()["operator"]
    assert {"events:DescribeArchive", "events:StartReplay", "events:DescribeReplay"} <= used, used
    if simulator_missing() is None:  # resources too: each request under the policy as written
        asked = {(action, resource) for principal, action, body in enforced.requests()
                 if principal == "operator" and action.startswith("events:")
                 for resource in resources_of(action, body, REGION, ACCOUNT)}
        assert sum(1 for action, _ in asked if action == "events:StartReplay") == 3  # archive, bus, replay
        verdicts = simulate([{"principal": enforced.arns["operator"], "action": action, "resource": resource,
                              "accountId": ACCOUNT, "context": {}, "policies": [operator_policy()]}
                             for action, resource in sorted(asked)])
        assert verdicts == ["Allowed"] * len(asked), sorted(asked)

    again = bus.handed()
    assert len(again) == len(first) and all(m["replay-name"].startswith(f"{STACK}-") for m in again)
    assert "processed" in [handler(m, new_context())["outcome"] for m in again]
    for customer in customers:
        subscriptions, entitlements = stripe_standin.billing_records(customer)
        assert store.get(customer).projection == project(subscriptions, entitlements), customer

    # A window before the burst replays nothing; a window that is not one is refused before AWS is asked.
    code, text = run(stack, ["events", "replay", "--stack", STACK, "--since", "2h", "--until", since])
    assert code == admin.EXIT_OK and bus.handed() == [], text
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, text = run(stack, ["events", "replay", "--stack", STACK, "--since", later])
    assert code == admin.EXIT_USAGE and "nothing to replay" in text
    code, text = run(stack, ["events", "replay", "--stack", STACK, "--since", "yesterday"])
    assert code == admin.EXIT_USAGE and "ISO 8601" in text


def run(stack, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = admin.main(argv, stdin=io.StringIO(), out=out, err=out, client=stack.moto.client)
    return code, out.getvalue()


def test_moto_as_released_still_needs_each_partner_bus_correction(moto_server):
    """If a moto release fixes one of these, its correction in tests/support/moto_partner_buses.py goes."""
    from botocore.exceptions import ClientError

    moto_server.reset()
    events = moto_server.client("events")
    source = "aws.partner/stripe.com/ed_61MotoAsReleased"
    with moto_partner_buses.uncorrected():
        events.create_partner_event_source(Name=source, Account=ACCOUNT)
        bus_arn = events.create_event_bus(Name=source, EventSourceName=source)["EventBusArn"]
        with pytest.raises(ClientError, match="Event bus ed_61MotoAsReleased does not exist"):
            events.create_archive(ArchiveName="a", EventSourceArn=bus_arn)
        with pytest.raises(ClientError, match="Event bus ed_61MotoAsReleased does not exist"):
            events.put_rule(Name="r", EventBusName=source, EventPattern=json.dumps({"source": [source]}))
        # PutPartnerEvents: to the default bus, not the source's.
        sqs = moto_server.client("sqs")
        queue = sqs.create_queue(QueueName="default-bus")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="default-catch", EventPattern=json.dumps({"source": [source]}))
        events.put_targets(Rule="default-catch", Targets=[{"Id": "q", "Arn": queue_arn}])
        events.put_partner_events(Entries=[{"Source": source, "DetailType": "customer.deleted", "Detail": "{}"}])
        assert len(sqs.receive_message(QueueUrl=queue).get("Messages", [])) == 1
        # The replay's own gaps (window, FilterArns) sit behind the archive it cannot make on this bus.


def test_check_holds_the_stacks_rule_to_the_handled_events(stack):
    from portal_admin.events import event_rule_checks

    source = "aws.partner/stripe.com/ed_61RuleCheck"
    bus, events = Bus(stack.moto, source), stack.moto.client("events")
    (check,) = event_rule_checks(rule_arn=bus.rule_arn, source=source, events=events)
    assert check.ok and check.detail == "enabled, exactly the handled events"
    pattern = json.loads(events.describe_rule(Name="StripeEventsFunctionStripeEvents", EventBusName=source)[
        "EventPattern"])
    pattern["detail-type"] = [t for t in pattern["detail-type"] if t != "customer.deleted"] + ["invoice.paid"]
    events.put_rule(Name="StripeEventsFunctionStripeEvents", EventBusName=source, EventPattern=json.dumps(pattern),
                    State="DISABLED")
    (check,) = event_rule_checks(rule_arn=bus.rule_arn, source=source, events=events)
    assert not check.ok and check.detail == "disabled; misses customer.deleted; also takes invoice.paid"
    (check,) = event_rule_checks(rule_arn=bus.rule_arn, source="aws.partner/stripe.com/ed_other", events=events)
    assert not check.ok and "not aws.partner/stripe.com/ed_other" in check.detail

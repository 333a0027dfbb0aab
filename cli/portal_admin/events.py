"""`stripe-portal-admin events setup`: Stripe's event destination of type amazon_eventbridge for this deployment's
AWS account and region, for exactly the events the functions handle (snapshot payloads). A second run updates it
(events, enabled) rather than making another. It prints the partner event source Stripe made, whether a bus is
associated with it yet, and the next step: the deploy with StripeEventSourceName (docs/deploy.md)."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO
from urllib.parse import parse_qsl

from portal_gateway.billing.status_projection import HANDLED_EVENTS
from portal_gateway.billing.stripe_client import StripeApiError
from portal_gateway.checks.stripe_key_check import Check

DESTINATIONS = "/v2/core/event_destinations"
StripeCall = Callable[..., dict]  # (method, path, params=None) -> answer, with the deployment's (or given) key


def _destinations(stripe: StripeCall) -> Iterator[dict]:
    """Every event destination of the account, page after page."""
    path: str | None = DESTINATIONS
    while path:
        path, _, query = path.partition("?")  # v2 pages: next_page_url is a path with its query
        page = stripe("GET", path, dict(parse_qsl(query)) or None)
        yield from page.get("data", [])
        path = page.get("next_page_url")


def _ours(stripe: StripeCall, stack: str, account: str, region: str) -> dict | None:
    """The destination this deployment made before (metadata names the stack; same AWS account and region)."""
    for destination in _destinations(stripe):
        bridge = destination.get("amazon_eventbridge") or {}
        if (destination.get("type") == "amazon_eventbridge"
                and (destination.get("metadata") or {}).get("stripe_portal_gateway_stack") == stack
                and bridge.get("aws_account_id") == account
                and f":events:{region}:" in bridge.get("aws_event_source_arn", "")):
            return destination
    return None


def setup(*, stack: str, account: str, region: str, current_source: str | None, stripe: StripeCall,
          out: TextIO) -> int:
    events = sorted(HANDLED_EVENTS)
    found = _ours(stripe, stack, account, region)
    if found is None:
        destination = stripe("POST", DESTINATIONS, {
            "name": f"stripe-portal-gateway {stack}", "type": "amazon_eventbridge", "event_payload": "snapshot",
            "enabled_events": events, "metadata": {"stripe_portal_gateway_stack": stack},
            "description": "Billing status of the stripe-portal-gateway stack (its StripeEventsFunction)",
            "amazon_eventbridge": {"aws_account_id": account, "aws_region": region}})
        done = "created"
    else:
        destination, done = found, "unchanged"
        if sorted(found.get("enabled_events", [])) != events:
            destination, done = stripe("POST", f"{DESTINATIONS}/{found['id']}", {"enabled_events": events}), "updated"
        if destination.get("status") != "enabled":
            destination, done = stripe("POST", f"{DESTINATIONS}/{found['id']}/enable"), "enabled again"
    bridge = destination["amazon_eventbridge"]
    source = bridge["aws_event_source_arn"].split("event-source/", 1)[1]
    print(f"Stripe event destination {destination['id']} (amazon_eventbridge, {len(events)} events, "
          f"{destination.get('status')}): {done}", file=out)
    print(f"Partner event source: {source} ({bridge.get('aws_event_source_status')})", file=out)
    if current_source == source:
        print("The stack's event bus is associated with it: Stripe's events reach the StripeEventsFunction.",
              file=out)
    else:
        print("Next: deploy again with this source (Enter keeps every other saved answer):", file=out)
        print("  .venv-sam/bin/sam deploy --guided --config-env <env>   "
              f"# Parameter StripeEventSourceName: {source}", file=out)
    return 0


def event_destination_checks(*, source: str, stripe: StripeCall | None) -> list[Check]:
    """With StripeEventSourceName: Stripe's destination behind that source is enabled, sends exactly the handled
    events, and its source is associated with a bus (Stripe reports it active once the stack made its bus)."""
    name, fix = "event destination", "stripe-portal-admin events setup --stack <stack>, then deploy with its source"
    if stripe is None:
        return [Check(name, False, "no usable Stripe key to look it up", "Put the key in first (rotate-key)")]
    try:
        found = _by_source(stripe, source)
    except StripeApiError as exc:
        return [Check(name, False, f"Stripe answered {exc.kind} (http {exc.http_status})",
                      "Use a key that may read event destinations, or try again")]
    if found is None:
        return [Check(name, False, f"no event destination of this Stripe account sends to {source}", fix)]
    checks = [Check(name, found.get("status") == "enabled", f"{found['id']} {found.get('status')}",
                    "Enable it in the Workbench, or run events setup")]
    missing = sorted(set(HANDLED_EVENTS) - set(found.get("enabled_events", [])))
    checks.append(Check("event destination events", not missing and "*" not in found.get("enabled_events", []),
                        f"missing {', '.join(missing)}" if missing else "exactly the handled events",
                        "stripe-portal-admin events setup --stack <stack> puts them back"))
    status = (found.get("amazon_eventbridge") or {}).get("aws_event_source_status")
    checks.append(Check("event bus associated", status == "active", f"partner event source {status}",
                        "Deploy with StripeEventSourceName set to it (docs/deploy.md)"))
    return checks


def _by_source(stripe: StripeCall, source: str) -> dict | None:
    for destination in _destinations(stripe):
        arn = (destination.get("amazon_eventbridge") or {}).get("aws_event_source_arn", "")
        if arn.endswith(f"event-source/{source}"):
            return destination
    return None


def aws_account(client: Callable[[str], Any]) -> str:
    return client("sts").get_caller_identity()["Account"]


# --- events replay --------------------------------------------------------------------------------------------------
_RELATIVE = re.compile(r"(\d+)([mhd])")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


def when(text: str, now: datetime.datetime) -> datetime.datetime:
    """A moment from `--since`/`--until`: an ISO 8601 time (UTC when no offset is given: `2026-12-01`,
    `2026-12-01T09:30Z`) or a time before now (`90m`, `6h`, `2d`). ValueError says what it takes."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return now - datetime.timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time (2026-12-01T09:30Z) nor an age (90m, 6h, 2d)") \
            from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def replay(*, stack: str, archive_arn: str, rule_arn: str | None, since: datetime.datetime,
           until: datetime.datetime, events: Any, out: TextIO, wait_seconds: float = 900.0,
           sleep: Callable[[float], None] = time.sleep) -> bool:
    """EventBridge's StartReplay of the stack's archive, for [since, until], into the bus it archives, to the
    StripeEventsFunction's rule alone; then wait for it to finish. Events already applied are recognised by their
    Stripe event id and skipped by the function; what a wiped table or a dead-lettered event lost is applied again.
    True when the replay completed."""
    archive = events.describe_archive(ArchiveName=archive_arn.rsplit("/", 1)[1])
    name = f"{stack[:48]}-{until:%Y%m%dT%H%M%S}"  # EventBridge allows 64; the stack first, for who reads the list
    destination: dict[str, Any] = {"Arn": archive["EventSourceArn"]}
    if rule_arn:
        destination["FilterArns"] = [rule_arn]
    events.start_replay(ReplayName=name, EventSourceArn=archive["ArchiveArn"], EventStartTime=since,
                        EventEndTime=until, Destination=destination,
                        Description=f"stripe-portal-admin events replay for {stack}")
    print(f"Replay {name}: the archive's events from {since:%Y-%m-%d %H:%M:%S}Z to {until:%Y-%m-%d %H:%M:%S}Z "
          f"({archive.get('EventCount', '?')} archived in all) to the StripeEventsFunction", file=out)
    waited, state = 0.0, events.describe_replay(ReplayName=name)
    while state["State"] not in FINISHED and waited < wait_seconds:
        sleep(5.0)
        waited += 5.0
        state = events.describe_replay(ReplayName=name)
    detail = f": {state['StateReason']}" if state.get("StateReason") else ""
    print(f"Replay {name} {state['State'].lower()}{detail}", file=out)
    if state["State"] not in FINISHED:
        print(f"Still running after {wait_seconds:.0f} s; follow it with: aws events describe-replay --replay-name "
              f"{name}", file=out)
    return state["State"] == "COMPLETED"


def event_rule_checks(*, rule_arn: str | None, source: str, events: Any) -> list[Check]:
    """The stack's rule, as EventBridge holds it: enabled, on the source's bus, and taking exactly the event types
    this code handles (a template older or newer than the functions' code would drop or refuse some)."""
    name, fix = "event rule", "Deploy the stack again with this release's template"
    if not rule_arn:
        return [Check(name, False, "the stack reports no StripeEventsRuleArn", fix)]
    bus, _, rule = rule_arn.split(":rule/", 1)[1].rpartition("/")
    if bus != source:
        return [Check(name, False, f"on the bus {bus or 'default'}, not {source}", fix)]
    found = events.describe_rule(Name=rule, EventBusName=bus)
    pattern = json.loads(found.get("EventPattern") or "{}")
    types = set(pattern.get("detail-type", []))
    missing, extra = sorted(set(HANDLED_EVENTS) - types), sorted(types - set(HANDLED_EVENTS))
    problems = ([f"{found.get('State', '?').lower()}"] if found.get("State") != "ENABLED" else []) + (
        [f"misses {', '.join(missing)}"] if missing else []) + ([f"also takes {', '.join(extra)}"] if extra else [])
    return [Check(name, not problems, "; ".join(problems) or "enabled, exactly the handled events", fix)]

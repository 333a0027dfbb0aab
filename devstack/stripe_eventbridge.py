"""Stripe's `amazon_eventbridge` event destinations, for the Stripe stand-in: the v2 API's objects (JSON bodies,
ISO timestamps, its own errors), and the delivery of each event to the partner event source's bus once a bus is
associated with it, in the envelope EventBridge gives a rule's Lambda target (`detail-type`: the event type,
`detail`: the event, `source`: the partner source). Like EventBridge, deliveries may come twice and out of order.
"""

from __future__ import annotations

import base64
import copy
import datetime
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

PARTNER_SOURCE_PREFIX = "aws.partner/stripe.com/"
_ACCOUNT_ID = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d")


def iso_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def v2_error(code: str, message: str, *, status: int = 400) -> tuple[int, dict]:
    return status, {"error": {"type": "invalid_request_error", "code": code, "message": message}}


def v2_page(items: list[dict], params: dict, path: str, *, default_limit: int = 10) -> tuple[int, dict]:
    """A v2 list page: `limit` items (the page size) from where the page token says, and the next and previous
    pages as URLs (a v2 list takes no cursor parameters of its own: a client follows `next_page_url`)."""
    try:
        limit = int(params.get("limit") or default_limit)
        start = int(base64.urlsafe_b64decode(params["page"]).decode()) if params.get("page") else 0
    except (ValueError, UnicodeDecodeError):
        return v2_error("invalid_value", "limit must be a whole number and page a token from a page URL.")
    if not 1 <= limit <= 100 or not 0 <= start <= len(items):
        return v2_error("invalid_value", "limit must be between 1 and 100, and page a token from a page URL.")

    def url(offset: int) -> str:
        token = base64.urlsafe_b64encode(str(offset).encode()).decode()
        return f"{path}?limit={limit}&page={token}"

    return 200, {"data": copy.deepcopy(items[start:start + limit]),
                 "next_page_url": url(start + limit) if start + limit < len(items) else None,
                 "previous_page_url": url(max(start - limit, 0)) if start > 0 else None}


def source_name(destination: dict) -> str:
    """The partner event source Stripe makes for a destination: its name (the ARN's part after event-source/)."""
    return destination["amazon_eventbridge"]["aws_event_source_arn"].split("event-source/", 1)[1]


def validated(params: dict, *, creating: bool) -> tuple[int, dict] | None:
    """A v2 error for what Stripe refuses in a create or an update, or None."""
    if creating:
        for name in ("name", "type", "event_payload", "enabled_events"):
            if name not in params:
                return v2_error("parameter_missing", f"Missing required param: {name}.")
        if params["type"] != "amazon_eventbridge":
            return v2_error("invalid_type", "The stand-in models event destinations of type amazon_eventbridge.")
        if params["event_payload"] not in ("snapshot", "thin"):
            return v2_error("invalid_value", "event_payload must be one of: snapshot, thin.")
        bridge = params.get("amazon_eventbridge")
        if not isinstance(bridge, dict) or not _ACCOUNT_ID.fullmatch(str(bridge.get("aws_account_id", ""))) or \
                not _REGION.fullmatch(str(bridge.get("aws_region", ""))):
            return v2_error("invalid_value", "amazon_eventbridge needs aws_account_id (12 digits) and aws_region.")
    events = params.get("enabled_events")
    if events is not None and (not isinstance(events, list) or not events
                               or not all(isinstance(e, str) and e for e in events)):
        return v2_error("invalid_value", "enabled_events must be a non-empty list of event types.")
    if not isinstance(params.get("name", ""), str):
        return v2_error("invalid_value", "name must be a string.")
    return None


def new_destination(params: dict, *, livemode: bool, api_version: str) -> dict:
    destination_id = "ed_" + uuid.uuid4().hex[:24]
    bridge = params["amazon_eventbridge"]
    now = iso_now()
    return {
        "id": destination_id, "object": "v2.core.event_destination", "type": "amazon_eventbridge",
        "name": params["name"], "description": params.get("description", ""),
        "enabled_events": list(params["enabled_events"]), "event_payload": params["event_payload"],
        "events_from": params.get("events_from"), "livemode": livemode, "metadata": params.get("metadata") or {},
        "snapshot_api_version": api_version if params["event_payload"] == "snapshot" else None,
        "status": "enabled", "status_details": None, "created": now, "updated": now,
        "amazon_eventbridge": {
            "aws_account_id": bridge["aws_account_id"],
            "aws_event_source_arn": (f"arn:aws:events:{bridge['aws_region']}::event-source/"
                                     f"{PARTNER_SOURCE_PREFIX}{destination_id}"),
            "aws_event_source_status": "pending"},
        "azure_event_grid": None, "webhook_endpoint": None,
    }


def envelope(event: dict, destination: dict) -> dict:
    """The event as a rule's Lambda target receives it from the destination's partner event bus."""
    bridge = destination["amazon_eventbridge"]
    created = datetime.datetime.fromtimestamp(event.get("created", 0), datetime.UTC)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": event["type"], "source": source_name(destination),
            "account": bridge["aws_account_id"], "time": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": bridge["aws_event_source_arn"].split(":")[3], "resources": [], "detail": event}


@dataclass
class EventBridgeDeliveries:
    """What Stripe has put on partner event buses, waiting for `deliver()`: EventBridge hands each event to the
    bus's targets at least once and in no promised order (`duplicate_rate`, `reorder`)."""
    duplicate_rate: float = 0.0
    reorder: bool = False
    random: random.Random = field(default_factory=lambda: random.Random(7))  # nosec B311 - test shuffling, not crypto
    buses: dict[str, Callable[[dict], object]] = field(default_factory=dict)  # source name -> the bus's target
    pending: list[tuple[str, dict]] = field(default_factory=list)
    delivered: list[dict] = field(default_factory=list)
    # The bus's archive (the stack's StripeEventArchive): every event put on a bus, with when it arrived.
    archive: list[tuple[float, str, dict]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, source: str, message: dict) -> None:
        with self.lock:
            self.pending.append((source, message))
            if source in self.buses:
                self.archive.append((time.time(), source, message))

    def again(self, source: str, message: dict) -> None:
        """A delivery its target failed: handed over again by a later `deliver()` (EventBridge retries the
        asynchronous invocation), not archived a second time."""
        with self.lock:
            self.pending.append((source, message))

    def replay(self, name: str, since: float) -> int:
        """An archive replay (EventBridge's StartReplay) of what arrived since `since`: each event put on its bus
        again, marked with the replay's name as EventBridge marks it; `deliver()` hands them over. How many."""
        with self.lock:
            again = [(source, {**message, "replay-name": name}) for at, source, message in self.archive
                     if at >= since]
            self.pending.extend(again)
        return len(again)

    def deliver(self) -> list:
        """Hand every pending event to its bus's target; the targets' answers, in delivery order."""
        with self.lock:
            batch, self.pending = self.pending, []
            batch += [item for item in batch if self.random.random() < self.duplicate_rate]
            if self.reorder:
                self.random.shuffle(batch)
        answers = []
        for source, message in batch:
            target = self.buses.get(source)
            if target is not None:
                answers.append(target(message))
                self.delivered.append(message)
        return answers

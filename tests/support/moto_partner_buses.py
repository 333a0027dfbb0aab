"""moto 5 and partner event buses: corrections so moto treats them as EventBridge does.

AWS names a partner event bus after its partner event source, `aws.partner/stripe.com/ed_…`, slashes included.
moto cuts every bus name or ARN at its last "/" (so PutRule, CreateArchive and StartReplay answer "Event bus ed_…
does not exist"), delivers PutPartnerEvents to the default bus instead of the source's bus, and replays a whole
archive to every rule of the bus, whatever the replay's time window and FilterArns. Each correction below is the
behaviour EventBridge's API reference gives. A test runs the same steps on moto as released (`uncorrected()`) and
asserts each gap, so a moto release that fixes one is noticed and its correction dropped. Nothing else of moto is
touched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.events import models
from moto.events.models import Archive, EventsBackend, Replay, events_backends


def bus_name(name_or_arn: str | None) -> str:
    """A bus's name from its name or ARN (`arn:aws:events:<region>:<account>:event-bus/<name>`, name with "/")."""
    if not name_or_arn:
        return "default"
    return name_or_arn.split(":event-bus/", 1)[1] if name_or_arn.startswith("arn:") else name_or_arn


def _normalize_event_bus_arn(self: EventsBackend, event_bus_arn: str | None) -> str:
    return bus_name(event_bus_arn)


def _put_partner_events(self: EventsBackend, entries: list[dict[str, Any]]) -> None:
    """Each entry to the bus named after its source, in every account the source was made for (if it has one)."""
    for entry in entries:
        for account_id in self.partner_event_sources[entry["Source"]].accounts:
            backend = events_backends[account_id][self.region_name]
            if entry["Source"] in backend.event_buses:
                backend.put_events([{**entry, "EventBusName": entry["Source"]}])


def _replay_events(self: Replay, archive: Archive) -> None:
    """The archived events of the window [EventStartTime, EventEndTime] to the destination bus's rules named in
    FilterArns (every rule when there are none), each marked with the replay's name."""
    backend = events_backends[self.account_id][self.region]
    bus = backend.describe_event_bus(bus_name(self.destination["Arn"]))
    wanted = set(self.destination.get("FilterArns") or [])
    start, end = float(self.event_start_time), float(self.event_end_time)
    for event in archive.events:
        if not start <= float(event["time"]) <= end:
            continue
        for rule in bus.rules.values():
            if not wanted or rule.arn in wanted:
                rule.send_to_targets(dict(copy.deepcopy(event), **{"id": str(models.random.uuid4()),
                                                                    "replay-name": self.name}),
                                     transform_input=False)
    self.state = models.ReplayState.COMPLETED
    self.end_time = models.unix_time()


_original_archive_init = Archive.__init__


def _archive_init(self: Archive, *args: Any, **kwargs: Any) -> None:
    _original_archive_init(self, *args, **kwargs)
    self.event_bus_name = bus_name(self.source_arn)


ORIGINALS = {(EventsBackend, "_normalize_event_bus_arn"): EventsBackend._normalize_event_bus_arn,
             (EventsBackend, "put_partner_events"): EventsBackend.put_partner_events,
             (Replay, "replay_events"): Replay.replay_events, (Archive, "__init__"): Archive.__init__}
CORRECTIONS = {(EventsBackend, "_normalize_event_bus_arn"): _normalize_event_bus_arn,
               (EventsBackend, "put_partner_events"): _put_partner_events,
               (Replay, "replay_events"): _replay_events, (Archive, "__init__"): _archive_init}


def _put(functions: dict) -> None:
    for (owner, name), function in functions.items():
        setattr(owner, name, function)


def install() -> None:
    """Put the corrections in place (idempotent; the moto server runs in this process, so it sees them too)."""
    _put(CORRECTIONS)


@contextmanager
def uncorrected() -> Iterator[None]:
    """moto as released, for the test that checks each correction is still needed."""
    _put(ORIGINALS)
    try:
        yield
    finally:
        install()

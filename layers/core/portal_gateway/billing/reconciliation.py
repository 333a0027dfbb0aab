"""Self-repair of the billing status: what no webhook delivery told us, read from Stripe on a schedule.

Three passes, each within the invocation's time budget and paced under Stripe's rate limit, each resuming where the
previous run stopped (a marker in the customers table):
  catch-up  Stripe's events API from the last event applied on (30 days are kept there): every handled event
            that did not arrive (a deleted or disabled endpoint, a setup run late, a roll) is applied by the same
            core as a delivery (webhook_events.py), once (event ids are remembered).
  catalog   every status showing a price or product that changed (noted by the webhook function on price.updated
            or product.updated: a moved lookup key, other features) is read again.
  stale     every projection read longer ago than the operator's bound is read again (a lost event of a type
            that is not listed again, a change Stripe sent no event for).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from portal_gateway.aws.projection_store import ProjectionStore
from portal_gateway.billing.webhook_events import WebhookEvents
from portal_gateway.errors import WebhookPayloadInvalid

logger = logging.getLogger(__name__)

# A first catch-up (no marker yet) reads this far back; `backfill` covers anything older.
FIRST_CATCH_UP_SECONDS = 3 * 24 * 3600
# Events are listed from a little before the last one applied: Stripe's `created` is whole seconds, and events of
# one second may be listed across two runs. Ids already applied are answered at once.
CATCH_UP_OVERLAP_SECONDS = 300
# Stripe calls one customer's re-read makes (subscriptions, entitlements; more for over 100 of either).
CALLS_PER_READ = 2


@dataclass
class ReconciliationReport:
    events_listed: int = 0
    events_applied: int = 0
    stale_read: int = 0
    stale_repaired: int = 0  # read again and found different: a change that had not reached the table
    catalog_read: int = 0  # statuses read again because a price or product they show changed
    pass_completed: bool = False  # the stale pass reached the end of the table
    out_of_time: bool = False


class Pacer:
    """At most `rate` Stripe calls per second, spread evenly (Stripe allows 25 a second in test mode, 100 live;
    the webhook function and the status route share them)."""

    def __init__(self, rate: float, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate
        self._sleep = sleep
        self._clock = clock
        self._next = float("-inf")

    def wait(self, calls: int = 1) -> None:
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + calls * self.interval


class Reconciler:
    def __init__(self, *, events: WebhookEvents, projections: ProjectionStore,
                 list_events: Callable[[int], list[dict[str, Any]]], max_age_seconds: int, pacer: Pacer,
                 count: Callable[..., None] = lambda name, **dims: None, clock: Callable[[], float] = time.time):
        self.events = events
        self.projections = projections
        self._list_events = list_events  # handled events created at or after a Unix time, oldest first
        self.max_age_seconds = max_age_seconds
        self.pacer = pacer
        self._count = count
        self._clock = clock

    def run(self, seconds_left: Callable[[], float]) -> ReconciliationReport:
        report = ReconciliationReport()
        self.catch_up(report, seconds_left)
        if not report.out_of_time:
            self.apply_catalog_changes(report, seconds_left)
        if not report.out_of_time:
            self.refresh_stale(report, seconds_left)
        for name, value in (("ReconcileEventsApplied", report.events_applied),
                            ("ReconcileProjectionsRead", report.stale_read),
                            ("ReconcileProjectionsRepaired", report.stale_repaired),
                            ("ReconcileCatalogReads", report.catalog_read)):
            if value:
                self._count(name, value)  # one data point of the run's total, not one per read
        if report.pass_completed:
            self._count("ReconcilePassCompleted")
        logger.info("Reconciliation run", extra={"report": report.__dict__})
        return report

    def catch_up(self, report: ReconciliationReport, seconds_left: Callable[[], float]) -> None:
        marker = self.projections.marker("events")
        after = int(marker.get("applied_through") or self._clock() - FIRST_CATCH_UP_SECONDS)
        self.pacer.wait()
        listed = self._list_events(max(0, after - CATCH_UP_OVERLAP_SECONDS))
        report.events_listed = len(listed)
        applied_through = after
        for event in listed:
            if seconds_left() <= 0:
                report.out_of_time = True
                break
            if not self.projections.event_seen(str(event.get("id"))):
                self.pacer.wait(CALLS_PER_READ)
                try:
                    outcome = self.events.handle(event)
                except WebhookPayloadInvalid as exc:
                    # Not one this service can apply (it names no customer): passed over, or it would hold every
                    # later event back for good. Stripe's or the network's failures still stop the run (retried).
                    logger.warning("An event from Stripe's list could not be applied; passed over",
                                   extra={"event_type": event.get("type"), "detail": exc.log_detail})
                    self._count("ReconcileEventsSkipped")
                    outcome = "skipped"
                if outcome == "processed":
                    report.events_applied += 1
                    logger.info("Applied an event no delivery brought", extra={"event_type": event.get("type")})
            applied_through = max(applied_through, int(event.get("created") or 0))
        self.projections.put_marker("events", {"applied_through": applied_through})

    def apply_catalog_changes(self, report: ReconciliationReport, seconds_left: Callable[[], float]) -> None:
        """Read again every status that shows a changed price or product (a moved lookup key, other features)."""
        for catalog_id in self.projections.catalog_changes():
            start_key = None
            while True:
                customers, start_key = self.projections.showing(catalog_id, start_key)
                for customer_id in customers:
                    if seconds_left() <= 0:
                        report.out_of_time = True  # the change stays noted: the next run starts it again
                        return
                    self.pacer.wait(CALLS_PER_READ)
                    self.events.refresh(customer_id)
                    report.catalog_read += 1
                if start_key is None:
                    break
            self.projections.catalog_change_applied(catalog_id)

    def refresh_stale(self, report: ReconciliationReport, seconds_left: Callable[[], float]) -> None:
        marker = self.projections.marker("stale")
        start_key = marker.get("next_key") or None
        cutoff_ms = int((self._clock() - self.max_age_seconds) * 1000)
        while True:
            customers, next_key = self.projections.stale(cutoff_ms, start_key)
            for customer_id in customers:
                if seconds_left() <= 0:
                    report.out_of_time = True
                    self.projections.put_marker("stale", {"next_key": start_key})  # this page again next run
                    return
                before = self.projections.get(customer_id)
                self.pacer.wait(CALLS_PER_READ)
                self.events.refresh(customer_id)
                after = self.projections.get(customer_id)
                report.stale_read += 1
                if before is not None and after is not None and after.projection != before.projection:
                    report.stale_repaired += 1
                    logger.info("A stale status differed from Stripe's records: repaired",
                                extra={"customer_id": customer_id})
            if next_key is None:
                report.pass_completed = True
                self.projections.put_marker("stale", {"next_key": None})
                return
            start_key = next_key

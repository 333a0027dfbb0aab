"""Webhook delivery for the Stripe stand-in, as Stripe documents it. NOT Stripe.

Each event goes to every enabled endpoint subscribed to its type (or to "*"), as a POST of the event's JSON
with a `Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>` header
(one v1 per secret while a rolled secret is still valid). A delivery that does not get a 2xx in time is
retried later; deliveries are concurrent, so they arrive in any order, and Stripe does not promise to deliver
an event only once. Tests turn these up: `duplicate_rate` sends some events twice, `reorder` shuffles what is
waiting, `paused` holds everything back (a burst), `retry_delays` sets the schedule (Stripe's spans 3 days).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def signature_header(body: bytes, secrets: list[str], timestamp: int | None = None) -> str:
    """Stripe's signature header for a body, one v1 per secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    parts += [f"v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}" for secret in secrets]
    return ",".join(parts)


@dataclass(order=True)
class _Attempt:
    due: float
    sequence: int
    endpoint_id: str = field(compare=False)
    event: dict = field(compare=False)
    number: int = field(compare=False, default=1)


@dataclass
class Delivery:
    """One delivery attempt, as the Dashboard's event log shows it."""

    event_id: str
    event_type: str
    endpoint_id: str
    attempt: int
    status: int | None  # None: no answer (connection refused, timeout)
    at: float


class Deliverer:
    """Delivers the stand-in's events to its webhook endpoints in background threads."""

    def __init__(self, endpoints, *, workers: int = 4, timeout: float = 10.0):
        self._endpoints = endpoints  # callable: endpoint id -> endpoint dict (or None once deleted)
        self._queue: list[_Attempt] = []
        self._cond = threading.Condition()
        self._sequence = 0
        self._closed = False
        self.timeout = timeout
        self.retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0)
        self.duplicate_rate = 0.0
        self.reorder = False
        self.paused = False
        self.random = random.Random()  # nosec B311 - test shuffling, not crypto
        self.deliveries: list[Delivery] = []
        self._busy = 0
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def enqueue(self, endpoint_id: str, event: dict) -> None:
        copies = 2 if self.duplicate_rate and self.random.random() < self.duplicate_rate else 1
        with self._cond:
            for _ in range(copies):
                self._push(_Attempt(time.monotonic(), 0, endpoint_id, event))
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self.paused = False
            self._cond.notify_all()

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or in flight (retries included). False if still busy at the timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _push(self, attempt: _Attempt) -> None:
        self._sequence += 1
        attempt.sequence = self._sequence
        self._queue.append(attempt)

    def _next(self) -> _Attempt | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                due = [a for a in self._queue if a.due <= now] if not self.paused else []
                if due:
                    chosen = self.random.choice(due) if self.reorder else min(due)
                    self._queue.remove(chosen)
                    self._busy += 1
                    return chosen
                waits = [a.due - now for a in self._queue]
                self._cond.wait(min(waits) if waits and not self.paused else 0.1)

    def _work(self) -> None:
        while True:
            attempt = self._next()
            if attempt is None:
                return
            try:
                self._deliver(attempt)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _deliver(self, attempt: _Attempt) -> None:
        endpoint = self._endpoints(attempt.endpoint_id)
        if endpoint is None or endpoint["status"] != "enabled":
            return
        body = json.dumps(attempt.event).encode()
        header = signature_header(body, endpoint["_signing_secrets"])
        status = _post(endpoint["url"], body, header, self.timeout)
        event = attempt.event
        with self._cond:
            self.deliveries.append(Delivery(event["id"], event["type"], attempt.endpoint_id, attempt.number, status,
                                            time.time()))
            if status is not None and 200 <= status < 300:
                return
            if attempt.number <= len(self.retry_delays):
                delay = self.retry_delays[attempt.number - 1]
                self._push(_Attempt(time.monotonic() + delay, 0, attempt.endpoint_id, event, attempt.number + 1))
                self._cond.notify_all()


def _post(url: str, body: bytes, signature: str, timeout: float) -> int | None:
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path or "/", body=body, headers={
            "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()

"""What each request spent on its dependencies (Stripe, DynamoDB, Cognito, Secrets Manager), for its log line,
and an X-Ray subsegment per outbound call when Lambda's active tracing samples the request.

Not the X-Ray SDK: importing it costs about 0.2 s at every cold start (it loads botocore, which these
functions do without). What the SDK sends is one UDP datagram per finished subsegment to the daemon Lambda
runs beside the function; this module sends the same document (tests/unit/test_tracing.py holds it equal to
aws-xray-sdk's). Tracing never fails or slows a request by more than a `sendto`: errors are dropped.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

# The X-Ray daemon protocol: a header line, then the segment document (aws_xray_sdk.core.emitters.udp_emitter).
PROTOCOL_HEADER = '{"format":"json","version":1}'
DEFAULT_DAEMON_ADDRESS = ("127.0.0.1", 2000)

# AWS services by their endpoint prefix: the names the request's log line, X-Ray's map and the dashboard use.
AWS_SERVICE_NAMES = {"dynamodb": "DynamoDB", "secretsmanager": "SecretsManager", "cognito-idp": "Cognito"}


@dataclass(frozen=True)
class TraceContext:
    """Lambda's trace header for this invocation (`_X_AMZN_TRACE_ID`): Root, Parent, Sampled."""
    root: str
    parent: str
    sampled: bool

    @classmethod
    def parse(cls, header: str | None) -> TraceContext | None:
        if not header:
            return None
        fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
        root, parent = fields.get("Root", ""), fields.get("Parent", "")
        if not root or not parent:
            return None
        return cls(root=root, parent=parent, sampled=fields.get("Sampled") == "1")


def daemon_address(value: str | None) -> tuple[str, int]:
    """AWS_XRAY_DAEMON_ADDRESS: `host:port`, or `udp:host:port tcp:host:port` (the UDP one is used)."""
    if not value:
        return DEFAULT_DAEMON_ADDRESS
    for part in value.split():
        if part.startswith("udp:"):
            value = part[4:]
            break
    host, _, port = value.rpartition(":")
    try:
        return host or DEFAULT_DAEMON_ADDRESS[0], int(port)
    except ValueError:
        return DEFAULT_DAEMON_ADDRESS


@dataclass
class OutboundCall:
    """One call in progress: the caller sets the answer's status (left None: no answer came)."""
    status: int | None = None


@dataclass
class _Totals:
    calls: int = 0
    ms: float = 0.0
    slowest_ms: float = 0.0
    failed: int = 0


class RequestTimings:
    """This invocation's outbound calls, summed per dependency; subsegments sent while a sampled trace is on.
    One invocation at a time per execution environment; calls may come from the threads it starts."""

    def __init__(self, *, clock=time.time, send=None):
        self._lock = threading.Lock()
        self._totals: dict[str, _Totals] = {}
        self._trace: TraceContext | None = None
        self._clock = clock
        self._send = send or _udp_sender()

    def begin(self, trace_header: str | None) -> None:
        with self._lock:
            self._totals = {}
            self._trace = TraceContext.parse(trace_header)

    @contextmanager
    def timed(self, dependency: str, method: str, url: str, *, operation: str | None = None
              ) -> Iterator[OutboundCall]:
        call = OutboundCall()
        started = self._clock()
        try:
            yield call
        finally:
            ended = self._clock()
            self._add(dependency, (ended - started) * 1000, failed=call.status is None or call.status >= 500)
            trace = self._trace
            if trace is not None and trace.sampled:
                document = subsegment(trace, dependency, method, url, call.status, started, ended,
                                      operation=operation)
                self._send(PROTOCOL_HEADER + "\n" + json.dumps(document, separators=(",", ":")))

    def summary(self) -> dict[str, dict[str, float | int]]:
        """{"Stripe": {"calls": 2, "ms": 231.0, "slowest_ms": 180.2, "failed": 0}, ...} for the request's log."""
        with self._lock:
            return {name: {"calls": t.calls, "ms": round(t.ms, 1), "slowest_ms": round(t.slowest_ms, 1),
                           "failed": t.failed} for name, t in sorted(self._totals.items())}

    def _add(self, dependency: str, ms: float, *, failed: bool) -> None:
        with self._lock:
            totals = self._totals.setdefault(dependency, _Totals())
            totals.calls += 1
            totals.ms += ms
            totals.slowest_ms = max(totals.slowest_ms, ms)
            totals.failed += failed


def subsegment(trace: TraceContext, dependency: str, method: str, url: str, status: int | None, started: float,
               ended: float, *, operation: str | None = None, subsegment_id: str | None = None) -> dict:
    """The X-Ray subsegment document of one outbound call, as aws-xray-sdk writes it. The URL goes without its
    path and query (ids, and Stripe's paths name customers), as the service map needs only the host. A call
    with an `operation` is an AWS API call (namespace `aws`)."""
    parts = urlsplit(url)
    document: dict = {"id": subsegment_id or secrets.token_hex(8), "name": dependency, "start_time": started,
                      "in_progress": False, "http": {"request": {"method": method,
                                                                 "url": f"{parts.scheme}://{parts.netloc}"}}}
    if status is not None:
        document["http"]["response"] = {"status": status}
    if operation:
        document["aws"] = {"operation": operation}
    document.update({"trace_id": trace.root, "type": "subsegment", "parent_id": trace.parent,
                     "namespace": "aws" if operation else "remote"})
    # The flags X-Ray colours calls by (aws_xray_sdk's Entity.apply_status_code); no answer at all is a fault.
    if status is None or status >= 500:
        document["fault"] = True
    elif status == 429:
        document["throttle"] = document["error"] = True
    elif status >= 400:
        document["error"] = True
    document["end_time"] = ended
    return document


def _udp_sender():
    lock = threading.Lock()
    state: dict = {}

    def send(message: str) -> None:
        try:
            with lock:
                if "socket" not in state:  # made on first use: nothing of it is in a SnapStart snapshot
                    state["socket"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                configured = os.environ.get("AWS_XRAY_DAEMON_ADDRESS")
                if state.get("configured", "") != configured:
                    state["configured"], state["address"] = configured, daemon_address(configured)
                state["socket"].sendto(message.encode(), state["address"])
        except OSError:
            pass  # a trace is never worth a failed request

    return send


TIMINGS = RequestTimings()  # the process's one recorder: every outbound call goes through http_pool

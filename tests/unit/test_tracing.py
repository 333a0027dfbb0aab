"""The request timings and X-Ray subsegments of portal_gateway.tracing, held to aws-xray-sdk's documents."""

from __future__ import annotations

import json
import socket

import pytest
from aws_xray_sdk.core.daemon_config import DaemonConfig
from aws_xray_sdk.core.emitters import udp_emitter
from aws_xray_sdk.core.models import http
from aws_xray_sdk.core.models.facade_segment import FacadeSegment
from aws_xray_sdk.core.models.subsegment import Subsegment
from portal_gateway import tracing

ROOT, PARENT = "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
HEADER = f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:0"


def sdk_subsegment(name: str, method: str, url: str, status: int | None, started: float, ended: float,
                   operation: str | None = None) -> dict:
    """What aws-xray-sdk sends for the same call inside Lambda (its facade segment carries the trace header)."""
    facade = FacadeSegment("facade", entityid=PARENT, traceid=ROOT, sampled=True)
    subsegment = Subsegment(name, "aws" if operation else "remote", facade)
    facade.add_subsegment(subsegment)
    subsegment.start_time = started
    subsegment.put_http_meta(http.METHOD, method)
    subsegment.put_http_meta(http.URL, url)
    if operation:
        subsegment.set_aws({"operation": operation})
    if status is None:
        subsegment.add_fault_flag()  # no answer: the SDK records the exception, which marks a fault
    else:
        subsegment.put_http_meta(http.STATUS, status)
    subsegment.close(end_time=ended)
    document = json.loads(subsegment.serialize())
    document.pop("id")
    return document


@pytest.mark.parametrize(("status", "operation"), [(200, None), (404, None), (429, None), (500, None), (None, None),
                                                    (200, "GetItem"), (400, "PutItem"), (503, "GetSecretValue")])
def test_a_subsegment_is_the_document_aws_xray_sdk_sends(status, operation):
    trace = tracing.TraceContext.parse(HEADER)
    name = "DynamoDB" if operation else "Stripe"
    ours = tracing.subsegment(trace, name, "POST", "https://api.stripe.com/v1/customers/cus_123?expand[]=x",
                              status, 1796400000.25, 1796400000.5, operation=operation)
    assert len(ours.pop("id")) == 16
    # The SDK is given the URL already cut to scheme and host: no path (Stripe's name customers), no query.
    assert ours == sdk_subsegment(name, "POST", "https://api.stripe.com", status, 1796400000.25, 1796400000.5,
                                  operation)


def test_the_daemon_address_is_read_as_the_sdk_reads_it():
    for value in ("169.254.79.129:2000", "udp:127.0.0.1:3000 tcp:127.0.0.2:2000",
                  "tcp:127.0.0.2:2000 udp:10.0.0.1:2001"):
        config = DaemonConfig(value)
        assert tracing.daemon_address(value) == (config.udp_ip, config.udp_port), value
    assert tracing.daemon_address(None) == (DaemonConfig().udp_ip, DaemonConfig().udp_port)


@pytest.fixture
def daemon(monkeypatch):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(2)
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{listener.getsockname()[1]}")
    yield listener
    listener.close()


def received(listener: socket.socket) -> list[str]:
    messages = []
    listener.settimeout(0.3)
    try:
        while True:
            messages.append(listener.recv(65536).decode())
    except TimeoutError:
        return messages


def test_a_sampled_request_sends_one_datagram_per_call_framed_as_the_sdk_frames_it(daemon):
    timings = tracing.RequestTimings()
    timings.begin(HEADER)
    with timings.timed("Stripe", "POST", "https://api.stripe.com/v1/billing_portal/sessions") as call:
        call.status = 200
    with timings.timed("DynamoDB", "POST", "https://dynamodb.eu-west-1.amazonaws.com/", operation="GetItem"):
        pass  # no answer (the pool raised): a fault
    messages = received(daemon)
    assert len(messages) == 2
    for message in messages:
        header, document = message.split(udp_emitter.PROTOCOL_DELIMITER, 1)
        assert header == udp_emitter.PROTOCOL_HEADER
        sent = json.loads(document)
        assert (sent["trace_id"], sent["parent_id"], sent["type"]) == (ROOT, PARENT, "subsegment")
        assert sent["end_time"] >= sent["start_time"] and "/v1/" not in message
    stripe_call, table_call = (json.loads(m.split("\n", 1)[1]) for m in messages)
    assert stripe_call["http"]["response"] == {"status": 200} and "fault" not in stripe_call
    assert table_call["aws"] == {"operation": "GetItem"} and table_call["fault"] is True
    summary = timings.summary()
    assert set(summary) == {"DynamoDB", "Stripe"}
    assert summary["Stripe"]["calls"] == 1 and summary["Stripe"]["failed"] == 0
    assert summary["DynamoDB"]["failed"] == 1


@pytest.mark.parametrize("header", [None, "", f"Root={ROOT};Parent={PARENT};Sampled=0", f"Root={ROOT};Sampled=1"])
def test_nothing_is_sent_unless_lambda_sampled_the_request_but_it_is_still_timed(daemon, header):
    timings = tracing.RequestTimings()
    timings.begin(header)
    with timings.timed("Cognito", "GET", "https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json") \
            as call:
        call.status = 200
    assert received(daemon) == []
    assert timings.summary()["Cognito"]["calls"] == 1


def test_each_request_starts_from_zero_and_sums_per_dependency():
    clock = iter([0.0, 0.1, 1.0, 1.3, 2.0, 2.05]).__next__
    timings = tracing.RequestTimings(clock=clock, send=lambda message: None)
    timings.begin(None)
    for status in (200, 502):
        with timings.timed("Stripe", "GET", "https://api.stripe.com/v1/customers") as call:
            call.status = status
    assert timings.summary() == {"Stripe": {"calls": 2, "ms": 400.0, "slowest_ms": 300.0, "failed": 1}}
    timings.begin(None)
    with timings.timed("SecretsManager", "POST", "https://secretsmanager.eu-west-1.amazonaws.com/") as call:
        call.status = 200
    assert timings.summary() == {"SecretsManager": {"calls": 1, "ms": 50.0, "slowest_ms": 50.0, "failed": 0}}


def test_a_daemon_that_cannot_be_reached_never_fails_the_call(monkeypatch):
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "203.0.113.1:notaport")
    timings = tracing.RequestTimings()
    timings.begin(HEADER)
    with timings.timed("Stripe", "GET", "https://api.stripe.com/v1/customers") as call:
        call.status = 200
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "[::1]:2000")  # an address family the socket does not take
    with timings.timed("Stripe", "GET", "https://api.stripe.com/v1/customers") as call:
        call.status = 200
    assert timings.summary()["Stripe"]["calls"] == 2

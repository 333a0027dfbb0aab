"""Metrics (CloudWatch EMF on stdout) and structured log fields an operator relies on."""

from __future__ import annotations

import json

import pytest

from devstack.stripe_standin import Fault, fake_key


def emitted(capsys) -> tuple[list[dict], list[dict]]:
    metrics, logs = [], []
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        (metrics if "_aws" in record else logs).append(record)
    return metrics, logs


def counted(metrics: list[dict], name: str, **dimensions) -> int:
    total = 0
    for record in metrics:
        names = [m["Name"] for d in record["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
        if name in names and all(record.get(k) == v for k, v in dimensions.items()):
            value = record[name]
            total += sum(value) if isinstance(value, list) else value
    return int(total)


def test_first_visit_then_returning_visit(gateway, user, capsys):
    sub, tokens = user()
    gw = gateway()
    gw.portal(tokens["IdToken"])
    gw.portal(tokens["IdToken"])
    gateway().portal(tokens["IdToken"])  # a new execution environment finds the mapping
    metrics, logs = emitted(capsys)
    assert counted(metrics, "PortalSessionCreated") == 3
    assert counted(metrics, "CustomerCreated") == 1
    assert counted(metrics, "CustomerFoundByMapping") == 1
    assert all(r["service"] == "stripe-portal-gateway" for r in metrics)
    created = [r for r in logs if r["message"] == "Portal session created"]
    assert len(created) == 3
    assert all(r["cognito_sub"] == sub and r["function_request_id"] for r in created)
    assert [r["customer_source"] for r in created] == ["created", "cache", "mapping"]


def test_email_match_is_counted(gateway, user, stripe_standin, capsys):
    stripe_standin.add_customer(email="ada@example.com")
    _, tokens = user()
    gateway().portal(tokens["IdToken"])
    metrics, _ = emitted(capsys)
    assert counted(metrics, "CustomerMatchedByEmail") == 1 and counted(metrics, "CustomerCreated") == 0


def test_auth_rejections_by_reason(gateway, user, capsys):
    _, tokens = user()
    gw = gateway()
    gw.portal(tokens["IdToken"])  # a signed-in request first: its sub must not leak into the next log lines
    gw.portal("garbage")
    gw.portal(tokens["IdToken"][:-4] + "AAAA")
    metrics, logs = emitted(capsys)
    assert counted(metrics, "AuthRejected") == 2
    assert counted(metrics, "AuthRejectedByReason", reason="malformed") == 1
    assert counted(metrics, "AuthRejectedByReason", reason="bad_signature") == 1
    refused = [r for r in logs if r["message"] == "Request refused"]
    assert [r["detail"] for r in refused] == ["malformed", "bad_signature"]
    assert all("cognito_sub" not in r for r in refused)


def test_stripe_errors_by_type_and_key_refreshes(gateway, user, stack, stripe_standin, capsys):
    _, tokens = user()
    gw = gateway()
    gw.portal(tokens["IdToken"])
    stripe_standin.inject(Fault(status=500, times=2, path_prefix="/v1/billing_portal"))
    gw.portal(tokens["IdToken"])
    new_key = stripe_standin.add_key(fake_key())
    stack.put_stripe_key(new_key)
    stripe_standin.revoke_key(stripe_standin.key)
    gw.portal(tokens["IdToken"])
    metrics, _ = emitted(capsys)
    assert counted(metrics, "StripeErrorsByType", type="APIError") == 1
    assert counted(metrics, "StripeErrorsByType", type="AuthenticationError") == 1
    assert counted(metrics, "StripeErrors") == 2
    assert counted(metrics, "StripeKeyRefreshed") == 1
    assert counted(metrics, "DependencyErrorsByCode", code="billing_provider_error") == 1


def test_init_rehearses_the_routes_without_a_caller_and_without_a_trace(gateway, user, stripe_standin, capsys):
    """Init runs each user-facing route once with no token: the per-route work is done before the first click,
    nothing reaches Stripe, and nothing is logged or counted as a refused request. Then a real click works."""
    gw = gateway(POWERTOOLS_LOG_LEVEL="DEBUG")
    routes = gw.module.app._static_routes + gw.module.app._dynamic_routes
    rehearsed = {(r.method, r.rule.pattern) for r in routes if r.request_param_name_checked}
    assert {method for method, _ in rehearsed} >= {"GET", "POST"} and len(rehearsed) == 3, rehearsed
    assert stripe_standin.calls() == []
    metrics, logs = emitted(capsys)
    assert not [r for r in logs if r["message"] in ("Request refused", "Route rehearsal at init answered unexpectedly")]
    assert metrics == []
    _, tokens = user()
    assert gw.portal(tokens["IdToken"]).status == 302
    _, logs = emitted(capsys)
    assert [r["level"] for r in logs if r["message"] == "Portal session created"] == ["INFO"]  # level restored


def test_a_bug_after_sign_in_is_counted_for_the_version_that_has_it(gateway, user, capsys, monkeypatch):
    """The release's alarm watches UnexpectedErrorsByVersion of the new version: Lambda's own Errors stays 0 when
    the resolver turns a bug into a 500."""
    from portal_gateway.billing.customers import CustomerResolver

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    gw = gateway()
    _, tokens = user()

    def broken(self, *args, **kwargs):
        raise KeyError("a bug after sign-in")

    monkeypatch.setattr(CustomerResolver, "resolve", broken)
    capsys.readouterr()
    reply = gw.portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 500 and reply.json["error"] == "internal_error" and "KeyError" not in reply.body
    metrics, _ = emitted(capsys)
    assert counted(metrics, "UnexpectedErrors") == 1
    assert counted(metrics, "UnexpectedErrorsByVersion", version="7") == 1


def test_each_request_logs_what_each_dependency_took_and_a_sampled_one_is_traced(gateway, user, capsys, monkeypatch):
    """The operator's "why was this click slow": one line per request with the time per dependency, and under
    Lambda's active tracing an X-Ray subsegment per call, tied to the trace id the line carries."""
    import socket

    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{daemon.getsockname()[1]}")
    root = "1-6751d2c0-0123456789abcdef01234567"
    _, tokens = user()
    gw = gateway()
    capsys.readouterr()
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1")
    assert gw.portal(tokens["IdToken"]).status == 302  # first visit: the user pool, the table and Stripe
    _, logs = emitted(capsys)
    (line,) = [r for r in logs if r["message"] == "Request answered"]
    assert (line["route"], line["status"], line["xray_trace_id"]) == ("GET /portal", 302, root)
    dependencies = line["dependencies"]
    assert {"Stripe", "DynamoDB"} <= set(dependencies), dependencies
    assert all(d["calls"] >= 1 and d["ms"] >= d["slowest_ms"] > 0 and d["failed"] == 0 for d in dependencies.values())
    assert line["duration_ms"] >= max(d["slowest_ms"] for d in dependencies.values())
    daemon.settimeout(1)
    sent = [json.loads(daemon.recv(65536).decode().split("\n", 1)[1])
            for _ in range(sum(d["calls"] for d in dependencies.values()))]
    assert {s["trace_id"] for s in sent} == {root}
    assert {s["name"] for s in sent} == set(dependencies)
    assert {s["aws"]["operation"] for s in sent if s["name"] == "DynamoDB"} <= {"GetItem", "PutItem", "UpdateItem",
                                                                               "TransactWriteItems", "Query"}
    # Nothing of the caller in a trace: no token, no email, no Stripe path (it names the customer).
    assert not any(tokens["IdToken"][:40] in json.dumps(s) or "@" in json.dumps(s) or "/v1/" in json.dumps(s)
                   for s in sent)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={root};Parent=53995c3f42cd8ad8;Sampled=0")
    assert gw.portal(tokens["IdToken"]).status == 302
    _, logs = emitted(capsys)
    (line,) = [r for r in logs if r["message"] == "Request answered"]
    assert line["dependencies"]["Stripe"]["calls"] == 1  # returning visit: the portal session alone
    daemon.settimeout(0.3)
    with pytest.raises(TimeoutError):
        daemon.recv(65536)  # not sampled: timed and logged, not sent
    daemon.close()


def held_to(fields: set[str], lines: list[dict]) -> list[str]:
    """The fields of a dashboard query that none of the lines has (a dependency's figures: any dependency the
    code can name, with a figure its summary has)."""
    from portal_gateway.tracing import AWS_SERVICE_NAMES

    from tests.support.dashboard import flattened

    logged = set().union(*(flattened(line) for line in lines))
    figures = {figure for line in lines for d in line.get("dependencies", {}).values() for figure in d}
    missing = []
    for field in sorted(fields):
        if field.startswith("dependencies."):
            _, name, figure = field.split(".")
            if name not in {"Stripe", *AWS_SERVICE_NAMES.values()} or figure not in figures:
                missing.append(field)
        elif field not in logged:
            missing.append(field)
    return missing


def test_every_field_the_dashboard_reads_is_one_the_portal_function_logs(gateway, user, capsys, monkeypatch):
    from tests.support.dashboard import fields_named, log_queries

    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-6751d2c0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=0")
    _, tokens = user()
    gw = gateway()
    gw.portal(tokens["IdToken"])
    gw.portal("garbage")
    _, logs = emitted(capsys)
    lines = [r for r in logs if r["message"] in ("Request answered", "Request refused")]
    queries = log_queries()["PortalFunction"]
    named = set().union(*(fields_named(q) for q in queries))
    assert {"duration_ms", "dependencies.Stripe.ms", "xray_trace_id", "error_code"} <= named  # the reader works
    assert held_to(named, lines) == []

"""The operator dashboard in template.yaml: what it shows exists (metrics the code counts, log groups the stack
makes). The log fields its queries read are held to real log lines in tests/functional/test_observability.py."""

from __future__ import annotations

import re
from pathlib import Path

from devstack.cfn import load_template
from tests.support.dashboard import log_queries, widgets

ROOT = Path(__file__).resolve().parents[2]


def counted_in_code() -> set[str]:
    code = "".join(p.read_text() for p in [*(ROOT / "layers/core/portal_gateway").rglob("*.py"),
                                           *(ROOT / "functions").glob("*/app.py")])
    names = set(re.findall(r'count\(\s*"([A-Z][A-Za-z]+)"', code))
    pairs = re.findall(r'count\(\s*"([A-Z][A-Za-z]+)", ([a-z]+)=', code)
    broken_down = {f"{name}By{dimension.title()}" for name, dimension in pairs}
    return names | broken_down


def test_every_metric_on_the_dashboard_is_one_the_functions_publish():
    shown, searched = set(), set()
    for widget in widgets():
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):
                searched |= set(re.findall(r'MetricName="(\w+)"', row[0]["expression"]))
            elif row[0] == "StripePortalGateway":
                shown.add(row[1])
            else:
                assert row[0] == "AWS/Lambda" and row[2:4] == ["FunctionName", "<PortalFunction>"], row
    assert shown and searched
    assert shown | searched <= counted_in_code(), (shown | searched) - counted_in_code()


def test_the_dashboard_reads_the_log_groups_the_stack_makes_in_its_own_region():
    resources = load_template()["Resources"]
    queries = log_queries()
    assert set(queries) == {"PortalFunction", "WebhookFunction", "StripeEventsFunction"}
    for function in queries:
        assert resources[function]["Type"] == "AWS::Serverless::Function"
        group = resources[f"{function}LogGroup"]["Properties"]["LogGroupName"]
        assert group == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}  # the group the query names
    assert all(w["properties"]["region"] == "<AWS::Region>" for w in widgets())


def test_the_functions_are_traced():
    template = load_template()
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert not [f for f in functions if f["Properties"].get("Tracing", "Active") != "Active"]

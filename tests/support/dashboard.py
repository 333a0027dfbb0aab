"""The operator dashboard of template.yaml, read the way CloudWatch will: its widgets, and the log fields each
Logs Insights query names (so tests can hold them to the lines the functions really write)."""

from __future__ import annotations

import json
import re

from devstack.cfn import load_template

# Logs Insights words that are not fields: commands, functions, keywords, time units.
INSIGHTS_WORDS = {"SOURCE", "fields", "filter", "stats", "sort", "limit", "by", "as", "and", "or", "not", "desc",
                  "asc", "count", "sum", "avg", "max", "min", "pct", "bin", "ispresent", "display"}


def _sub() -> tuple[str, dict]:
    """The body and its variables (the body is `!Sub [body, {variables}]`, or a plain `!Sub body`)."""
    sub = load_template()["Resources"]["OperatorDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return (sub[0], sub[1]) if isinstance(sub, list) else (sub, {})


def widgets() -> list[dict]:
    body, _ = _sub()
    return json.loads(re.sub(r"\$\{([A-Za-z:]+)\}", r"<\1>", body))["widgets"]


def log_groups_of(variable: str) -> set[str]:
    """The functions whose log groups a body variable (e.g. EventLogSources) can name, in any of its branches."""
    _, variables = _sub()
    return set(re.findall(r"/aws/lambda/\$\{(\w+)\}", json.dumps(variables[variable])))


def log_queries() -> dict[str, list[str]]:
    """The queries, by the function whose log group they read (`PortalFunction`, `WebhookFunction`, ...)."""
    queries: dict[str, list[str]] = {}
    for widget in widgets():
        if widget["type"] == "log":
            query = widget["properties"]["query"]
            functions = set(re.findall(r"SOURCE '/aws/lambda/<(\w+)>'", query))
            for variable in re.findall(r"<(\w+)> \|", query):
                functions |= log_groups_of(variable)
            assert functions, query
            for function in functions:
                queries.setdefault(function, []).append(query)
    return queries


def fields_named(query: str) -> set[str]:
    """The log fields a query reads (not Lambda's own @-fields, not the names it gives its results)."""
    query = re.sub(r"'[^']*'|<\w+>", "", query)  # strings (the SOURCE, the messages matched), the body's variables
    aliases = set(re.findall(r"\bas (\w+)", query))
    words = set(re.findall(r"(?<![@\w.])[A-Za-z_][\w.]*", query))
    return {w for w in words if w not in INSIGHTS_WORDS and w not in aliases and not re.fullmatch(r"\d+[smhd]", w)}


def flattened(record: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in record.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= flattened(value, f"{prefix}{key}.")
    return keys

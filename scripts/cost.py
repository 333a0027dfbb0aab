"""What a deployment costs per month at a given number of portal opens: the arithmetic behind the table in
docs/deploy.md.

    .venv/bin/python scripts/cost.py [--stripe-ms 150] [--cold-share 0.1] [--new-user-share 0.05]

Prices are AWS's published us-east-1 list prices (arm64 Lambda), recorded on the date below; free tiers are not
deducted and Stripe's own fees are not included. The alarms are counted from template.yaml and the custom
metrics from the code. Every assumption is an option and is printed with the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRICES_RECORDED = "2026-11-25"
PRICE = {  # USD, us-east-1
    "lambda_gb_second_arm64": 0.0000133334,  # aws.amazon.com/lambda/pricing (first 7.5 billion GB-s)
    "lambda_request": 0.20 / 1e6,
    "http_api_request": 1.00 / 1e6,  # aws.amazon.com/api-gateway/pricing (HTTP APIs, first 300 million)
    "dynamodb_read_unit": 0.125 / 1e6,  # aws.amazon.com/dynamodb/pricing/on-demand
    "dynamodb_write_unit": 0.625 / 1e6,
    "secret_month": 0.40,  # aws.amazon.com/secrets-manager/pricing
    "secrets_api_call": 0.05 / 10_000,
    "alarm_metric_month": 0.10,  # aws.amazon.com/cloudwatch/pricing (standard resolution, per metric)
    "custom_metric_month": 0.30,  # aws.amazon.com/cloudwatch/pricing (first 10,000 metrics, prorated hourly)
    "log_gb_ingested": 0.50,
    "dynamodb_gb_month": 0.25,  # aws.amazon.com/dynamodb/pricing/on-demand (table storage)
    "pitr_gb_month": 0.20,  # continuous backups (point-in-time recovery), per GB of table
    "xray_trace_recorded": 5.00 / 1e6,  # aws.amazon.com/xray/pricing (traces recorded)
    "dashboard_month": 3.00,  # aws.amazon.com/cloudwatch/pricing (per dashboard beyond the first three)
}
# The scheduled reconciliation (ReconcileFunction): every 15 minutes, all month.
RECONCILE_RUNS_MONTH = 4 * 24 * 30


def custom_metrics(values_per_dimension: int) -> int:
    """The metric names the functions publish (EMF), read from the code: each name once (dimension `service`),
    and each per-dimension breakdown (`<name>By<Dim>`) once per dimension value it takes."""
    import re

    code = "".join(path.read_text() for path in [*(ROOT / "layers/core/portal_gateway").rglob("*.py"),
                                                  *(ROOT / "functions").glob("*/app.py")])
    names = set(re.findall(r'count\(\s*"([A-Z][A-Za-z]+)"', code))
    names |= set(re.findall(r'\("(Reconcile[A-Za-z]+)", report', code))
    names |= {f"WebhookEvents{outcome}" for outcome in ("Processed", "Duplicate", "Ignored")}
    broken_down = set(re.findall(r'count\(\s*"([A-Z][A-Za-z]+)", [a-z_]+=', code))
    return len(names) + len(broken_down) * values_per_dimension


def alarm_metrics() -> int:
    sys.path.insert(0, str(ROOT))
    from devstack.cfn import load_template

    resources = load_template(ROOT / "template.yaml")["Resources"].values()
    count = 0
    for resource in resources:
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            metrics = resource["Properties"].get("Metrics")
            count += sum(1 for m in metrics if "MetricStat" in m) if metrics else 1
    return count


def monthly_cost(opens: int, args: argparse.Namespace) -> dict[str, float]:
    memory_gb = args.memory_mb / 1024
    warm_seconds = args.stripe_ms / 1000 + args.overhead_ms / 1000
    seconds = (1 - args.cold_share) * warm_seconds + args.cold_share * (args.cold_ms / 1000)
    requests = opens * args.requests_per_open
    uncached = opens * (args.cold_share + args.new_user_share)  # a mapping read when not in memory
    writes = opens * args.new_user_share * 3  # creation ticket + mapping + claim
    secret_reads = opens * args.cold_share  # once per execution environment start (then every TTL)
    return {
        "Lambda": requests * (PRICE["lambda_request"] + seconds * memory_gb * PRICE["lambda_gb_second_arm64"]),
        "HTTP API": requests * PRICE["http_api_request"],
        "DynamoDB": uncached * PRICE["dynamodb_read_unit"] + writes * PRICE["dynamodb_write_unit"],
        "Secrets Manager": args.secrets * PRICE["secret_month"] + secret_reads * PRICE["secrets_api_call"],
        "Lambda (reconciliation)": RECONCILE_RUNS_MONTH * (PRICE["lambda_request"] + args.reconcile_seconds
                                                           * memory_gb * PRICE["lambda_gb_second_arm64"]),
        "CloudWatch alarms": alarm_metrics() * PRICE["alarm_metric_month"],
        "CloudWatch metrics": custom_metrics(args.values_per_dimension) * PRICE["custom_metric_month"],
        "CloudWatch Logs": requests * args.log_kb_per_request / 1024 / 1024 * PRICE["log_gb_ingested"],
        "DynamoDB storage + PITR": args.table_gb * (PRICE["dynamodb_gb_month"] + PRICE["pitr_gb_month"]),
        # Lambda's default sampling: the first request of each second and 5% of the rest. At a billing link's
        # traffic nearly every request is the first of its second: all of them, an upper bound.
        "X-Ray traces": requests * PRICE["xray_trace_recorded"],
        "CloudWatch dashboard": PRICE["dashboard_month"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-mb", type=int, default=256, help="the function's MemorySize")
    parser.add_argument("--stripe-ms", type=float, default=150, help="one Stripe call (a returning user's request)")
    parser.add_argument("--overhead-ms", type=float, default=2, help="the function's own time per warm request")
    parser.add_argument("--cold-ms", type=float, default=270,
                        help="a cold request incl. init (on-demand: unthrottled) at 256 MB and Stripe's 150 ms "
                             "(make bench: 122 ms + 150 ms)")
    parser.add_argument("--cold-share", type=float, default=0.10, help="share of opens that start an environment")
    parser.add_argument("--new-user-share", type=float, default=0.05, help="share of opens by first-time users")
    parser.add_argument("--requests-per-open", type=float, default=1, help="2 for plain links that sign in first")
    parser.add_argument("--secrets", type=int, default=3,
                        help="the Stripe key, the Hosted UI OAuth secret and the webhook signing secret")
    parser.add_argument("--log-kb-per-request", type=float, default=2.5,
                        help="function and API access log lines (the request's own line with its timings included)")
    parser.add_argument("--reconcile-seconds", type=float, default=3,
                        help="one scheduled reconciliation run (a few missed events, a few stale statuses)")
    parser.add_argument("--values-per-dimension", type=int, default=3,
                        help="values a per-dimension metric takes in a month (error types, codes, reasons)")
    parser.add_argument("--table-gb", type=float, default=0.1,
                        help="the customers table (mappings, statuses, event ids): about 2 KB a customer")
    args = parser.parse_args()
    volumes = (1_000, 100_000, 1_000_000)
    rows = {volume: monthly_cost(volume, args) for volume in volumes}
    print(f"us-east-1 list prices recorded {PRICES_RECORDED}, arm64, free tiers not deducted, Stripe fees excluded.")
    print(f"Assumptions: {args.memory_mb} MB, Stripe {args.stripe_ms:.0f} ms, {args.cold_share:.0%} cold opens at "
          f"{args.cold_ms:.0f} ms, {args.new_user_share:.0%} first-time users, {args.requests_per_open:g} request(s) "
          f"per open, {args.secrets} secrets, {alarm_metrics()} alarm metrics, "
          f"{custom_metrics(args.values_per_dimension)} custom metrics (all published all month: an upper bound), "
          f"{args.log_kb_per_request:g} KB of logs per request, a {args.table_gb:g} GB table with point-in-time "
          f"recovery, {RECONCILE_RUNS_MONTH:,} reconciliation runs of {args.reconcile_seconds:g} s.\n")
    print("| Per month | " + " | ".join(f"{v:,} opens" for v in volumes) + " |")
    print("|---|" + "---|" * len(volumes))
    for item in rows[volumes[0]]:
        print(f"| {item} | " + " | ".join(f"${rows[v][item]:,.2f}" for v in volumes) + " |")
    print("| **Total** | " + " | ".join(f"**${sum(rows[v].values()):,.2f}**" for v in volumes) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

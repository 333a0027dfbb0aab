"""`make bench-status` runs: bench/status.py, at a small size, prints its table, every burst customer's projection
ends equal to the stand-in's records, a warm status request makes no Stripe call and one DynamoDB read, and at
twice Stripe's rate limit every request gets a clear answer without a retry storm.
The figures themselves are the script's to print (docs/performance.md), not this test's to judge."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy.readme_script import ROOT


def test_the_status_benchmark_runs_and_its_burst_converges():
    run = subprocess.run([sys.executable, "bench/status.py", "--requests", "50", "--changes", "3", "--burst", "60",
                          "--limit-seconds", "2", "--reconcile-customers", "20"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1].rstrip(" |")
            for line in run.stdout.splitlines() if line.startswith("| ") and " | " in line}
    assert rows["Stripe calls / DynamoDB calls per warm status request"] == "0 / 1"
    assert rows["Burst: customers whose projection equals the stand-in's records"] == "50 of 50"
    emitted, attempts, applied = (int(n) for n in rows[
        "Burst: events emitted / delivery attempts / events applied"].split(" / "))
    assert emitted >= 60 and applied == emitted and attempts >= emitted
    # The same burst through EventBridge ends equal too, with no more Stripe calls per event than the webhook's.
    assert rows["EventBridge burst: customers whose projection equals the stand-in's records"] == "50 of 50"
    put, deliveries, applied = (int(n) for n in rows[
        "The same burst through EventBridge: events put on the bus / deliveries / events applied"].split(" / "))
    assert put >= 60 and applied == put and deliveries >= put
    webhook, bus = (float(n) for n in rows["Stripe calls per applied event: webhook / EventBridge"].split(" / "))
    assert 0 < bus <= webhook
    assert "ms" in rows["Webhook to visible status, p50 / p95 / max (3 changes)"]
    # At twice Stripe's rate limit: a clear answer for every request, no retry storm.
    clicks, reads = (int(n) for n in rows["2x Stripe's rate limit (50/s for 2 s): clicks / status reads"].split(" / "))
    assert rows["2x rate limit: status reads of stored users answered 200"] == f"{reads} of {reads}"
    ok, refused, other = (int(n) for n in rows[
        "2x rate limit: clicks answered 302 / 502 with Retry-After / other"].split(" / "))
    assert ok + refused == clicks and other == 0 and refused > 0  # the limit was really hit
    stripe_calls, made = (int(n) for n in rows[
        "2x rate limit: Stripe requests / requests made (429s from Stripe)"].split(" (")[0].split(" / "))
    assert stripe_calls <= 1.1 * made
    # The scheduled reconciliation reads each stale status once (two Stripe calls), under the rate limit.
    assert rows["Reconciliation: stale statuses read again / runs / seconds (at 20 Stripe calls/s)"].startswith(
        "20 of 20 / 1 /")
    assert rows["Reconciliation: Stripe calls per customer / 429s from Stripe (limit 25/s)"] == "2.00 / 0"

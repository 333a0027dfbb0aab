"""`make bench-status` runs: bench/status.py, at a small size, prints its table, every burst customer's projection
ends equal to the stand-in's records, and a warm status request makes no Stripe call and one DynamoDB read.
The figures themselves are the script's to print (docs/performance.md), not this test's to judge."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy.readme_script import ROOT


def test_the_status_benchmark_runs_and_its_burst_converges():
    run = subprocess.run([sys.executable, "bench/status.py", "--requests", "50", "--changes", "3", "--burst", "60"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1].rstrip(" |")
            for line in run.stdout.splitlines() if line.startswith("| ") and " | " in line}
    assert rows["Stripe calls / DynamoDB calls per warm status request"] == "0 / 1"
    assert rows["Burst: customers whose projection equals the stand-in's records"] == "50 of 50"
    emitted, attempts, applied = (int(n) for n in rows[
        "Burst: events emitted / delivery attempts / events applied"].split(" / "))
    assert emitted >= 60 and applied == emitted and attempts >= emitted
    assert "ms" in rows["Webhook to visible status, p50 / p95 / max (3 changes)"]

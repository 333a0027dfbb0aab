"""`make bench-purchases` runs: bench/purchases.py, at a small size, prints its table, and its scenario matrix ends
with no purchase shown to the wrong user, none lost, no second subscription from a double click, one customer
holding each user's purchases; a warm checkout request makes no AWS call. The figures are the script's to print
(docs/performance.md), not this test's to judge."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy.readme_script import ROOT


def test_the_purchases_benchmark_runs_and_its_matrix_holds():
    run = subprocess.run([sys.executable, "bench/purchases.py", "--rounds", "1", "--requests", "10"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1].rstrip(" |")
            for line in run.stdout.splitlines() if line.startswith("| ") and " | " in line}
    scenarios, users, purchases = (int(n) for n in rows[
        "Scenarios run / users / purchases meant for a user"].split(" / "))
    assert scenarios == 7 and purchases == 7 and users == 8
    assert rows["Purchases shown to the wrong user"] == "0"
    assert rows["Purchases lost to their buyer"] == "0"
    assert rows["Subscriptions beyond one per double click (1 double clicks)"] == "0"
    assert rows["Most customers holding one user's purchases"] == "1"
    assert rows["Stripe calls / AWS calls per warm checkout request"] == "1 / 0"  # what a warm portal click costs

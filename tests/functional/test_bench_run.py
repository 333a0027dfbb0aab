"""`make bench` runs: bench/run.py, at a small size, builds both artifacts, prints its tables, and its rows say
what the design promises: a returning user's warm request makes one Stripe call and no AWS call, the first
request after a cold start adds only the user's mapping read, and init reports its steps (the key and JWKS
fetched, the first requests rehearsed). The script itself refuses to print figures for cold starts of ours that
loaded a heavy client (urllib3, boto3, stripe, ...), by the function or by its own harness. The figures themselves
are the script's to print (docs/performance.md), not this test's to judge."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.deploy.readme_script import ROOT


def rows_of(table_output: str) -> dict[str, list[str]]:
    rows = {}
    for line in table_output.splitlines():
        if line.startswith("| ") and " | " in line:
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_benchmark_runs_and_its_rows_hold_the_designs_call_counts():
    run = subprocess.run([sys.executable, "bench/run.py", "--runs", "1", "--requests", "20", "--memory-sizes", "256",
                          "--stripe-latency-ms", "5", "--aws-latency-ms", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = rows_of(run.stdout)
    assert rows["Outbound calls, returning user (warm)"][0] == "1 Stripe, 0 AWS, 0 JWKS"
    assert rows["Outbound calls, returning user, first request (cold)"][0] == "1 Stripe, 1 AWS, 0 JWKS"
    assert rows["Outbound calls, returning user, status check due (once a minute)"][0] == "1 Stripe, 1 AWS, 0 JWKS"
    assert rows["of which rehearsing a portal and a status request (init)"][0].endswith(" ms")
    assert rows["of which fetching the JWKS and the key, connecting (init)"][0].endswith(" ms")
    assert "Warm in-process overhead p50, each request after 100 ms idle (15 requests)" in rows
    assert rows["without the init rehearsal (INIT_REHEARSAL=false)"][0].endswith(" ms")
    # Traced as deployed (active tracing, the request sampled): its subsegments reached the daemon.
    traced = rows["Cold start traced: X-Ray sampled, a subsegment sent per outbound call (median)"]
    assert traced[0].endswith(" ms") and re.fullmatch(r"[+-]\d+\.\d% against untraced", traced[2]), traced
    assert int(rows["subsegments the daemon received, all traced processes"][0]) >= 2  # Stripe and the table
    # The first request is set against warm requests of the same processes, and beside another user's first
    # request served right after it (the same mapping read, none of the cold start).
    paired = rows["against the same processes' warm requests back to back (median of per-process ratios)"][0]
    assert re.fullmatch(r"\d+\.\dx their \d+\.\d\d ms", paired), paired
    assert rows["another returning user's first request right after it, same processes"][0].endswith(" ms")
    # ... and as deployed, where every request waits for Stripe (here 5 ms), warm ones too.
    as_deployed = (r"Stripe answering in 5 ms, so that every request waits for it .*: "
                   r"the first request's own time \d+\.\d\d ms, \d+\.\dx the same processes' warm requests")
    assert re.search(as_deployed, run.stdout) or "skipped" in rows["256 MB"][1]
    share = rows["256 MB"]  # one row per model; cgroups need root: without, the row says why it was skipped
    assert "the same processes' warm requests back to back" in share[4] or share[1].startswith("skipped"), share

"""`make bench` sets CPU quotas with cgroups; a run must leave none behind on the machine, however it ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GROUP = Path("/sys/fs/cgroup/cpu/spg-bench-333")


@pytest.mark.parametrize("ending", ["normal", "exception"])
def test_the_bench_removes_its_cpu_cgroup_when_it_ends(ending):
    script = ("import sys; sys.argv = ['run.py']; import run; group, reason = run.cpu_cgroup(333); "
              "print(group or reason, flush=True)" + ("; raise SystemExit(3)" if ending == "exception" else ""))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT / "bench", capture_output=True, text=True,  # noqa: S603
                          timeout=60)
    if "skipped" in done.stdout:
        pytest.skip(done.stdout.strip())  # not root, or no cgroup v1 CPU controller: nothing is ever created
    assert done.stdout.strip() == str(GROUP)  # it was created
    assert not GROUP.exists(), "the CPU cgroup was left behind"

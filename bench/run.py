"""Benchmark: the service beside a naive baseline, measured in one run on this machine. Prints a markdown table.

    make bench        (or: .venv/bin/python bench/run.py [--runs 7] [--requests 1000])

Both handlers are imported from artifacts laid out as `sam build` lays them out (layer under python/,
compiled bytecode, the function's own folder), built here for this machine's architecture. The Stripe
stand-in answers at zero added latency; AWS is moto. Every figure comes from a fresh child process.
"""

from __future__ import annotations

import argparse
import atexit
import compileall
import functools
import json
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "bench" / ".build"
LAYERS = {"ours": BUILD / "layer" / "python", "baseline": BUILD / "baseline-layer" / "python"}
REQUIREMENTS = {"ours": ROOT / "layers/core/requirements.txt", "baseline": ROOT / "bench/baseline/requirements.txt"}
FUNCTIONS = {"ours": BUILD / "portal", "baseline": BUILD / "baseline"}


# --- artifacts ----------------------------------------------------------------------------------------------
def build_artifacts() -> None:
    """pip-install each layer's pinned requirements for this machine, add our package, compile bytecode."""
    for impl, layer in LAYERS.items():
        stamp = layer.parent / ".requirements"
        requirements = REQUIREMENTS[impl].read_text()
        if not stamp.exists() or stamp.read_text() != requirements:
            shutil.rmtree(layer.parent, ignore_errors=True)
            layer.mkdir(parents=True)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(layer),
                            "-r", str(REQUIREMENTS[impl])], check=True)
            stamp.write_text(requirements)
    shutil.rmtree(LAYERS["ours"] / "portal_gateway", ignore_errors=True)
    shutil.copytree(ROOT / "layers/core/portal_gateway", LAYERS["ours"] / "portal_gateway",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name, source in (("ours", ROOT / "functions/portal"), ("baseline", ROOT / "bench/baseline")):
        shutil.rmtree(FUNCTIONS[name], ignore_errors=True)
        shutil.copytree(source, FUNCTIONS[name], ignore=shutil.ignore_patterns("__pycache__", "requirements.txt"))
    for folder in (*LAYERS.values(), *FUNCTIONS.values()):  # as the build Makefiles compile them
        compileall.compile_dir(str(folder), quiet=1, workers=0,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def zipped_size(path: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(shutil.make_archive(f"{tmp}/artifact", "zip", path)).stat().st_size


# --- the child: one fresh "execution environment" -------------------------------------------------------------
CHILD = r'''
import json, os, resource, sys, time
started = time.perf_counter()
impl, layer, function, plan_path = sys.argv[1:5]
sys.path[:0] = [function, layer]
plan = json.load(open(plan_path))

# Count and time outbound calls at the HTTP layer both stacks share: http.client, under urllib3 (stripe's
# requests, botocore) and urllib (PyJWKClient) as under our pool. Installed after the timer started, before any
# import; it imports no library the function does not (urllib3 alone costs tens of milliseconds to import, which
# a function that never imports it must not be charged).
import http.client
outbound = {"stripe": 0, "aws": 0, "jwks": 0, "seconds": 0.0}
def kind_of(port, url):
    return "stripe" if port == plan["stripe_port"] else ("jwks" if "jwks" in url else "aws")
original_putrequest = http.client.HTTPConnection.putrequest
def counted_putrequest(self, method, url, *args, **kwargs):  # every request's first line, whoever sends it
    outbound[kind_of(self.port, url)] += 1
    return original_putrequest(self, method, url, *args, **kwargs)
original_getresponse = http.client.HTTPConnection.getresponse
def timed_getresponse(self, *args, **kwargs):
    t = time.perf_counter()
    try:
        return original_getresponse(self, *args, **kwargs)
    finally:
        outbound["seconds"] += time.perf_counter() - t
http.client.HTTPConnection.putrequest = counted_putrequest
http.client.HTTPConnection.getresponse = timed_getresponse

import importlib.util, uuid
spec = importlib.util.spec_from_file_location("app", os.path.join(function, "app.py"))
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)
imported = time.perf_counter()
if plan.get("on_demand_quota"):
    # On-demand Lambda: init ran unthrottled; the invocation runs at the memory size's CPU share. The process has
    # been in its cgroup from the start, without a quota: only the quota changes now (moving a process into a
    # cgroup costs its next few hundred microseconds, a cost of the model, not of Lambda).
    with open(plan["on_demand_quota"]["file"], "w") as quota:
        quota.write(str(plan["on_demand_quota"]["quota_us"]))

class Context:
    function_name = "bench"; memory_limit_in_mb = 256; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    def get_remaining_time_in_millis(self): return 15000

def event(token):
    return {"version": "2.0", "routeKey": "GET /portal", "rawPath": "/portal", "rawQueryString": "",
            "headers": {"authorization": "Bearer " + token, "accept": "text/html"},
            "requestContext": {"http": {"method": "GET", "path": "/portal", "sourceIp": "127.0.0.1"},
                               "requestId": str(uuid.uuid4()), "stage": "$default"}, "isBase64Encoded": False}

def call(token):
    """One request: its total time, its outbound calls, and its own time (the total less the time waiting for
    answers)."""
    before = dict(outbound)
    t = time.perf_counter()
    result = app.lambda_handler(event(token), Context())
    total = time.perf_counter() - t
    assert result["statusCode"] == 302, result
    calls = {k: outbound[k] - before[k] for k in outbound}
    return total, calls, total - calls["seconds"]

if os.environ.get("BENCH_PROFILE"):
    import cProfile, pstats
    profiler = cProfile.Profile(); profiler.enable()
first_total, first_calls, first_own = call(plan["returning_token"])
if os.environ.get("BENCH_PROFILE"):
    profiler.disable()
    lines = int(os.environ.get("BENCH_PROFILE_LINES", "30"))
    order = os.environ.get("BENCH_PROFILE_SORT", "tottime")
    # In microseconds: a first request takes a few milliseconds, below pstats' own resolution (1 ms).
    rows = pstats.Stats(profiler).stats.items()
    column = {"tottime": 2, "cumtime": 3}.get(order, 2)
    print(f"{'own us':>9} {'cum us':>9} {'calls':>7}  function", file=sys.stderr)
    for (path, line, name), stat in sorted(rows, key=lambda row: -row[1][column])[:lines]:
        where = f"{path.split('/python/')[-1]}:{line}({name})" if line else name
        print(f"{stat[2] * 1e6:9.0f} {stat[3] * 1e6:9.0f} {stat[1]:7d}  {where}", file=sys.stderr)
    callers_of = os.environ.get("BENCH_PROFILE_CALLERS")  # e.g. "_abc_subclasscheck": who calls it, and how long
    if callers_of:
        for (path, line, name), stat in rows:
            if callers_of in name:
                for (cpath, cline, cname), cstat in sorted(stat[4].items(), key=lambda c: -c[1][3])[:15]:
                    print(f"  called by {cpath.split('/python/')[-1]}:{cline}({cname}) {cstat[3] * 1e6:.0f} us",
                          file=sys.stderr)
report = {"import_s": imported - started, "first_request_s": first_total, "cold_s": time.perf_counter() - started,
          "first_calls": first_calls, "first_overhead_s": first_own}
report["init_steps"] = getattr(app, "INIT_SECONDS", {})  # the function's own init steps (ours only)
if plan["mode"] == "cold" and plan.get("second_token"):
    # Right after the first request, another returning user's first request in this environment: what a request
    # costs that is new to the environment but not its first (the same mapping read, none of the cold start).
    report["second_own_s"] = call(plan["second_token"])[2]
if plan["mode"] == "cold" and plan.get("warm_after"):
    # Then the first user's warm requests, back to back in the same process: the first request's own yardstick.
    report["warm_after_owns"] = [call(plan["returning_token"])[2] for _ in range(plan["warm_after"])]
if plan["mode"] == "warm":
    totals, overheads = [], []
    for _ in range(plan["requests"]):
        total, _, own = call(plan["returning_token"])
        totals.append(total); overheads.append(own)
    paused_overheads = []
    for _ in range(plan.get("paused_requests", 0)):
        # A warm request as a billing link's requests come: after a pause (Lambda also freezes the environment
        # between invocations), not back to back.
        time.sleep(plan["pause_s"])
        paused_overheads.append(call(plan["returning_token"])[2])
    report["paused_overheads"] = paused_overheads
    _, returning, _ = call(plan["returning_token"])
    _, new, _ = call(plan["new_token"])
    report.update(totals=totals, overheads=overheads, returning_calls=returning, new_calls=new)
    service = app.portal_service() if hasattr(app, "portal_service") else None
    if service is not None and getattr(service, "users", None) is not None:
        service.users.clear()  # as if the last status answer were over a minute old (CHECK_USER_STATUS) ...
        service.users._wall_clock = lambda: time.time() + 61  # ... and the token too (a fresh one needs no check)
        _, report["status_due_calls"], _ = call(plan["returning_token"])
report["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# Heavy clients our function does without; loaded in its process, they would be charged to its cold start. (The
# botocore package itself is imported by Powertools, as in Lambda's runtime; its client machinery is not.)
report["heavy_clients_loaded"] = sorted(name for name in ("boto3", "botocore.client", "urllib3", "requests", "stripe",
                                                          "jwt") if name in sys.modules)
report["layer_modules"] = sorted({name.split(".")[0] for name, module in list(sys.modules.items())
                                  if (getattr(module, "__file__", None) or "").startswith(layer)})
print(json.dumps(report))
'''


def _write_plan(plan: dict) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(plan, handle)
    return handle.name


FUNCTION_CPU: int | None = None  # set by pin_processes()


def pin_processes() -> str:
    """Give the function processes a CPU of their own and leave the others to this process, its stand-ins and moto.
    In Lambda, AWS and Stripe answer from other machines; on a small box moto's work after each answer (it goes on
    after the response is sent) would otherwise take the function's CPU and be counted as the function's own
    time. Returns what was done, for the report."""
    global FUNCTION_CPU
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "not pinned (one CPU)"
    FUNCTION_CPU = cpus[-1]
    os.sched_setaffinity(0, cpus[:-1])  # threads and processes started from here on inherit it
    return f"function processes on CPU {FUNCTION_CPU}, stand-ins and moto on the other{'s' if len(cpus) > 2 else ''}"


def enter_function_cpu() -> None:
    if FUNCTION_CPU is not None:
        os.sched_setaffinity(0, {FUNCTION_CPU})


def run_child(impl: str, plan: dict, env: dict, cgroup: Path | None = None, *, on_demand: bool = False) -> dict:
    """One fresh process on the function CPU, in `cgroup` if given (the stand-ins, moto and this process stay
    outside it): under its CPU quota from the first instruction, or with `on_demand` from the first invocation."""
    if on_demand:
        plan = on_demand_plan(plan, cgroup)
    plan_path = _write_plan(plan)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, impl, str(LAYERS[impl]), str(FUNCTIONS[impl]), plan_path],
                         env=env, capture_output=True, text=True, check=False,
                         preexec_fn=lambda: enter_function_process(cgroup, throttled=not on_demand))
    wall = time.perf_counter() - started
    os.unlink(plan_path)
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"import_s"')]
    if out.returncode or not lines:
        raise SystemExit(f"{impl} child failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return {**json.loads(lines[-1]), "wall_s": wall}


# Warm requests are measured back to back (the loop) and, as a billing link's requests come, each after a pause.
PAUSED = {"paused_requests": 15, "pause_s": 0.1}
WARM_AFTER = 50  # warm requests a cold-start process serves after its first, to set the first against
WARM_AFTER_SLOW_STRIPE = 10  # the same, when each waits for a Stripe answering at its typical latency
LAMBDA_FULL_VCPU_MB = 1769  # Lambda gives a function memory/1769 MB of one vCPU
ARM64_GB_SECOND, REQUEST_PRICE = 0.0000133334, 0.20 / 1e6  # us-east-1 list prices (scripts/cost.py)


CREATED_CGROUPS: list[Path] = []


@atexit.register
def remove_cgroups() -> None:
    """Leave no CPU cgroup behind on the machine, however the run ends: any process still in one goes back to
    the root group first (a cgroup with tasks cannot be removed)."""
    while CREATED_CGROUPS:
        group = CREATED_CGROUPS.pop()
        try:
            for pid in (group / "tasks").read_text().split():
                try:
                    (group.parent / "tasks").write_text(pid)
                except OSError:
                    pass  # it ended meanwhile
            group.rmdir()
        except OSError as exc:
            print(f"bench: could not remove {group}: {exc.strerror}", file=sys.stderr)


QUOTAS: dict[Path, int] = {}  # each cgroup's CPU quota (us per 100 ms period)


def enter_function_process(cgroup: Path | None, *, throttled: bool) -> None:
    """In the child between fork and exec: onto the function CPU, and into `cgroup`, throttled or (to be throttled
    by the child itself, on-demand model) not yet. Children run one at a time, so each sets its group's quota."""
    enter_function_cpu()
    if cgroup is not None:
        (cgroup / "cpu.cfs_quota_us").write_text(str(QUOTAS[cgroup] if throttled else -1))
        (cgroup / "tasks").write_text(str(os.getpid()))


def on_demand_plan(plan: dict, cgroup: Path) -> dict:
    return {**plan, "on_demand_quota": {"file": str(cgroup / "cpu.cfs_quota_us"), "quota_us": QUOTAS[cgroup]}}


def cpu_cgroup(memory_mb: int) -> tuple[Path | None, str]:
    """A cgroup v1 CPU quota equal to Lambda's share for `memory_mb`, or None and the reason it cannot be set."""
    base = Path("/sys/fs/cgroup/cpu")
    if os.geteuid() != 0:
        return None, "skipped: setting a CPU quota needs root"
    if not (base / "cpu.cfs_quota_us").exists():
        return None, "skipped: no cgroup v1 CPU controller at /sys/fs/cgroup/cpu"
    group = base / f"spg-bench-{memory_mb}"
    try:
        group.mkdir(exist_ok=True)
        if group not in CREATED_CGROUPS:
            CREATED_CGROUPS.append(group)
        (group / "cpu.cfs_period_us").write_text("100000")
        QUOTAS[group] = round(100000 * memory_mb / LAMBDA_FULL_VCPU_MB)
        (group / "cpu.cfs_quota_us").write_text(str(QUOTAS[group]))
    except OSError as exc:
        return None, f"skipped: cannot set a CPU quota ({exc.strerror})"
    return group, ""


BOTO3_ALONE = r"""
import time
t = time.perf_counter()
import boto3
boto3.client("secretsmanager", region_name="us-east-1"); boto3.client("dynamodb", region_name="us-east-1")
print(time.perf_counter() - t)
"""


def boto3_alone(cgroup: Path | None, runs: int) -> float:
    """What importing boto3 and creating the two clients the portal would need costs (median of `runs` processes)."""
    seconds = [float(subprocess.run([sys.executable, "-c", BOTO3_ALONE], capture_output=True, text=True, check=True,
                                    preexec_fn=lambda: enter_function_process(cgroup, throttled=True)).stdout)
               for _ in range(runs)]
    return statistics.median(seconds)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# --- the run -------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="cold starts per handler (median reported)")
    parser.add_argument("--requests", type=int, default=1000, help="warm requests per handler")
    parser.add_argument("--profile", action="store_true", help="print where our first request spends its time")
    parser.add_argument("--stripe-latency-ms", type=float, default=150,
                        help="Stripe latency for the extra cold-start rows (typical API latency; 0 to skip)")
    parser.add_argument("--memory-sizes", default="256,512,1024,1769",
                        help="Lambda memory sizes whose CPU share the cold-start rows run under (empty to skip)")
    parser.add_argument("--chosen-memory", type=int, default=256, help="the template's MemorySize")
    parser.add_argument("--cost-stripe-ms", type=float, default=150, help="Stripe latency billed per request")
    parser.add_argument("--cost-cold-share", type=float, default=0.05, help="share of requests that start cold")
    parser.add_argument("--aws-latency-ms", type=float, default=20,
                        help="AWS and JWKS latency per call for the last cold-start row (0 to skip)")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
    pinning = pin_processes()  # before any stand-in starts: they inherit the other CPUs
    from devstack.aws_standin import MotoServer, provision
    from devstack.fault_proxy import FaultProxy
    from devstack.stripe_standin import StripeStandin, fake_key

    print("building artifacts ...", file=sys.stderr)
    build_artifacts()
    moto = MotoServer()
    stripe = StripeStandin().start()
    key = stripe.add_key(fake_key())
    stripe.create_default_portal_configuration()
    stack = provision(moto, stripe_key=key)
    env = {**os.environ, **stack.service_env(stripe_api_base=stripe.base_url, return_url="https://shop.example.com/"),
           "POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    aws_proxy = FaultProxy(moto.endpoint)
    env_via_proxy = {name: value.replace(moto.endpoint, aws_proxy.url) for name, value in env.items()}
    stripe_port = int(stripe.base_url.rsplit(":", 1)[1])

    def token(name: str) -> str:
        stack.add_user(name, "Bench-Password-1", email=f"{name}@example.com")
        return stack.sign_in(name, "Bench-Password-1")["IdToken"]

    if args.profile:
        # The first request of an on-demand cold start, at the chosen memory size's CPU share when it can be set:
        # what it still does on its own CPU (by own time), after init did everything that does not need the caller.
        plan = {"mode": "cold", "returning_token": token("profile"), "stripe_port": stripe_port, "requests": 1}
        run_child("ours", {**plan, "mode": "warm", "new_token": token("profile-new")}, env)
        cgroup, reason = cpu_cgroup(args.chosen_memory)
        if cgroup is not None:
            plan = on_demand_plan(plan, cgroup)
        print(f"first request, on-demand model at {args.chosen_memory} MB's CPU share" if cgroup else
              f"first request at full CPU ({reason})")
        # AWS through the keep-alive proxy, as in the tables: moto closes every connection, AWS endpoints do not.
        out = subprocess.run([sys.executable, "-c", CHILD, "ours", str(LAYERS["ours"]), str(FUNCTIONS["ours"]),
                              _write_plan(plan)], env={**env_via_proxy, "BENCH_PROFILE": "1"}, capture_output=True,
                             text=True, preexec_fn=lambda: enter_function_process(cgroup, throttled=False))
        print(out.stderr[-8000:])
        return 0

    def sign_in(name: str) -> str:  # a fresh token for a user added before
        return stack.sign_in(name, "Bench-Password-1")["IdToken"]

    plans, users = {}, {}
    for impl in ("ours", "baseline"):
        plans[impl], users[impl] = returning_users(impl, impl, token, env, stripe_port, args.requests)

    def colds_in_turn(variants: dict[str, tuple[str, dict]], runs: int, *, paired: bool = False) -> dict[str, list]:
        """Cold starts at full CPU; with `paired`, ours also serves another user's first request and warm requests
        after its first (the figures the first request is set against)."""
        return interleaved({name: functools.partial(
            cold_start, impl, plans[impl], users[impl], sign_in, child_env, None, "full CPU",
            WARM_AFTER if paired and impl == "ours" else 0) for name, (impl, child_env) in variants.items()}, runs)

    print("cold starts ...", file=sys.stderr)
    # Traced: Lambda sampled the request (its trace header), and every outbound call sends its X-Ray subsegment to a
    # daemon (here a UDP socket of this process, which counts them), as under the template's active tracing.
    daemon = XrayDaemon()
    traced_env = {**env, "_X_AMZN_TRACE_ID": "Root=1-6751d2c0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;"
                                             "Sampled=1", "AWS_XRAY_DAEMON_ADDRESS": daemon.address}
    colds = colds_in_turn({"ours": ("ours", env), "baseline": ("baseline", env),
                           "unrehearsed": ("ours", {**env, "INIT_REHEARSAL": "false"}),
                           "traced": ("ours", traced_env)}, args.runs, paired=True)
    results: dict[str, dict] = {"ours": {"colds": colds["ours"], "unrehearsed_colds": colds["unrehearsed"],
                                         "traced_colds": colds["traced"]},
                                "baseline": {"colds": colds["baseline"]}}
    subsegments_sent = daemon.close()
    loaded = {name for cold in colds["ours"] for name in cold["heavy_clients_loaded"]}
    if loaded:  # by the function or by this harness: either way our cold-start figures would not be ours
        raise SystemExit(f"bench: our cold starts loaded {', '.join(sorted(loaded))}, which the function does without")
    for impl in results:
        print(f"warm requests ({impl}) ...", file=sys.stderr)
        results[impl]["warm"] = run_child(impl, {**plans[impl], "mode": "warm", "new_token": token(f"{impl}-new"),
                                                 **PAUSED}, env)
    if args.stripe_latency_ms:
        stripe.latency = args.stripe_latency_ms / 1000
        slow_runs = max(3, args.runs // 2)
        for impl, slow in colds_in_turn({impl: (impl, env) for impl in results}, slow_runs).items():
            results[impl]["slow_colds"] = slow
        if args.aws_latency_ms:
            # Every AWS and JWKS request through a proxy that adds a round trip's worth of latency.
            aws_proxy.latency = args.aws_latency_ms / 1000
            for impl, slow in colds_in_turn({impl: (impl, env_via_proxy) for impl in results}, slow_runs).items():
                results[impl]["slow_aws_colds"] = slow
            aws_proxy.latency = 0.0
        stripe.latency = 0.0

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms"

    ours, base = results["ours"], results["baseline"]
    cold_ours = statistics.median(c["cold_s"] for c in ours["colds"])
    cold_base = statistics.median(c["cold_s"] for c in base["colds"])
    wall_ours = statistics.median(c["wall_s"] for c in ours["colds"])
    wall_base = statistics.median(c["wall_s"] for c in base["colds"])

    def calls(impl: str, which: str, where: str = "warm") -> str:
        report = results[impl][where] if where == "warm" else results[impl]["colds"][0]
        counted = report.get(f"{which}_calls")
        if counted is None:
            return "n/a"
        return f"{counted['stripe']} Stripe, {counted['aws']} AWS, {counted['jwks']} JWKS"

    rows = [
        (f"Cold start: import + first request (median of {args.runs})", ms(cold_ours), ms(cold_base),
         f"{cold_ours / cold_base:.2f}x"),
        ("Cold start: whole process incl. interpreter", ms(wall_ours), ms(wall_base), f"{wall_ours / wall_base:.2f}x"),
        ("  of which importing the handler", ms(statistics.median(c["import_s"] for c in ours["colds"])),
         ms(statistics.median(c["import_s"] for c in base["colds"])), ""),
    ]
    for step, label in (("warm_up", "fetching the JWKS and the key, connecting"),
                        ("first_request_rehearsal", "rehearsing a portal and a status request")):
        if all(step in c["init_steps"] for c in ours["colds"]):
            rows.append((f"    of which {label} (init)",
                         ms(statistics.median(c["init_steps"][step] for c in ours["colds"])), "", ""))
    own = {impl: statistics.median(c["first_overhead_s"] for c in results[impl]["colds"]) for impl in results}
    paired = paired_with_warm(ours["colds"])
    rows += [
        ("First request's own time (excl. outbound I/O), median", f"{own['ours'] * 1000:.2f} ms",
         f"{own['baseline'] * 1000:.2f} ms", ""),
        ("  against the same processes' warm requests back to back (median of per-process ratios)",
         f"{paired['first_to_warm']:.1f}x their {paired['warm_after_own'] * 1000:.2f} ms", "", ""),
        ("  another returning user's first request right after it, same processes",
         f"{paired['second_own'] * 1000:.2f} ms", "", ""),
        ("  without the init rehearsal (INIT_REHEARSAL=false)",
         f"{statistics.median(c['first_overhead_s'] for c in ours['unrehearsed_colds']) * 1000:.2f} ms", "", ""),
        ("  import + first request without the init rehearsal",
         ms(statistics.median(c["cold_s"] for c in ours["unrehearsed_colds"])), "", ""),
    ]
    cold_traced = statistics.median(c["cold_s"] for c in ours["traced_colds"])
    rows += [
        ("Cold start traced: X-Ray sampled, a subsegment sent per outbound call (median)", ms(cold_traced), "",
         f"{(cold_traced / cold_ours - 1) * 100:+.1f}% against untraced"),
        ("  first request's own time, traced",
         f"{statistics.median(c['first_overhead_s'] for c in ours['traced_colds']) * 1000:.2f} ms", "", ""),
        ("  subsegments the daemon received, all traced processes", f"{subsegments_sent}", "", ""),
    ]
    if args.stripe_latency_ms:
        slow_ours = statistics.median(c["cold_s"] for c in ours["slow_colds"])
        slow_base = statistics.median(c["cold_s"] for c in base["slow_colds"])
        rows.append((f"Cold start, Stripe answering in {args.stripe_latency_ms:.0f} ms (returning user)",
                     ms(slow_ours), ms(slow_base), f"{slow_ours / slow_base:.2f}x"))
        if args.aws_latency_ms:
            slow_ours = statistics.median(c["cold_s"] for c in ours["slow_aws_colds"])
            slow_base = statistics.median(c["cold_s"] for c in base["slow_aws_colds"])
            rows.append((f"Cold start, Stripe {args.stripe_latency_ms:.0f} ms and AWS/JWKS "
                         f"{args.aws_latency_ms:.0f} ms per call (returning user)",
                         ms(slow_ours), ms(slow_base), f"{slow_ours / slow_base:.2f}x"))
    rows += [
        ("Warm request, total p50", ms(statistics.median(ours["warm"]["totals"])),
         ms(statistics.median(base["warm"]["totals"])), ""),
        ("Warm request, total p99", ms(percentile(ours["warm"]["totals"], 99)),
         ms(percentile(base["warm"]["totals"], 99)), ""),
        ("Warm in-process overhead p50 (excl. outbound I/O)", ms(statistics.median(ours["warm"]["overheads"])),
         ms(statistics.median(base["warm"]["overheads"])), ""),
        ("Warm in-process overhead p99", ms(percentile(ours["warm"]["overheads"], 99)),
         ms(percentile(base["warm"]["overheads"], 99)), ""),
        (f"Warm in-process overhead p50, each request after {PAUSED['pause_s'] * 1000:.0f} ms idle "
         f"({PAUSED['paused_requests']} requests)", ms(statistics.median(ours["warm"]["paused_overheads"])),
         ms(statistics.median(base["warm"]["paused_overheads"])), ""),
        ("Outbound calls, returning user (warm)", calls("ours", "returning"), calls("baseline", "returning"), ""),
        ("Outbound calls, returning user, first request (cold)", calls("ours", "first", "cold"),
         calls("baseline", "first", "cold"), ""),
        ("Outbound calls, returning user, status check due (once a minute)", calls("ours", "status_due"),
         calls("baseline", "status_due"), ""),
        ("Outbound calls, new user (warm)", calls("ours", "new"), calls("baseline", "new"), ""),
        (f"Peak RSS after {args.requests} warm requests", f"{ours['warm']['max_rss_kb'] / 1024:.0f} MB",
         f"{base['warm']['max_rss_kb'] / 1024:.0f} MB", ""),
    ]
    sam_layer = ROOT / ".aws-sam/build/CoreLayer"
    sam_function = ROOT / ".aws-sam/build/PortalFunction"
    if sam_layer.is_dir():
        rows.append(("Built layer (sam build, arm64): unzipped / zipped",
                     f"{directory_size(sam_layer) / 2**20:.1f} MB / {zipped_size(sam_layer) / 2**20:.1f} MB", "", ""))
        rows.append(("Built function (sam build)", f"{directory_size(sam_function) / 1024:.0f} KB unzipped", "", ""))
    print(f"\nMeasured {time.strftime('%Y-%m-%d')} on {os.uname().machine}, Python {sys.version.split()[0]}, "
          f"{args.requests} warm requests, Stripe stand-in at zero latency unless a row says otherwise, "
          f"moto for AWS; {pinning}.\n")
    print("| Measure | Ours | Naive baseline | Ours / baseline |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if sam_layer.is_dir():
        layer_table(sam_layer / "python", ours["warm"]["layer_modules"])
    if args.memory_sizes:
        # AWS through the keep-alive proxy: moto closes every connection, which AWS endpoints do not.
        cpu_share_tables(args, token, sign_in, stripe, env_via_proxy)
    stripe.close()
    aws_proxy.close()
    moto.stop()
    return 0


def layer_table(layer: Path, imported: list[str]) -> None:
    """What the built layer ships, and which of it a portal request (new and returning users) imports."""
    sizes: dict[str, int] = {}
    for entry in layer.iterdir():
        if entry.name.endswith(".dist-info") or entry.name == "__pycache__":
            continue
        name = entry.name.split(".")[0]
        sizes[name] = sizes.get(name, 0) + (directory_size(entry) if entry.is_dir() else entry.stat().st_size)
    print("\n| Layer package (sam build) | Size | Imported by a portal request |")
    print("|---|---|---|")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        used = "yes" if name in imported else ("only with Hosted UI sign-in" if name in ("cryptography", "cffi",
                                                                                         "_cffi_backend", "pycparser")
                                              else "no")
        print(f"| {name} | {size / 2**20:.1f} MB | {used} |")


MODELS = {
    "on-demand": "init unthrottled, then the process's CPU quota set for the first invocation (on-demand "
                 "Lambda: init gets a full vCPU for up to 10 s)",
    "throttled": "under the CPU quota from the first instruction (provisioned concurrency gets no init burst; "
                 "also a conservative bound)",
}


class XrayDaemon:
    """A UDP socket where the X-Ray daemon would listen; counts the subsegments the traced processes send."""

    def __init__(self):
        import socket
        import threading

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.received, self._open = 0, True
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while self._open:
            try:
                message = self._socket.recv(65536)
            except TimeoutError:
                continue
            if message.startswith(b'{"format":"json","version":1}\n'):
                self.received += 1

    def close(self) -> int:
        time.sleep(0.3)
        self._open = False
        self._thread.join()
        self._socket.close()
        return self.received


def interleaved(runs_of: dict[str, Callable[[], dict]], runs: int) -> dict[str, list[dict]]:
    """`runs` cold starts of each variant, taken in turn (ours, the baseline, ...) rather than all of one and then
    all of the next: a shared VM's speed drifts by tens of percent within minutes, and taken in turn the drift
    falls on every variant alike, so the ratios between them hold. Each round starts one variant further on: the
    place in a round matters too (here a process started right after one of ours measured 20-30 ms slower to
    import than one started right after the baseline's), and rotating gives every variant every place."""
    names = list(runs_of)
    colds: dict[str, list[dict]] = {name: [] for name in names}
    for round_number in range(runs):
        start = round_number % len(names)
        for name in names[start:] + names[:start]:
            colds[name].append(runs_of[name]())
    return colds


def returning_users(impl: str, prefix: str, token: Callable[[str], str], env: dict, stripe_port: int,
                    requests: int) -> tuple[dict, dict[str, str]]:
    """Two users of `impl`, both returning users (one warm run serves the first and signs the second up), and the
    plan of a cold start for the first: (plan, users), users naming each token's user (plan key -> user name)."""
    returning, second = f"{prefix}-returning", f"{prefix}-second"
    plan = {"mode": "cold", "returning_token": token(returning), "stripe_port": stripe_port, "requests": requests}
    run_child(impl, {**plan, "mode": "warm", "requests": 1, "new_token": token(second)}, env)
    return plan, {"returning_token": returning, "second_token": second}


def cold_start(impl: str, plan: dict, users: dict[str, str], sign_in: Callable[[str], str], env: dict,
               cgroup: Path | None, model: str, warm_after: int) -> dict:
    """One cold start whose tokens are signed just before it, so that every first request takes the same path (a
    token under a minute old needs no status check). With `warm_after`, the process then serves the second user's
    first request and that many warm requests of the first user (the figures the first request is set against)."""
    tokens = {"returning_token": sign_in(users["returning_token"])}
    if warm_after:
        tokens.update(second_token=sign_in(users["second_token"]), warm_after=warm_after)
    return run_child(impl, {**plan, **tokens}, env, cgroup, on_demand=model == "on-demand")


def summary_of(colds: list[dict]) -> dict:
    """Medians over fresh processes, with init and the first request apart, as Lambda's REPORT line gives them
    (Init Duration, Duration)."""
    result = {name: statistics.median(c[key] for c in colds) for name, key in (
        ("init", "import_s"), ("first", "first_request_s"), ("first_own", "first_overhead_s"), ("cold", "cold_s"),
        ("wall", "wall_s"))}
    result.update(paired_with_warm(colds))
    return result


def paired_with_warm(colds: list[dict]) -> dict:
    """The first request's own time against warm requests of the same processes: the median over processes of
    (first / that process's median warm), which a run-to-run drift of the machine does not move as it moves two
    figures measured apart."""
    paired = [c for c in colds if c.get("warm_after_owns")]
    if not paired:
        return {}
    return {"first_to_warm": statistics.median(c["first_overhead_s"] / statistics.median(c["warm_after_owns"])
                                               for c in paired),
            "warm_after_own": statistics.median(statistics.median(c["warm_after_owns"]) for c in paired),
            "second_own": statistics.median(c["second_own_s"] for c in paired if "second_own_s" in c)}


def cpu_share_tables(args, token, sign_in, stripe, env: dict) -> None:
    """Cold starts under both models and warm requests at Lambda's CPU share for each memory size; cost per million
    requests from the measured durations (init billed, as for on-demand functions)."""
    sizes = [int(size) for size in args.memory_sizes.split(",") if size.strip()]
    rows = {model: [] for model in MODELS}
    measured, prepared = {}, {}
    stripe_port = int(stripe.base_url.rsplit(":", 1)[1])
    for memory in sizes:
        cgroup, reason = cpu_cgroup(memory)
        share = f"{memory / LAMBDA_FULL_VCPU_MB:.1%}"
        if cgroup is None:
            for model in MODELS:
                rows[model].append((f"{memory} MB", share, reason, "", "", "", "", "", ""))
            continue
        print(f"cold starts at {memory} MB's CPU share ...", file=sys.stderr)
        plans, users = {}, {}
        for impl in ("ours", "baseline"):
            plans[impl], users[impl] = returning_users(impl, f"cpu{memory}-{impl}", token, env, stripe_port, 100)
        prepared[memory] = (cgroup, plans["ours"], users["ours"])
        result: dict = {impl: {} for impl in plans}
        for model in MODELS:
            colds = interleaved({impl: functools.partial(cold_start, impl, plans[impl], users[impl], sign_in, env,
                                                         cgroup, model, WARM_AFTER if impl == "ours" else 0)
                                 for impl in plans}, args.runs)
            for impl in plans:
                result[impl][model] = summary_of(colds[impl])
        for impl in plans:
            warm = run_child(impl, {**plans[impl], "mode": "warm", "new_token": token(f"cpu{memory}-{impl}-n"),
                                    **PAUSED}, env, cgroup, on_demand=True)
            result[impl]["warm"] = statistics.median(warm["totals"])
            result[impl]["warm_p99"] = percentile(warm["totals"], 99)
            result[impl]["paused_own"] = statistics.median(warm["paused_overheads"])
        measured[memory] = result
        ours, base = result["ours"], result["baseline"]
        for model in MODELS:
            o, b = ours[model], base[model]
            redirect_o, redirect_b = o["init"] + o["first"], b["init"] + b["first"]
            billed = ((1 - args.cost_cold_share) * (ours["warm"] + args.cost_stripe_ms / 1000)
                      + args.cost_cold_share * (redirect_o + args.cost_stripe_ms / 1000))
            cost = 1e6 * (REQUEST_PRICE + billed * memory / 1024 * ARM64_GB_SECOND)
            rows[model].append((
                f"{memory} MB", share, f"{o['init'] * 1000:.0f} / {b['init'] * 1000:.0f} ms",
                f"{o['first'] * 1000:.0f} / {b['first'] * 1000:.0f} ms",
                f"{redirect_o * 1000:.0f} / {redirect_b * 1000:.0f} ms ({redirect_o / redirect_b:.2f}x)",
                f"{o['first_own'] * 1000:.2f} ms: {o['first_to_warm']:.1f}x the same processes' warm requests back "
                f"to back ({o['warm_after_own'] * 1000:.2f} ms), {o['first_own'] / ours['paused_own']:.1f}x warm "
                f"after a pause ({ours['paused_own'] * 1000:.2f} ms); another user's first right after: "
                f"{o['second_own'] * 1000:.2f} ms",
                f"{ours['warm'] * 1000:.1f} / {ours['warm_p99'] * 1000:.1f} ms",
                f"{o['wall'] * 1000:.0f} / {b['wall'] * 1000:.0f} ms", f"${cost:.2f}"))
    for model, description in MODELS.items():
        print(f"\nAt Lambda's CPU share, {model} model: {description}. Memory / {LAMBDA_FULL_VCPU_MB} MB of one core "
              f"as a cgroup CPU quota on the function process only; median of {args.runs} fresh processes each. Cost "
              f"per million requests: arm64 price, each request billed for {args.cost_stripe_ms:.0f} ms of Stripe "
              f"plus the measured time, {args.cost_cold_share:.0%} of them cold (init billed).\n")
        print("| Memory | CPU share | Init, ours / baseline | First request, ours / baseline "
              "| Cold first redirect (init + first), ours / baseline "
              "| First request's own time (no I/O), ours, against a warm request's "
              "| Warm p50 / p99, ours | Whole process, ours / baseline | Cost per 1M requests, ours |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in rows[model]:
            print("| " + " | ".join(row) + " |")
    if args.chosen_memory in prepared and args.stripe_latency_ms:
        first_against_warm_with_stripe_latency(args, prepared[args.chosen_memory], sign_in, stripe, env)
    chosen = measured.get(args.chosen_memory)
    if chosen:
        cgroup, _ = cpu_cgroup(args.chosen_memory)
        full, throttled = boto3_alone(None, args.runs), boto3_alone(cgroup, args.runs)
        print(f"\nboto3 alone (import and two clients), which the function does not use: "
              f"{full * 1000:.0f} ms at full CPU, {throttled * 1000:.0f} ms at {args.chosen_memory} MB's share.")


def first_against_warm_with_stripe_latency(args, prepared: tuple, sign_in, stripe, env: dict) -> None:
    """The first request against warm ones as deployed: every request, warm ones too, waits for Stripe (the tables
    above let the stand-in answer at once, so there a warm request never waits long). Code that runs after a wait
    runs slower, in the first request and in the warm ones alike."""
    cgroup, plan, users = prepared
    print(f"first request against warm ones, Stripe at {args.stripe_latency_ms:.0f} ms ...", file=sys.stderr)
    stripe.latency = args.stripe_latency_ms / 1000
    try:
        colds = [cold_start("ours", plan, users, sign_in, env, cgroup, "on-demand", WARM_AFTER_SLOW_STRIPE)
                 for _ in range(args.runs)]
    finally:
        stripe.latency = 0.0
    summary = summary_of(colds)
    print(f"\nAt {args.chosen_memory} MB's CPU share, on-demand model, Stripe answering in "
          f"{args.stripe_latency_ms:.0f} ms, so that every request waits for it as in production (median of "
          f"{args.runs} fresh processes): the first "
          f"request's own time {summary['first_own'] * 1000:.2f} ms, {summary['first_to_warm']:.1f}x the same "
          f"processes' warm requests ({summary['warm_after_own'] * 1000:.2f} ms, {WARM_AFTER_SLOW_STRIPE} each); "
          f"another user's first request right after: {summary['second_own'] * 1000:.2f} ms.")


if __name__ == "__main__":
    sys.exit(main())

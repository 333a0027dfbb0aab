"""A bounded load test on loopback: the API in its own process, several concurrent clients, a mix of new and
returning users. Not timed: it checks correctness under concurrency and that memory stays flat."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USERS = 60
REQUESTS = 3000
CLIENTS = 8


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_mixed_load_has_no_errors_one_customer_per_user_and_flat_memory(stack, stripe_standin, user):
    tokens = {}
    for index in range(USERS):
        sub, issued = user(f"user{index}", email=f"user{index}@example.com", name=None)
        tokens[sub] = issued["IdToken" if index % 2 else "AccessToken"]
    env = {**os.environ, **stack.service_env(stripe_api_base=stripe_standin.base_url,
                                             return_url="https://shop.example.com/"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layers' / 'core'}", "POWERTOOLS_LOG_LEVEL": "WARNING",
           "POWERTOOLS_METRICS_DISABLED": "true"}
    api = subprocess.Popen([sys.executable, "-m", "devstack.api_only"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        url = api.stdout.readline().split()[-1] + "/portal"
        statuses: Counter = Counter()
        samples: list[int] = []
        lock = threading.Lock()
        # Every user REQUESTS/USERS times, shuffled: each one's first request (a new user) lands among
        # other users' returning requests.
        order = list(tokens) * (REQUESTS // USERS)
        random.Random(7).shuffle(order)

        def client(worker: int) -> None:
            for index in range(worker, REQUESTS, CLIENTS):
                request = urllib.request.Request(url, headers={"Authorization": f"Bearer {tokens[order[index]]}",
                                                               "Accept": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status = response.status
                        assert json.loads(response.read())["url"]
                except urllib.error.HTTPError as error:
                    status = error.code
                with lock:
                    statuses[status] += 1
                    done = sum(statuses.values())
                    if done % (REQUESTS // 10) == 0:
                        samples.append(rss_kb(api.pid))

        threads = [threading.Thread(target=client, args=(worker,)) for worker in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
    finally:
        api.terminate()
        api.wait(timeout=10)

    assert statuses == Counter({200: REQUESTS})
    per_customer = Counter(s["customer"] for s in stripe_standin.account.sessions.values())
    assert sorted(per_customer.values()) == [REQUESTS // USERS] * USERS
    owners = Counter(c["metadata"]["cognito_sub"] for c in stripe_standin.customers())
    assert set(owners) == set(tokens) and set(owners.values()) == {1}
    # Memory flat: after warm-up (first 30 %), the service's RSS grows by less than 8 MB over the rest.
    warm = samples[2:]
    assert len(warm) >= 7 and max(warm) - warm[0] < 8 * 1024, samples
    print(f"\nRSS samples (MB): {[round(s / 1024, 1) for s in samples]}")

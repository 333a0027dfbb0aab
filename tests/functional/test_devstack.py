"""`make run` really works: start the local stack as a user would and follow a plain link over HTTP."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request

from tests.support.hosted_ui_client import fetch, sign_in


def test_banner_names_every_stand_in(local_stack):
    api, site, banner = local_stack
    for text in (api, site, "NOT Stripe", "NOT Cognito", "moto", "ada@example.com"):
        assert text in banner
    assert urllib.request.urlopen(f"{api}/health").read() == b'{"status": "ok"}'
    config = urllib.request.urlopen(site + "config.js").read().decode()
    assert api in config and "hostedUiUrl" in config


def test_plain_link_round_trip_for_two_users(local_stack):
    api, site, banner = local_stack
    password = banner.split("password: ")[1].split()[0]
    customers = []
    for username in ("ada@example.com", "grace@example.com"):
        status, authorize, _, cookies = fetch(f"{api}/portal", headers={"Accept": "text/html"})
        assert status == 302 and cookies and cookies[0].startswith("__Host-portal_login=")
        params = sign_in(authorize, username, password, callback=f"{api}/portal/callback")
        status, portal, _, _ = fetch(f"{api}/portal/callback?{urllib.parse.urlencode(params)}",
                                     headers={"Cookie": cookies[0].split(";")[0], "Accept": "text/html"})
        assert status == 302, portal
        page = urllib.request.urlopen(portal).read().decode()
        assert "Stripe stand-in" in page and f'href="{site}"' in page
        customers.append(page.split("<code id=customer>")[1].split("<")[0])
    assert customers[0] != customers[1]


# --- `make run` fails fast, one line each, no traceback ---------------------------------------------------------
def stack_environment(**env_overrides: str) -> dict[str, str]:
    """This process's environment without any setting of `make run`'s, each server on a free port, then these."""
    from tests.support.local_stack import free_port

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEVSTACK_", "COGNITO_", "STRIPE_API")) and k != "AWS_ENDPOINT_URL"}
    for name in ("API", "SITE", "STRIPE", "MOTO", "HOSTED_UI"):
        env[f"DEVSTACK_{name}_PORT"] = str(free_port())
    return {**env, **env_overrides}


def start_stack(**env_overrides: str):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "devstack"], cwd=root, env=stack_environment(**env_overrides),
                          capture_output=True, text=True, timeout=60)


def one_line_failure(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_busy_port_is_named_with_its_variable():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for name in ("API", "MOTO"):
            line = one_line_failure(start_stack(**{f"DEVSTACK_{name}_PORT": str(port)}))
            assert f"port {port} is in use (DEVSTACK_{name}_PORT)" in line


def test_two_variables_with_one_port_fail_in_one_line_and_write_nothing(tmp_path):
    admin_env = tmp_path / "admin.env"
    line = one_line_failure(start_stack(DEVSTACK_SITE_PORT="18781", DEVSTACK_STRIPE_PORT="18781",
                                        DEVSTACK_ADMIN_ENV=str(admin_env)))
    assert "DEVSTACK_SITE_PORT and DEVSTACK_STRIPE_PORT are both 18781" in line
    assert not admin_env.exists()  # the admin command keeps pointing at a stack still running


def test_connections_a_stopped_stack_left_in_time_wait_do_not_make_its_port_busy():
    import socket
    import threading

    from devstack.__main__ import preflight

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    client = socket.create_connection(("127.0.0.1", port))
    while not accepted:
        pass
    accepted[0].close()  # the server side closes first: its end of the connection waits in TIME_WAIT
    client.close()
    server.close()
    saved = {k: os.environ.get(k) for k in ("DEVSTACK_API_PORT",)}
    os.environ["DEVSTACK_API_PORT"] = str(port)
    try:
        preflight("127.0.0.1")  # the port is free to bind again as the servers bind (SO_REUSEADDR)
    except Exception as exc:  # noqa: BLE001 - another default port may be taken on this machine
        assert f"port {port}" not in str(exc)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def test_bad_port_value_incomplete_cognito_and_bad_stripe_keys_fail_in_one_line():
    line = one_line_failure(start_stack(DEVSTACK_API_PORT="abc"))
    assert "DEVSTACK_API_PORT must be a port number" in line
    line = one_line_failure(start_stack(COGNITO_USER_POOL_ID="eu-west-1_AbCdEf123"))
    assert "missing COGNITO_CLIENT_IDS, COGNITO_DOMAIN" in line
    line = one_line_failure(start_stack(STRIPE_API_KEY="sk_live_" + "a" * 24))
    assert "live-mode key" in line
    line = one_line_failure(start_stack(STRIPE_API_KEY="pk_test_" + "a" * 24))
    assert "publishable" in line
    # A well-formed test key is used only once Stripe accepts it; here Stripe cannot be reached.
    line = one_line_failure(start_stack(STRIPE_API_KEY="sk_test_" + "a" * 24))
    assert "could not be checked" in line or "rejected" in line
    line = one_line_failure(start_stack(DEVSTACK_STRIPE_EVENTS="sqs"))
    assert "DEVSTACK_STRIPE_EVENTS must be webhook or eventbridge" in line
    line = one_line_failure(start_stack(DEVSTACK_STRIPE_EVENTS="eventbridge", STRIPE_API_KEY="sk_test_" + "a" * 24))
    assert "needs the Stripe stand-in" in line


def test_the_banner_says_how_to_point_the_admin_cli_at_the_local_stack(local_stack, tmp_path):
    """`make run` writes .devstack/admin.env; sourcing it and running the banner's command checks this stack."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    api, site, banner = local_stack
    root = Path(__file__).resolve().parents[2]
    assert ". .devstack/admin.env && .venv/bin/stripe-portal-admin check $PORTAL_CHECK_ARGS" in banner
    command = os.path.join(os.path.dirname(sys.executable), "stripe-portal-admin")
    script = f". .devstack/admin.env && {command} check $PORTAL_CHECK_ARGS"
    done = subprocess.run(["bash", "-c", script], cwd=root, capture_output=True, text=True, timeout=120,  # noqa: S603
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All checks passed." in done.stdout


def test_the_local_api_runs_one_invocation_at_a_time_as_lambda_does():
    """Powertools keeps the current event on a class: two requests at once in one process would read each other's
    headers (the portal's and the webhook function's, served side by side by `make run`)."""
    import threading
    import time
    import urllib.request

    from devstack.http_api import serve

    running, most = [0], [0]
    lock = threading.Lock()

    def handler(event, context):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return {"statusCode": 200, "body": event["headers"].get("x-who", "")}

    server = serve(handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    answers: dict[str, str] = {}

    def ask(who: str) -> None:
        request = urllib.request.Request(url, headers={"X-Who": who})
        answers[who] = urllib.request.urlopen(request, timeout=10).read().decode()

    clients = [threading.Thread(target=ask, args=(f"user{n}",)) for n in range(4)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    server.shutdown()
    assert most[0] == 1 and answers == {f"user{n}": f"user{n}" for n in range(4)}


def test_make_run_on_the_eventbridge_path_applies_a_purchase_through_the_bus(tmp_path):
    """DEVSTACK_STRIPE_EVENTS=eventbridge: `events setup` against the stand-in, its partner source's bus handing
    Stripe's events to the StripeEventsFunction's handler, and no webhook endpoint (as StripeWebhookEndpoint=
    disabled). A purchase made over HTTP, by plain link, reaches the table through the bus."""
    import queue
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = stack_environment(DEVSTACK_STRIPE_EVENTS="eventbridge", DEVSTACK_ADMIN_ENV=str(tmp_path / "admin.env"))
    process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()

    def output_until(wanted, seconds: float) -> str:
        seen, deadline = "", time.time() + seconds
        while time.time() < deadline:
            try:
                seen += lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if wanted(seen):
                break
        return seen

    try:
        banner = output_until(lambda seen: "Press Ctrl+C" in seen, 60)
        assert "Press Ctrl+C" in banner, banner
        assert "Stripe's events: through EventBridge (partner source aws.partner/stripe.com/ed_" in banner
        assert "--webhook-url" not in (tmp_path / "admin.env").read_text()
        api = f"http://127.0.0.1:{env['DEVSTACK_API_PORT']}"
        assert fetch(f"{api}/webhooks/stripe", {"x": "1"})[0] == 404  # no webhook endpoint on this path
        password = banner.split("password: ")[1].split()[0]

        status, authorize, _, cookies = fetch(f"{api}/billing/checkout?price=pro_monthly",
                                              headers={"Accept": "text/html"})
        assert status == 302, authorize
        params = sign_in(authorize, "ada@example.com", password, callback=f"{api}/portal/callback")
        status, checkout, _, _ = fetch(f"{api}/portal/callback?{urllib.parse.urlencode(params)}",
                                       headers={"Cookie": cookies[0].split(";")[0], "Accept": "text/html"})
        assert status == 303 and "/c/pay/" in checkout, checkout
        assert fetch(checkout, {})[0] in (200, 302, 303)  # the stand-in's Subscribe button

        def applied(seen: str) -> bool:
            return any('"message":"Event applied"' in line and '"via":"eventbridge"' in line
                       and '"stripe_event_type":"customer.subscription.created"' in line
                       and '"outcome":"processed"' in line for line in seen.splitlines())

        after = output_until(applied, 15)
        assert applied(after), after[-3000:]
    finally:
        process.terminate()
        process.wait(timeout=10)

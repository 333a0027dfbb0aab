"""Serve only the function (HTTP API v2 adapter + lambda_handler), configured from the environment.
Used by the load test and the benchmark so that the service's own process can be measured alone."""

from __future__ import annotations

import os
import signal
import sys
import threading

from devstack.http_api import load_handler_module, serve


def main() -> int:
    module = load_handler_module()
    server = serve(module.lambda_handler, "127.0.0.1", int(os.environ.get("API_PORT", "0")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening http://127.0.0.1:{server.server_address[1]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A pass-through HTTP proxy in front of moto that can inject AWS faults (throttling, 5xx, dropped
connections, latency) for one operation, and counts what goes through. Tests only.

Point a single service at it with AWS_ENDPOINT_URL_<SERVICE> (e.g. AWS_ENDPOINT_URL_DYNAMODB) or a JWKS
URL at it; everything else keeps talking to moto directly.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
              "proxy-authenticate", "content-length", "host"}


@dataclass
class AwsFault:
    match: str  # substring of "X-Amz-Target" (e.g. "PutItem", "GetSecretValue") or of the path
    body: str | None = None  # and, if given, a substring of the request body (which item a PutItem writes)
    times: int = 1
    status: int = 400
    error_type: str = "ThrottlingException"
    delay: float = 0.0
    drop_connection: bool = False


class FaultProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1"):
        target = urlsplit(upstream)
        self._upstream = (target.hostname, target.port)
        self.faults: list[AwsFault] = []
        self.seen: list[str] = []  # X-Amz-Target or path of every request
        self.down = False  # refuse everything (an outage)
        self.latency = 0.0  # seconds added to every request (a network round trip, for benchmarks)
        # Real Cognito answers GetUser only for access tokens with the aws.cognito.signin.user.admin scope;
        # moto does not check. On, this proxy refuses such GetUser calls as Cognito does.
        self.enforce_cognito_scopes = False
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def do_GET(self):
                owner._relay(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def inject(self, fault: AwsFault) -> None:
        with self.lock:
            self.faults.append(fault)

    def count(self, match: str) -> int:
        with self.lock:
            return sum(1 for label in self.seen if match in label)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _take(self, label: str, body: bytes = b"") -> AwsFault | None:
        with self.lock:
            self.seen.append(label)
            if self.down:
                return AwsFault(match="", status=503, error_type="ServiceUnavailable")
            for fault in self.faults:
                if fault.match in label and (fault.body is None or fault.body.encode() in body):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        label = handler.headers.get("X-Amz-Target") or handler.path
        if self.latency:
            time.sleep(self.latency)
        fault = self._take(label, body)
        if fault is None and self.enforce_cognito_scopes and label.endswith(".GetUser"):
            fault = _scope_refusal(body)
        if fault:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop_connection:
                handler.close_connection = True
                handler.connection.shutdown(2)
                return
            payload = json.dumps({"__type": fault.error_type, "message": "injected fault"}).encode()
            handler.send_response(fault.status)
            handler.send_header("Content-Type", "application/x-amz-json-1.0")
            handler.send_header("x-amzn-ErrorType", fault.error_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        connection.request(handler.command, handler.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        connection.close()


ADMIN_SCOPE = "aws.cognito.signin.user.admin"


def _scope_refusal(body: bytes) -> AwsFault | None:
    """Cognito's answer to GetUser with an access token that lacks the admin scope (the signature is
    Cognito's to check; only the scope is read here)."""
    import base64

    try:
        token = json.loads(body)["AccessToken"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        scopes = str(claims.get("scope", "")).split()
    except (ValueError, KeyError, IndexError, TypeError):
        return AwsFault(match="", status=400, error_type="NotAuthorizedException")
    if ADMIN_SCOPE in scopes:
        return None
    # Cognito's message: "Access Token does not have required scopes"
    return AwsFault(match="", status=400, error_type="NotAuthorizedException")

"""Turn plain HTTP requests into API Gateway HTTP API (payload format 2.0) events for the real handler.

`sam local` needs a container runtime; this adapter needs none. It is for local use and tests only.
"""

from __future__ import annotations

import base64
import importlib.util
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent.parent
TEXT_TYPES = ("application/x-www-form-urlencoded", "application/json", "text/")


@dataclass
class LambdaContext:
    """The attributes Powertools reads from the Lambda runtime's context object."""

    function_name: str = "portal-local"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:portal-local"
    aws_request_id: str = ""
    deadline_ms: float = 0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.deadline_ms - time.time() * 1000))


def new_context(timeout_seconds: float = 15) -> LambdaContext:
    return LambdaContext(aws_request_id=str(uuid.uuid4()), deadline_ms=time.time() * 1000 + timeout_seconds * 1000)


def build_event(method: str, path: str, *, query: str = "", headers: dict[str, str] | None = None,
                body: bytes | str | None = None, source_ip: str = "127.0.0.1") -> dict:
    """An HTTP API v2 event as API Gateway sends it: lower-case headers, joined query values, cookies apart."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    event = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        content_type = headers.get("content-type", "")
        if content_type.startswith(TEXT_TYPES):
            try:
                event["body"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    return event


def load_handler_module(path: Path = ROOT / "functions" / "portal" / "app.py", name: str | None = None):
    """Import the function's app.py afresh (it reads its configuration from the environment at import)."""
    name = name or f"portal_app_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# One invocation at a time in this process, as Lambda runs one request at a time per execution environment.
# Powertools' resolvers keep the current event on a class (BaseRouter.current_event), shared by every resolver
# of the process: two requests at once, or the portal and the webhook function served side by side here, would
# read each other's headers.
_ONE_AT_A_TIME = threading.Lock()


def serve(handler, host: str = "127.0.0.1", port: int = 0, *, max_body: int = 1024 * 1024,
          routes: dict[str, object] | None = None) -> ThreadingHTTPServer:
    """A loopback HTTP server that feeds every request to `handler(event, context)`, or to the handler of the
    first `routes` path prefix it starts with (one API, several functions, as API Gateway routes them)."""

    class Adapter(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def _any(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body:  # API Gateway's own limit is 10 MB; the function refuses far less anyway
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else None
            event = build_event(self.command, url.path, query=url.query, headers=dict(self.headers.items()),
                                body=body)
            chosen = next((h for prefix, h in (routes or {}).items() if url.path.startswith(prefix)), handler)
            with _ONE_AT_A_TIME:
                result = chosen(event, new_context())
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
            self.send_response(result.get("statusCode", 200))
            for name, value in (result.get("headers") or {}).items():
                self.send_header(name, value)
            for cookie in result.get("cookies") or []:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _any

        def log_message(self, fmt, *args):
            pass  # request lines can carry query strings; the function logs what is safe to log

    server = ThreadingHTTPServer((host, port), Adapter)
    server.daemon_threads = True
    return server

"""Keep-alive HTTP(S) connections for the function's own Stripe and AWS clients, on the standard library.

One idle connection set per host, reused across requests of an execution environment (a warm request pays
no TLS handshake). As urllib3 does, an idle connection the server has closed is noticed before it is used
and replaced; a request is never sent twice here (the callers' retry rules decide that). Standard
library only: importing urllib3 costs tens of milliseconds of CPU, hundreds at Lambda's small CPU shares
(`make bench`), for what http.client does here.

Every request is bounded in wall-clock time, not only per socket read: an answer trickling one byte a
second ends at its deadline. The deadline is the call's own (connect + read timeout) or the invocation's
budget (`request_budget`, set by the handler from the Lambda context), whichever comes first. Answers are
read up to a size limit; a longer one is a failure, never held whole in memory.

Failures are reported with the names urllib3 uses (the runbook's table reads them from log details):
NewConnectionError, ConnectTimeoutError, ReadTimeoutError, ProtocolError; and ResponseTooLarge.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

from portal_gateway.tracing import TIMINGS

MAX_ANSWER_BYTES = 1024 * 1024  # far above any answer these clients read (a page of 20 customers: ~60 kB)
_budget = threading.local()  # per thread: the local HTTP adapter serves requests in parallel threads
_in_memory = threading.local()  # per thread: the init rehearsal's answers (answered_in_memory)

# (method, url, headers, body) -> (status, headers, body): what an in-memory exchange answers.
InMemoryAnswer = Callable[[str, str, dict[str, str], bytes | None], tuple[int, dict[str, str], bytes]]


@contextmanager
def request_budget(seconds: float | None) -> Iterator[None]:
    """Every outbound call made inside ends by `seconds` from now (the invocation's remaining time, less what
    the answer itself needs), so the caller always gets the service's own answer, never the platform's."""
    previous = getattr(_budget, "deadline", None)
    _budget.deadline = None if seconds is None else time.monotonic() + seconds
    try:
        yield
    finally:
        _budget.deadline = previous


@contextmanager
def answered_in_memory(answer: InMemoryAnswer) -> Iterator[None]:
    """Inside, this thread's requests never leave the process: each one is written, and `answer`'s reply read,
    by the same code as a real exchange (http.client both ways, the deadline reader, the size bound), over a
    socket pair. For the rehearsal at init (priming.py). Other threads, and idle connections, are untouched."""
    previous = getattr(_in_memory, "answer", None)
    _in_memory.answer = answer
    try:
        yield
    finally:
        _in_memory.answer = previous


def carried_to_thread() -> Callable[[], AbstractContextManager[None]]:
    """What binds this thread's outbound calls (the time budget, in-memory answers), for a thread it starts: the
    new thread enters the returned context, so its calls are bound the same way."""
    budget, answer = remaining_budget(), getattr(_in_memory, "answer", None)

    @contextmanager
    def carried() -> Iterator[None]:
        with request_budget(budget), (answered_in_memory(answer) if answer is not None else nullcontext()):
            yield

    return carried


def remaining_budget() -> float | None:
    """Seconds left for outbound calls in this invocation, or None without a budget."""
    deadline = getattr(_budget, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


class HttpFailure(Exception):
    """No answer: `kind` says why, in urllib3's words."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    data: bytes


class ConnectionPool:
    def __init__(self, max_idle_per_host: int = 4):
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle_per_host
        self._tls: ssl.SSLContext | None = None

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str],
                connect_timeout: float, read_timeout: float, max_bytes: int = MAX_ANSWER_BYTES,
                dependency: str = "HTTP", operation: str | None = None) -> Answer:
        """One exchange, timed for the request's log line (and its trace) under `dependency` (Stripe, DynamoDB,
        Cognito, SecretsManager); `operation` names an AWS call in the trace (GetItem)."""
        with TIMINGS.timed(dependency, method, url, operation=operation) as call:
            answer = self._request(method, url, body=body, headers=headers, connect_timeout=connect_timeout,
                                   read_timeout=read_timeout, max_bytes=max_bytes)
            call.status = answer.status
        return answer

    def _request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str],
                 connect_timeout: float, read_timeout: float, max_bytes: int) -> Answer:
        parts = urlsplit(url)
        key = _host_key(parts)
        if key is None:
            raise HttpFailure("ProtocolError")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        now = time.monotonic()
        deadline = now + connect_timeout + read_timeout
        invocation_deadline = getattr(_budget, "deadline", None)
        if invocation_deadline is not None and invocation_deadline < deadline:
            deadline = invocation_deadline
            if deadline - now <= 0:
                raise HttpFailure("ReadTimeoutError")  # no time left to even try
        in_memory = getattr(_in_memory, "answer", None)
        if in_memory is not None:
            return self._exchange_in_memory(in_memory, method, url, target, body, headers, deadline, max_bytes)
        connection = self._take(key) or self._connect(key, min(connect_timeout, deadline - now))
        return self._send(key, connection, method, target, body, headers, deadline, max_bytes)

    def _exchange_in_memory(self, answer: InMemoryAnswer, method: str, url: str, target: str, body: bytes | None,
                            headers: dict[str, str], deadline: float, max_bytes: int) -> Answer:
        status, answer_headers, data = answer(method, url, headers, body)
        client_end, server_end = socket.socketpair()
        try:
            head = "".join(f"{name}: {value}\r\n" for name, value in answer_headers.items())
            server_end.sendall(f"HTTP/1.1 {status} {http.client.responses.get(status, 'Unknown')}\r\n{head}"
                               f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode("latin-1") + data)
            connection = _OneWriteHTTPConnection(urlsplit(url).hostname or "in-memory.invalid")
            connection.sock = client_end  # "Connection: close": _send closes it, it never joins the idle set
            return self._send(None, connection, method, target, body, headers, deadline, max_bytes)
        finally:
            client_end.close()
            server_end.close()

    def clear(self) -> None:
        """Close every idle connection (SnapStart: connections do not survive a snapshot)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def preconnect(self, url: str, *, timeout: float = 2.0) -> bool:
        """Open (TCP, and TLS for https) a connection to `url`'s host and keep it idle for the next request, so
        a handshake done at init is not paid on the first request. Fails soft: False if it could not."""
        key = _host_key(urlsplit(url))
        if key is None:
            return False
        with self._lock:
            if self._idle.get(key):
                return True
        left = remaining_budget()
        try:
            connection = self._connect(key, timeout if left is None else max(0.05, min(timeout, left)))
        except HttpFailure:
            return False
        self._give(key, connection)
        return True

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(connections) for connections in self._idle.values())

    def _take(self, key) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                connections = self._idle.get(key)
                connection = connections.pop() if connections else None
            if connection is None or not _dropped(connection):
                return connection
            connection.close()  # closed by the server while idle (or it sent something unasked): not reused

    def _give(self, key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            connections = self._idle.setdefault(key, [])
            if len(connections) < self._max_idle:
                connections.append(connection)
                return
        connection.close()

    def _connect(self, key, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = key
        proxy = https_proxy_for(host, port) if scheme == "https" else None
        if scheme == "https":
            if self._tls is None:
                self._tls = tls_context()
            if proxy is not None:
                # Through the proxy, as stripe-python and botocore go: a CONNECT tunnel, then TLS with the host itself.
                proxy_host, proxy_port, proxy_headers = proxy
                connection: http.client.HTTPConnection = _OneWriteHTTPSConnection(
                    proxy_host, proxy_port, timeout=timeout, context=self._tls)
                connection.set_tunnel(host, port, headers=proxy_headers)
            else:
                connection = _OneWriteHTTPSConnection(host, port, timeout=timeout, context=self._tls)
        else:
            connection = _OneWriteHTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            raise HttpFailure("ConnectTimeoutError") from None
        except (OSError, http.client.HTTPException):
            connection.close()
            raise HttpFailure("NewConnectionError") from None
        return connection

    def _send(self, key, connection: http.client.HTTPConnection, method: str, target: str, body: bytes | None,
              headers: dict[str, str], deadline: float, max_bytes: int) -> Answer:
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            connection.sock.settimeout(left)
            connection.request(method, target, body=body, headers=headers)
            # The answer is read through a file that checks the deadline before every receive.
            connection.response_class = cast(type[http.client.HTTPResponse],
                                             functools.partial(_BoundedResponse, deadline=deadline))
            response = connection.getresponse()
            data = response.read(max_bytes + 1)
        except TimeoutError:
            connection.close()
            raise HttpFailure("ReadTimeoutError") from None
        except (OSError, http.client.HTTPException, AttributeError):
            connection.close()
            raise HttpFailure("ProtocolError") from None
        if len(data) > max_bytes:
            connection.close()
            raise HttpFailure("ResponseTooLarge")
        answer = Answer(response.status, {name.lower(): value for name, value in response.getheaders()}, data)
        if response.will_close or not response.isclosed():
            connection.close()
        else:
            self._give(key, connection)
        return answer


class _OneWrite:
    """Sends a request's head and its body in one write. http.client writes them apart: two system calls and, as it
    sets TCP_NODELAY, two TCP segments (with TLS, two records) for every POST, where one does."""

    def _send_output(self, message_body=None, encode_chunked=False):
        head = getattr(self, "_buffer", None)  # http.client's lines of the head, not yet sent
        if not isinstance(message_body, bytes) or encode_chunked or not isinstance(head, list):
            return super()._send_output(message_body, encode_chunked)
        head.extend((b"", b""))  # as http.client ends the head: an empty line
        request = b"\r\n".join(head) + message_body
        del head[:]
        self.send(request)


class _OneWriteHTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _OneWriteHTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


def https_proxy_for(host: str, port: int) -> tuple[str, int, dict[str, str]] | None:
    """The proxy an https request to `host` goes through, from the standard variables (HTTPS_PROXY, https_proxy;
    NO_PROXY, no_proxy), as stripe-python (requests) and botocore read them: (proxy host, port, CONNECT headers), or
    None to go direct. Read at each new connection: a few environment lookups, no import."""
    raw = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or ""
    if not raw.strip() or _bypassed(host, port, os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""):
        return None
    parts = urlsplit(raw.strip() if "://" in raw else f"http://{raw.strip()}")
    if not parts.hostname:
        return None
    headers = {}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), headers


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY as requests and curl read it: "*", host names, ".domain" or "domain" suffixes, host:port."""
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip(".").rstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _host_key(parts) -> tuple[str, str, int] | None:
    """Which idle connections a URL may use: (scheme, host, port); None for a URL this pool cannot serve."""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


class _DeadlineReader(io.RawIOBase):
    """A socket's receiving side that gives up at a wall-clock deadline, however slowly the bytes come."""

    def __init__(self, sock, deadline: float):
        super().__init__()
        # The socket's own raw file: it keeps the socket open until read to the end, as http.client expects.
        self._sock, self._raw, self._deadline = sock, sock.makefile("rb", buffering=0), deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What http.client.HTTPResponse needs of a socket (makefile), with the deadline built in."""

    def __init__(self, sock, deadline: float):
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str, *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _BoundedResponse(http.client.HTTPResponse):
    def __init__(self, sock, *args, deadline: float, **kwargs):
        # http.client only calls the socket's makefile(), which is all _DeadlineSocket has.
        super().__init__(cast(socket.socket, _DeadlineSocket(sock, deadline)), *args, **kwargs)


# Where Linux distributions keep the CA bundle, for an interpreter whose OpenSSL default paths find none.
CA_BUNDLES = ("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem")


def tls_context() -> ssl.SSLContext:
    """Certificates and host names verified, with the system's CA certificates (SSL_CERT_FILE is honoured)."""
    context = ssl.create_default_context()
    if not context.cert_store_stats().get("x509_ca"):
        for bundle in CA_BUNDLES:
            try:
                context.load_verify_locations(cafile=bundle)
                break
            except (OSError, ssl.SSLError):
                continue
    return context


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read has been closed by the server (EOF) or is out of step."""
    if connection.sock is None:
        return True
    try:
        readable, _, _ = select.select([connection.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


POOL = ConnectionPool()  # one per execution environment, shared by the Stripe and AWS clients

"""The connection pool's bounds: a wall-clock deadline per call (however slowly bytes come), the invocation's
budget, a size limit, and keep-alive reuse that survives them."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from portal_gateway.http_pool import (
    ConnectionPool,
    HttpFailure,
    answered_in_memory,
    remaining_budget,
    request_budget,
)


class SlowServer:
    """Answers every request with `body`, `gap` seconds between bytes (after the headers)."""

    def __init__(self, body: bytes, gap: float = 0.0):
        self.body, self.gap = body, gap
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        try:
            while conn.recv(65536):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.body))
                for index in range(len(self.body)):
                    conn.sendall(self.body[index:index + 1])
                    if self.gap:
                        time.sleep(self.gap)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.listener.close()


def get(pool, url, **kwargs):
    options = {"connect_timeout": 1.0, "read_timeout": 1.0, **kwargs}
    return pool.request("GET", url, body=None, headers={}, **options)


def test_a_trickling_answer_ends_at_the_call_deadline_not_per_read():
    server = SlowServer(b"x" * 100, gap=0.2)  # each byte well within a 1 s read timeout; all of it: 20 s
    try:
        started = time.monotonic()
        with pytest.raises(HttpFailure) as failed:
            get(ConnectionPool(), server.url, connect_timeout=0.5, read_timeout=1.0)
        assert failed.value.kind == "ReadTimeoutError"
        assert time.monotonic() - started < 2.0
    finally:
        server.close()


def test_the_invocation_budget_caps_every_call_and_ends_with_its_block():
    server = SlowServer(b"x" * 100, gap=0.05)  # 5 s in all
    try:
        started = time.monotonic()
        with request_budget(0.6):
            assert 0 < remaining_budget() <= 0.6
            with pytest.raises(HttpFailure):
                get(ConnectionPool(), server.url, connect_timeout=2.0, read_timeout=10.0)
            assert time.monotonic() - started < 1.2
            time.sleep(0.1)
            with pytest.raises(HttpFailure):  # nothing left: not even tried
                get(ConnectionPool(), server.url)
        assert remaining_budget() is None
    finally:
        server.close()


def test_an_answer_over_the_size_limit_is_refused_and_its_connection_not_reused():
    server = SlowServer(b"y" * 5000)
    try:
        pool = ConnectionPool()
        with pytest.raises(HttpFailure) as failed:
            get(pool, server.url, max_bytes=1000)
        assert failed.value.kind == "ResponseTooLarge"
        assert pool.idle_count() == 0
        assert get(pool, server.url).data == b"y" * 5000
        assert pool.idle_count() == 1  # a whole answer leaves its connection for the next call
        assert get(pool, server.url).status == 200
        assert server.connections == 2
    finally:
        server.close()


def test_in_memory_answers_stay_in_the_process_and_in_their_thread():
    """The init rehearsal's exchanges: written and read by the pool's own code, answered by a function, never
    connected anywhere; the pool's idle connections and another thread's requests are not affected."""
    server = SlowServer(b"real")
    asked = []

    def answer(method, url, headers, body):
        asked.append((method, url, headers["X-Test"], body))
        return 201, {"Content-Type": "application/json", "X-Answer": "canned"}, b'{"ok": true}'

    try:
        pool = ConnectionPool()
        assert get(pool, server.url).data == b"real"
        assert pool.idle_count() == 1
        other_thread: list[bytes] = []
        with answered_in_memory(answer):
            reply = pool.request("POST", f"{server.url}v1/things?x=1", body=b"a=b", headers={"X-Test": "1"},
                                 connect_timeout=1, read_timeout=1)
            worker = threading.Thread(target=lambda: other_thread.append(get(pool, server.url).data))
            worker.start()
            worker.join()
            with pytest.raises(HttpFailure) as too_large:
                pool.request("GET", "https://nowhere.invalid/", body=None, headers={"X-Test": "2"},
                             connect_timeout=1, read_timeout=1, max_bytes=4)
        assert (reply.status, reply.data) == (201, b'{"ok": true}')
        assert reply.headers["x-answer"] == "canned" and reply.headers["content-length"] == "12"
        assert asked == [("POST", f"{server.url}v1/things?x=1", "1", b"a=b"),
                         ("GET", "https://nowhere.invalid/", "2", None)]
        assert too_large.value.kind == "ResponseTooLarge"  # the same bounds as a real answer
        assert other_thread == [b"real"]  # another thread's request went out as usual
        assert server.connections == 1  # the in-memory ones connected nowhere, the idle one was reused
        assert pool.idle_count() == 1  # and nothing in memory joined the idle set
        assert get(pool, server.url).data == b"real"  # outside the block, requests go out again
    finally:
        server.close()


class RecordingServer:
    """Reads whole requests (head, then Content-Length bytes of body), keeps them, answers each with 204."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.listener.accept()
        with conn:
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
                head, separator, rest = received.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), b"0"))
                if separator and len(rest) >= length:
                    self.requests.append(head + separator + rest[:length])
                    received = rest[length:]
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def close(self):
        self.listener.close()


def test_a_request_and_its_body_go_out_in_one_write(monkeypatch):
    """http.client writes a POST's head and body apart (two system calls, two TCP segments with TCP_NODELAY); the
    pool writes them at once, and the request is the same bytes."""
    import http.client

    writes: list[bytes] = []
    real_send = http.client.HTTPConnection.send
    monkeypatch.setattr(http.client.HTTPConnection, "send",
                        lambda self, data: (writes.append(bytes(data)), real_send(self, data))[1])
    server = RecordingServer()
    try:
        pool = ConnectionPool()
        body = b'{"TableName":"t","Key":{"pk":{"S":"k"}}}'
        for _ in range(2):  # a new connection, then the kept one
            answer = pool.request("POST", f"{server.url}v1/x", body=body,
                                  headers={"Host": "example.test", "X-Amz-Target": "DynamoDB_20120810.GetItem"},
                                  connect_timeout=1, read_timeout=1)
            assert answer.status == 204
        assert len(writes) == 2  # one per request
        assert server.requests == writes
        head, _, sent_body = writes[0].partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"POST /v1/x HTTP/1.1" and sent_body == body
        assert b"Content-Length: %d" % len(body) in head.split(b"\r\n")
        assert get(pool, server.url).status == 204  # a request without a body, as http.client sends it
        assert len(writes) == 3
    finally:
        server.close()


class ConnectRecorder:
    """An HTTP proxy that records each CONNECT request (its target and headers) and refuses it."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://user:p%40ss@127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.requests.append(data)
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            conn.close()


def test_https_requests_go_through_the_standard_proxy_variables_unless_no_proxy_names_the_host(monkeypatch):
    """A function in a VPC that leaves through a proxy: HTTPS_PROXY (with its credentials) as stripe-python and
    botocore honour it, and NO_PROXY's hosts and domain suffixes go direct."""
    proxy = ConnectRecorder()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,.amazonaws.com,cognito.example:443")
    pool = ConnectionPool()
    with pytest.raises(HttpFailure):  # the recorder refuses the tunnel
        get(pool, "https://api.stripe.com/v1/customers")
    (request,) = proxy.requests
    assert request.startswith(b"CONNECT api.stripe.com:443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in request  # user:p@ss, unquoted
    for direct in ("https://dynamodb.eu-west-1.amazonaws.com/", "https://cognito.example/x"):
        with pytest.raises(HttpFailure):  # straight there: no network here, and not through the proxy
            get(pool, direct, connect_timeout=0.5)
    assert len(proxy.requests) == 1
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("https_proxy", proxy.url.replace("user:p%40ss@", ""))
    monkeypatch.setenv("NO_PROXY", "*")
    with pytest.raises(HttpFailure):
        get(pool, "https://api.stripe.com/v1/customers", connect_timeout=0.5)
    assert len(proxy.requests) == 1  # "*": nothing through the proxy

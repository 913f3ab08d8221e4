"""The runtime server's own HTTP/1.1 layer (runtimes/http.py) over real sockets: keep-alive,
pipelining in order, Expect: 100-continue, size limits, malformed requests, JSON errors on
every route. The server is real (the Angel LR test model: NumPy only, starts in a second)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from runtimes.http import MAX_BODY
from runtimes.testing import RunningServer

pytestmark = pytest.mark.integration
ROW = json.dumps({"instances": [[0.0] * 123]}).encode()


@pytest.fixture(scope="module")
def server(testdata: Path):
    with RunningServer("angel", testdata / "models/angel/lr/lr-model/6") as srv:
        yield srv


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def read_answer(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer from ``sock`` (``buf`` carries bytes read past it)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {bytes(buf)!r}")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    size = int(headers["content-length"])
    while len(rest) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a body")
        rest += chunk
    buf[:] = rest[size:]
    return status, headers, rest[:size]


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    with connect(server) as sock:
        buf = bytearray()
        sock.sendall(post("/v1/models/m:predict", ROW))
        status, headers, body = read_answer(sock, buf)
        assert status == 200 and headers["content-type"] == "application/json"
        assert "connection" not in headers  # kept alive
        first = json.loads(body)["predictions"][0]
        # three pipelined requests in one write: a good one, a bad one, a status GET
        sock.sendall(
            post("/v1/models/m:predict", ROW)
            + post("/v1/models/m:predict", b"{not json")
            + b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = [read_answer(sock, buf) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 400, 200]
    assert json.loads(answers[0][2])["predictions"][0] == first
    assert "malformed JSON" in json.loads(answers[1][2])["error"]
    assert json.loads(answers[2][2])["model_version_status"][0]["state"] == "AVAILABLE"


def test_expect_100_continue(server):
    with connect(server) as sock:
        head = (
            "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(ROW)}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(ROW)
        status, _, body = read_answer(sock, bytearray())
    assert status == 200 and "predictions" in json.loads(body)


def test_chunked_request_body(server):
    with connect(server) as sock:
        half = len(ROW) // 2
        chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            half,
            ROW[:half],
            len(ROW) - half,
            ROW[half:],
        )
        head = (
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head + chunks)
        status, _, body = read_answer(sock, bytearray())
    assert status == 200 and "predictions" in json.loads(body)


def test_declared_body_over_the_limit_is_413_before_it_is_sent(server):
    with connect(server) as sock:
        head = (
            "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())
        status, headers, body = read_answer(sock, bytearray())
        assert status == 413 and headers["connection"] == "close"
        assert "over the limit" in json.loads(body)["error"]
        assert sock.recv(10) == b""  # closed


@pytest.mark.parametrize(
    "raw,status,fragment",
    [
        (b"NOT-HTTP\r\n\r\n", 400, "malformed HTTP"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URL"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431, "headers"),
    ],
)
def test_malformed_or_oversized_requests(server, raw, status, fragment):
    with connect(server) as sock:
        sock.sendall(raw)
        got, headers, body = read_answer(sock, bytearray())
    assert got == status and headers["connection"] == "close"
    assert fragment in json.loads(body)["error"]


def test_every_route_answers_json(server):
    status, body = server.request("GET", "/nope")
    assert status == 404 and "Malformed request" in body["error"]
    status, body = server.request("POST", "/metrics", b"")
    assert status == 405 and "GET" in body["error"]
    status, text = server.request("GET", "/metrics")
    assert status == 200 and "ems_runtime_requests_total" in text
    # the server still answers after all of the above
    status, body = server.request("POST", "/v1/models/m:predict", ROW)
    assert status == 200, body

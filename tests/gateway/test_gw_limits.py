"""Limits on what a client can make the gateway hold: URL and header sizes (414, 431), slow
heads and bodies (408), idle keep-alive connections, and memory after large bodies."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.gateway.conftest import route

PREDICT = "/v1/models/m:predict"
LIMITS = {
    "EMS_GATEWAY_MAX_URL": "2048",
    "EMS_GATEWAY_MAX_HEADER": "8192",
    "EMS_GATEWAY_HEADER_TIMEOUT": "1",
    "EMS_GATEWAY_BODY_TIMEOUT": "1.5",
    "EMS_GATEWAY_KEEPALIVE_TIMEOUT": "1",
}


def gateway_with_limits(file_store_url, start_gateway, start_echo, **env):
    from gateway.routes import open_store

    gen = open_store(file_store_url).publish(route("ems-lim", [("i1", start_echo("a"))]))
    gw = start_gateway(file_store_url, **{**LIMITS, **env})
    gw.wait_generation(gen)
    return gw


def exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool, float]:
    """Send ``data`` (whatever the server does meanwhile), read until the server closes:
    (everything read, closed by the server, seconds it took)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # answered early: what it sent is still to be read
            sock.sendall(data)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return answer, False, time.monotonic() - started
            if not chunk:
                return answer, True, time.monotonic() - started
            answer += chunk


def request_line(path: bytes, extra: bytes = b"") -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra


def test_414_url_over_the_limit(file_store_url, start_gateway, start_echo):
    gw = gateway_with_limits(file_store_url, start_gateway, start_echo)
    ok = b"/ems-lim" + PREDICT.encode() + b"?" + b"a" * 1500
    answer, _, _ = exchange(gw.port, request_line(ok, b"Content-Length: 2\r\n\r\n{}"), 2)
    assert answer.startswith(b"HTTP/1.1 200 ")
    for size in (2100, 1 << 20, 16 << 20):  # 16 MiB: the URL the issue saw echoed in a 404
        long = b"/ems-lim" + PREDICT.encode() + b"?" + b"a" * size
        answer, closed, _ = exchange(gw.port, request_line(long, b"\r\n"))
        assert answer.startswith(b"HTTP/1.1 414 "), answer[:200]
        assert b"2048 bytes" in answer and closed and len(answer) < 1000
    assert gw.request("POST", "/ems-lim" + PREDICT, {})[0] == 200


def test_431_headers_over_the_limit(file_store_url, start_gateway, start_echo):
    gw = gateway_with_limits(file_store_url, start_gateway, start_echo)
    path = b"/ems-lim" + PREDICT.encode()
    many = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 100) for i in range(60))  # ~7 KiB
    answer, _, _ = exchange(gw.port, request_line(path, many + b"Content-Length: 0\r\n\r\n"), 2)
    assert answer.startswith(b"HTTP/1.1 200 ")
    too_many = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 100) for i in range(100))  # ~11 KiB
    one_huge = b"X-Huge: " + b"v" * (16 << 20) + b"\r\n"  # 16 MiB in one header
    for headers in (too_many, one_huge):
        answer, closed, _ = exchange(gw.port, request_line(path, headers + b"\r\n"))
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:99]
        assert b"8192 bytes" in answer and closed
    assert gw.request("POST", "/ems-lim" + PREDICT, {})[0] == 200


def dribble(port: int, head: bytes, trickle: bytes, every: float) -> tuple[bytes, float]:
    """Send ``head``, then ``trickle`` one byte every ``every`` seconds until the server
    answers or closes: (what it answered, seconds from the first byte)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(every)
        answer = b""
        for i in range(len(trickle)):
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
                continue
            except TimeoutError:
                pass
            try:
                sock.sendall(trickle[i : i + 1])
            except OSError:
                break
        sock.settimeout(5)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer, time.monotonic() - started


def test_408_for_a_head_or_a_body_that_dribbles(file_store_url, start_gateway, start_echo):
    gw = gateway_with_limits(file_store_url, start_gateway, start_echo)
    path = b"/ems-lim" + PREDICT.encode()
    # a head that never ends (a header byte every 0.3 s): 408 after the 1 s head timeout
    answer, took = dribble(gw.port, request_line(path), b"X-Slow: " + b"z" * 100, 0.3)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert b"request head" in answer and b"connection: close" in answer
    head_took = took
    # a body announced as 100 bytes, sent a byte every 0.3 s: 408 after 1.5 s
    head = request_line(path, b"Content-Length: 100\r\n\r\n")
    answer, took = dribble(gw.port, head, b"{" + b" " * 99, 0.3)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert b"request body" in answer
    print(f"\nslow clients: dribbled head answered 408 after {head_took:.2f}s (limit 1 s), "
          f"dribbled body after {took:.2f}s (limit 1.5 s)")  # fmt: skip
    assert head_took < 5 and took < 5
    assert gw.request("POST", "/ems-lim" + PREDICT, {})[0] == 200


def test_idle_keepalive_connections_are_closed(file_store_url, start_gateway, start_echo):
    gw = gateway_with_limits(file_store_url, start_gateway, start_echo)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request_line(b"/ems-lim" + PREDICT.encode(), b"Content-Length: 2\r\n\r\n{}"))
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in answer
        started = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the gateway, silently (nothing was asked)
        idle = time.monotonic() - started
    print(f"\nidle keep-alive connection closed after {idle:.2f}s (limit 1 s)")
    assert 0.9 < idle < 5


def test_memory_returns_after_large_bodies(file_store_url, start_gateway, start_echo):
    """50 requests with 8 MiB bodies, echoed back (8 MiB answers), 5 at a time: RSS goes back
    near where it started (the issue saw 37 → 387 MiB, never given back)."""
    import http.client

    gw = gateway_with_limits(
        file_store_url, start_gateway, start_echo, EMS_GATEWAY_BODY_TIMEOUT="60"
    )  # (8 MiB through a busy loopback may take longer than the 1.5 s above)
    path = "/ems-lim" + PREDICT + "?echo=1"
    for _ in range(5):
        assert gw.request("POST", path, b"{}")[0] == 200
    time.sleep(0.5)
    baseline = gw.rss_kib()
    body = b"x" * (8 << 20)
    peak, errors = [baseline], []

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
        try:
            for _ in range(n):
                conn.request("POST", path, body=body)
                resp = conn.getresponse()
                got = resp.read()
                if resp.status != 200 or len(got) != len(body):
                    errors.append(resp.status)
                peak.append(gw.rss_kib())
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(10,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    deadline, after = time.monotonic() + 10, gw.rss_kib()
    while after > baseline + 24 * 1024 and time.monotonic() < deadline:
        time.sleep(0.25)
        after = gw.rss_kib()
    print(f"\nRSS: {baseline / 1024:.1f} MiB before, {max(peak) / 1024:.1f} MiB peak during 50 "
          f"x 8 MiB in and out, {after / 1024:.1f} MiB after")  # fmt: skip
    assert after <= baseline + 24 * 1024


def read_responses(sock: socket.socket, n: int) -> list[int]:
    """Statuses of ``n`` HTTP/1.1 responses read in order (each with a Content-Length)."""
    buf, statuses = b"", []
    while len(statuses) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(statuses)} answers"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        statuses.append(int(head.split(b" ", 2)[1]))
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(buf) < length:
            buf += sock.recv(65536)
        buf = buf[length:]
    return statuses


def test_a_client_that_pipelines_without_reading_is_not_read(
    file_store_url, start_gateway, start_echo
):
    """200 pipelined 1 MiB requests, answers not read: the gateway queues at most 16 requests
    (or EMS_GATEWAY_MAX_BODY bytes) per connection and then stops reading it, so its memory
    stays bounded; once the client reads, every request is answered, in order."""
    gw = gateway_with_limits(
        file_store_url, start_gateway, start_echo, EMS_GATEWAY_BODY_TIMEOUT="60"
    )
    baseline = gw.rss_kib()
    one = request_line(b"/ems-lim" + PREDICT.encode(), b"Content-Length: %d\r\n\r\n" % (1 << 20))
    one += b"x" * (1 << 20)
    n = 200
    with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as sock:
        sender = threading.Thread(target=lambda: sock.sendall(one * n), daemon=True)
        sender.start()
        peak = baseline
        for _ in range(12):  # 3 s: the sender blocks once the gateway stops reading
            time.sleep(0.25)
            peak = max(peak, gw.rss_kib())
        assert sender.is_alive()  # nowhere near all of it was taken in
        statuses = read_responses(sock, n)
        sender.join(30)
    print(f"\npipelined 200 x 1 MiB without reading: RSS {baseline / 1024:.0f} MiB before, "
          f"{peak / 1024:.0f} MiB at most while the client did not read; {len(statuses)} "
          f"answered in order once it did")  # fmt: skip
    assert statuses == [200] * n
    assert peak < baseline + 100 * 1024


def test_a_pipelined_request_over_a_limit_is_answered_in_order(
    file_store_url, start_gateway, start_echo
):
    """The answer to a request still in flight comes first, then the 414 for the next one."""
    gw = gateway_with_limits(file_store_url, start_gateway, start_echo)
    slow = request_line(
        b"/ems-lim" + PREDICT.encode() + b"?sleep=0.5", b"Content-Length: 2\r\n\r\n{}"
    )
    long = request_line(b"/ems-lim" + PREDICT.encode() + b"?" + b"a" * 4000, b"\r\n")
    answer, closed, _ = exchange(gw.port, slow + long)
    first, _, rest = answer.partition(b"HTTP/1.1 414 ")
    assert first.startswith(b"HTTP/1.1 200 ") and b'"body_len": 2' in first, answer[:300]
    assert rest and b"2048 bytes" in rest and closed


def test_a_silent_new_connection_gets_the_head_timeout_not_the_keepalive(
    file_store_url, start_gateway, start_echo
):
    gw = gateway_with_limits(
        file_store_url, start_gateway, start_echo, EMS_GATEWAY_KEEPALIVE_TIMEOUT="30"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(100) == b""  # closed, nothing said (no request to answer)
        took = time.monotonic() - started
    assert took < 5
    with socket.create_connection(("127.0.0.1", gw.port), timeout=2.5) as used:
        used.sendall(request_line(b"/ems-lim" + PREDICT.encode(), b"Content-Length: 2\r\n\r\n{}"))
        assert used.recv(65536).startswith(b"HTTP/1.1 200 ")
        with contextlib.suppress(TimeoutError):
            assert used.recv(100) != b"", "closed before the keep-alive timeout"
    print(f"\na connection that never sends a byte is closed after {took:.2f}s (head timeout 1 s)")

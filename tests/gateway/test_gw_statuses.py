"""Every status the gateway answers, tokens (other service, rotation, revoke), header hygiene."""

from __future__ import annotations

import time

from gateway.tokens import generate_token, rotate_hashes, token_sha256
from tests.conftest import service_missing
from tests.gateway.conftest import PREDICT_BODY, route

PREDICT = "/v1/models/m:predict"


def test_predict_with_token_path_and_host(store, store_url, start_gateway, start_runtime):
    srv = start_runtime()
    token = generate_token()
    gen = store.publish(route("ems-aaa1", [("i1", srv.url)], [token_sha256(token)]))
    gw = start_gateway(store_url)
    gw.wait_generation(gen)
    status, direct = srv.request("POST", PREDICT, PREDICT_BODY)
    assert status == 200
    ok = {"x-Auth-Token": token}
    status, headers, body = gw.request("POST", "/ems-aaa1" + PREDICT, PREDICT_BODY, ok)
    assert (status, body) == (200, direct)
    assert headers["content-type"].startswith("application/json")
    status, _, body = gw.request("POST", PREDICT, PREDICT_BODY, ok, host="ems-aaa1.ems.localhost")
    assert (status, body) == (200, direct)
    status, _, body = gw.request("GET", "/ems-aaa1/v1/models/m", None, ok)
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    # counted per service in the gateway's own metrics
    metrics = gw.request("GET", "/metrics", port=gw.admin_port)[2]
    assert 'ems_gateway_requests_total{service="ems-aaa1",code="200"} 3' in metrics
    assert 'ems_gateway_request_duration_seconds_count{service="ems-aaa1"} 3' in metrics


def test_401_missing_wrong_and_other_services_token(store, store_url, start_gateway, start_echo):
    url = start_echo("a")
    token_a, token_b = generate_token(), generate_token()
    store.publish(route("ems-a", [("i1", url)], [token_sha256(token_a)]))
    gen = store.publish(route("ems-b", [("i2", url)], [token_sha256(token_b)]))
    gw = start_gateway(store_url)
    gw.wait_generation(gen)
    for headers in ({}, {"x-Auth-Token": "nope"}, {"x-Auth-Token": token_b}):
        status, _, body = gw.request("POST", "/ems-a" + PREDICT, PREDICT_BODY, headers)
        assert status == 401 and "token" in body["error"]
    assert gw.request("POST", "/ems-a" + PREDICT, {}, {"x-Auth-Token": token_a})[0] == 200
    assert gw.request("POST", "/ems-b" + PREDICT, {}, {"X-AUTH-TOKEN": token_b})[0] == 200


def test_auth_off_needs_no_token(store, store_url, start_gateway, start_echo):
    gen = store.publish(route("ems-open", [("i1", start_echo("a"))]))
    gw = start_gateway(store_url)
    gw.wait_generation(gen)
    assert gw.request("POST", "/ems-open" + PREDICT, {})[0] == 200


def test_404_503_413(store, store_url, start_gateway, start_echo):
    url = start_echo("a")
    token = generate_token()
    store.publish(route("ems-big", [("i1", url)], [token_sha256(token)]))
    gen = store.publish(route("ems-idle", [("i1", url, "starting")], [token_sha256(token)]))
    gw = start_gateway(store_url, EMS_GATEWAY_MAX_BODY="1000")
    gw.wait_generation(gen)
    ok = {"x-Auth-Token": token}
    status, _, body = gw.request("POST", "/ems-nope" + PREDICT, {}, ok)
    assert status == 404 and "ems-nope" in body["error"]
    assert gw.request("POST", "/ems-big/metrics", {}, ok)[0] == 404  # only /v1/ is served
    status, headers, body = gw.request("POST", "/ems-idle" + PREDICT, {}, ok)
    assert status == 503 and headers["retry-after"] == "1" and "healthy" in body["error"]
    status, _, body = gw.request("POST", "/ems-big" + PREDICT, b"x" * 1001, ok)
    assert status == 413 and "limit" in body["error"]
    assert gw.request("POST", "/ems-big" + PREDICT, b"x" * 1000, ok)[0] == 200
    # an unauthenticated caller learns nothing about the body limit: 401 comes first, both
    # when the declared length is over it (answered before the body is read) and when it
    # is not declared (chunked: counted while reading)
    for headers in ({}, {"x-Auth-Token": "wrong"}):
        status, _, body = gw.request("POST", "/ems-big" + PREDICT, b"x" * 1001, headers)
        assert status == 401 and "limit" not in body["error"], body
        status, _, body = gw.request("POST", "/ems-big" + PREDICT, iter([b"x" * 1001]), headers)
        assert status == 401 and "limit" not in body["error"], body
    status, _, body = gw.request("POST", "/ems-big" + PREDICT, iter([b"x" * 1001]), ok)
    assert status == 413 and "limit" in body["error"]
    # an unknown service is a 404 whatever the size
    assert gw.request("POST", "/ems-nope" + PREDICT, b"x" * 1001)[0] == 404


def test_502_refused_and_504_timeout(file_store_url, start_gateway, start_echo):
    from gateway.routes import open_store

    store = open_store(file_store_url)
    store.publish(route("ems-dead", [("i1", "http://127.0.0.1:9")]))  # nothing listens on 9
    gen = store.publish(route("ems-slow", [("i2", start_echo("slow"))]))
    gw = start_gateway(file_store_url, EMS_GATEWAY_UPSTREAM_TIMEOUT="0.3")
    gw.wait_generation(gen)
    status, _, body = gw.request("POST", "/ems-dead" + PREDICT, {})
    assert status == 502 and "refused" in body["error"]
    # the upstream would answer 200 after 5 s; a 504 naming the 0.3 s timeout is the proof
    # that the gateway gave up first (no wall-clock bound to flake on a loaded machine)
    status, _, body = gw.request("POST", "/ems-slow" + PREDICT + "?sleep=5", {})
    assert status == 504 and "timed out after 0.3s" in body["error"], body
    # the instance that timed out is ejected (503 at once) until a probe re-admits it
    status, headers, body = gw.request("POST", "/ems-slow" + PREDICT, {})
    assert (status, headers["retry-after"]) == (503, "1") and "answering" in body["error"]
    deadline = time.monotonic() + 10
    while gw.request("POST", "/ems-slow" + PREDICT, {})[0] != 200:  # the pool recovers
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.1)


def test_rotation_grace_then_401(store, store_url, start_gateway, start_echo):
    url = start_echo("a")
    old, new = generate_token(), generate_token()
    # within the grace (long enough that a loaded machine cannot run past it) both tokens work
    hashes, not_after = rotate_hashes([token_sha256(old)], None, token_sha256(new), 600)
    gen = store.publish(route("ems-rot", [("i1", url)], hashes, not_after))
    gw = start_gateway(store_url)
    gw.wait_generation(gen)
    path = "/ems-rot" + PREDICT
    assert gw.request("POST", path, {}, {"x-Auth-Token": old})[0] == 200
    assert gw.request("POST", path, {}, {"x-Auth-Token": new})[0] == 200
    # the same route with the old token's grace ending in a moment: once that moment has
    # passed (we wait for it, however long the machine takes), the old token gets 401
    deadline = time.time() + 0.5
    gen = store.publish(route("ems-rot", [("i1", url)], hashes, {token_sha256(old): deadline}))
    gw.wait_generation(gen, timeout=15)
    while time.time() <= deadline:
        time.sleep(0.05)
    assert gw.request("POST", path, {}, {"x-Auth-Token": old})[0] == 401
    assert gw.request("POST", path, {}, {"x-Auth-Token": new})[0] == 200


def test_revoke_401_once_generation_applied(store, store_url, start_gateway, start_echo):
    url = start_echo("a")
    keep, revoked = generate_token(), generate_token()
    both = [token_sha256(keep), token_sha256(revoked)]
    gen = store.publish(route("ems-rev", [("i1", url)], both))
    gw = start_gateway(store_url)
    gw.wait_generation(gen)
    path = "/ems-rev" + PREDICT
    assert gw.request("POST", path, {}, {"x-Auth-Token": revoked})[0] == 200
    gen = store.publish(route("ems-rev", [("i1", url)], [token_sha256(keep)]))
    assert store.wait_applied(gen, timeout=5)
    assert gw.generation() >= gen
    assert gw.request("POST", path, {}, {"x-Auth-Token": revoked})[0] == 401
    assert gw.request("POST", path, {}, {"x-Auth-Token": keep})[0] == 200


def test_strips_token_and_hop_by_hop_headers(file_store_url, start_gateway, start_echo):
    from gateway.routes import open_store

    token = generate_token()
    gen = open_store(file_store_url).publish(
        route("ems-hdr", [("i1", start_echo("a"))], [token_sha256(token)])
    )
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    sent = {
        "x-Auth-Token": token,
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic eA==",
        "X-Request-Id": "abc",
    }
    status, headers, body = gw.request("POST", "/ems-hdr" + PREDICT + "?q=1", {"a": 1}, sent)
    assert status == 200
    seen = dict(body["headers"])
    for name in ("x-auth-token", "x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in seen, name
    assert seen["x-request-id"] == "abc" and seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["host"].startswith("127.0.0.1:")
    assert body["path"] == PREDICT + "?q=1" and body["body_len"] == len(b'{"a": 1}')
    assert "keep-alive" not in headers  # the upstream's hop-by-hop answer header is dropped


def test_expect_100_continue_and_405(file_store_url, start_gateway, start_echo):
    import socket

    from gateway.routes import open_store

    gen = open_store(file_store_url).publish(route("ems-exp", [("i1", start_echo("a"))]))
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    body = b'{"pad": "' + b"x" * 4000 + b'"}'
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(
            b"POST /ems-exp/v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the body
        sock.sendall(body)
        answer = b""
        while b'"body_len"' not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"expect"' not in answer  # the upstream got the whole body, no Expect
    for method in ("DELETE", "PUT", "HEAD"):
        status, _, _ = gw.request(method, "/ems-exp" + PREDICT)
        assert status == 405


def test_the_seed_curl_line(tmp_path, file_store_url, start_gateway, start_runtime):
    """SPEC step 5, verbatim, with a body big enough that curl sends Expect: 100-continue."""
    import json
    import shutil
    import subprocess

    from gateway.routes import open_store

    if shutil.which("curl") is None:
        service_missing("no curl on PATH (the README's step 5 uses it)")
    srv = start_runtime()
    token = generate_token()
    gen = open_store(file_store_url).publish(
        route("ems-curl", [("i1", srv.url)], [token_sha256(token)])
    )
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    idx = list(range(0, 120, 1))
    (tmp_path / "body.json").write_text(
        json.dumps({"instances": [{"sparseIndices": idx, "sparseValues": [0.5] * len(idx)}]})
    )
    assert (tmp_path / "body.json").stat().st_size > 1024
    for address, extra in (
        (f"{gw.url}/ems-curl", []),
        (gw.url, ["-H", "Host: ems-curl.ems.localhost"]),
    ):
        seed = ["curl", "-sS", "-v", "-H", "Content-Type: application/json"]
        tail = ["-X", "POST", f"{address}/v1/models/m:predict", "-d", "@body.json"]
        out = subprocess.run(
            [*seed, "-H", f"x-Auth-Token: {token}", *extra, *tail],
            cwd=tmp_path,
            capture_output=True,
            check=True,
            timeout=10,
        )
        # where curl asks (Expect: 100-continue; curl 7.x does above 1 KiB) the gateway answers
        # before the body, so curl never sits out its 1 s expect timeout (shown by the
        # exchange itself, not by a stopwatch)
        trace = out.stderr.decode(errors="replace")
        if "> Expect: 100-continue" in trace:
            assert "< HTTP/1.1 100 Continue" in trace, trace
        assert set(json.loads(out.stdout)["predictions"][0]) == {"pred", "proba", "predLabel"}


def test_admin_listener_keeps_own_endpoints_off_the_public_port(
    file_store_url, start_gateway, start_echo
):
    from gateway.routes import open_store

    gen = open_store(file_store_url).publish(route("ems-adm", [("i1", start_echo("a"))]))
    gw = start_gateway(file_store_url, admin=True)
    gw.wait_generation(gen)
    assert gw.request("POST", "/ems-adm" + PREDICT, {})[0] == 200
    for path in ("/metrics", "/-/healthz", "/-/generation", "/-/inflight"):
        assert gw.request("GET", path)[0] == 404, path  # public: no service list, no counts
        assert gw.request("GET", path, port=gw.admin_port)[0] == 200, path
    assert gw.request("POST", "/ems-adm" + PREDICT, {}, port=gw.admin_port)[0] == 404
    assert 'service="ems-adm"' in gw.request("GET", "/metrics", port=gw.admin_port)[2]


def test_refused_route_answers_403_with_its_message_and_proxies_nothing(
    file_store_url, start_gateway, start_echo
):
    from gateway.routes import RouteError, make_route, open_store

    url = start_echo("a")
    store = open_store(file_store_url)
    message = "the account 1234567890 is suspended: unpaid bills"
    refused = make_route(
        service_id="ems-sus",
        tenant_id=1,
        auth=True,
        token_sha256=[token_sha256(generate_token())],
        instances=[{"id": "i1", "url": url, "state": "healthy"}],
        refuse=message,
    )
    gen = store.publish(refused)
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    for path in (PREDICT, "/v1/models/m"):
        status, headers, body = gw.request("POST", "/ems-sus" + path, {})
        assert (status, body) == (403, {"error": message})
        assert headers["content-type"].startswith("application/json")
    # lifted: the same service answers again (here: its token is required)
    gen = store.publish(route("ems-sus", [("i1", url)]))
    gw.wait_generation(gen)
    assert gw.request("POST", "/ems-sus" + PREDICT, {})[0] == 200
    try:
        make_route(service_id="x", tenant_id=1, auth=False, refuse=["no"])
    except RouteError as exc:
        assert "refuse" in str(exc)
    else:
        raise AssertionError("a non-string refuse message was accepted")


def test_admin_endpoints_default_to_loopback_next_port(file_store_url):
    """With no EMS_GATEWAY_ADMIN_BIND the admin endpoints listen on 127.0.0.1:<port + 1>;
    the public port answers 404 for them."""
    import socket
    import subprocess
    import sys

    from tests.gateway.conftest import ROOT, gateway_env

    for _ in range(20):  # a free port whose successor is free too
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                with socket.socket() as b:
                    b.bind(("127.0.0.1", port + 1))
                break
            except OSError:
                continue
    env = gateway_env()
    env.pop("EMS_GATEWAY_ADMIN_BIND", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "--bind",
            f"127.0.0.1:{port}",
            "--routes",
            file_store_url,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import http.client

        def get(p, path):
            conn = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
            try:
                conn.request("GET", path)
                return conn.getresponse().status
            finally:
                conn.close()

        deadline = time.monotonic() + 20
        while True:
            try:
                if get(port + 1, "/-/healthz") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "no admin listener"
            time.sleep(0.05)
        for path in ("/metrics", "/-/healthz", "/-/generation"):
            assert get(port, path) == 404, path
            assert get(port + 1, path) == 200, path
    finally:
        proc.terminate()
        proc.wait(10)

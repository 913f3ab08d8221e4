"""Requests that follow each other on one keep-alive connection.

The gateway remembers, per client connection, the route its last request resolved to and the
token that last matched (so the SHA-256 is not computed again for every request). These tests
prove that what is remembered never outlives a change: a revoked or expired token, a deleted or
republished route, another token on the same connection — each is seen by the very next
request on the same connection.
"""

from __future__ import annotations

import http.client
import json
import time

from gateway.routes import open_store
from gateway.tokens import generate_token, token_sha256
from tests.gateway.conftest import route

PREDICT = "/v1/models/m:predict"


class KeepAlive:
    """One HTTP/1.1 connection to the gateway, reused for every request (fails if it closes)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.sock = None

    def post(self, path: str, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["x-Auth-Token"] = token
        self.conn.request("POST", path, body=b"{}", headers=headers)
        if self.sock is None:
            self.sock = self.conn.sock
        assert self.conn.sock is self.sock, "the gateway closed the keep-alive connection"
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else {}

    def close(self) -> None:
        self.conn.close()


def test_revoked_and_other_tokens_on_one_connection(file_store_url, start_gateway, start_echo):
    url = start_echo("a")
    keep, revoked, other = generate_token(), generate_token(), generate_token()
    store = open_store(file_store_url)
    gen = store.publish(route("ems-ka", [("i1", url)], [token_sha256(keep), token_sha256(revoked)]))
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    path = "/ems-ka" + PREDICT
    c = KeepAlive(gw.port)
    try:
        assert c.post(path, revoked)[0] == 200
        assert c.post(path, revoked)[0] == 200  # the remembered match
        assert c.post(path, other)[0] == 401  # another token right after a good one
        assert c.post(path, revoked[:-1])[0] == 401  # a prefix of the good one
        assert c.post(path)[0] == 401  # none at all
        assert c.post(path, keep)[0] == 200
        assert c.post(path, revoked)[0] == 200
        gen = store.publish(route("ems-ka", [("i1", url)], [token_sha256(keep)]))  # revoke
        gw.wait_generation(gen)
        assert c.post(path, revoked)[0] == 401  # the next request on the same connection
        assert c.post(path, keep)[0] == 200
    finally:
        c.close()


def test_a_token_expires_on_a_connection_that_keeps_using_it(
    file_store_url, start_gateway, start_echo
):
    url = start_echo("a")
    token = generate_token()
    deadline = time.time() + 1.0
    h = token_sha256(token)
    gen = open_store(file_store_url).publish(route("ems-kx", [("i1", url)], [h], {h: deadline}))
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    path = "/ems-kx" + PREDICT
    c = KeepAlive(gw.port)
    try:
        if time.time() < deadline - 0.2:  # a loaded machine may start the gateway late
            assert c.post(path, token)[0] == 200
        while time.time() <= deadline:
            time.sleep(0.05)
        assert c.post(path, token)[0] == 401  # expiry is checked on every request
    finally:
        c.close()


def test_a_deleted_or_moved_route_on_one_connection(file_store_url, start_gateway, start_echo):
    a, b = start_echo("a"), start_echo("b")
    store = open_store(file_store_url)
    gen = store.publish(route("ems-km", [("i1", a)]))
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    path = "/ems-km" + PREDICT
    c = KeepAlive(gw.port)
    try:
        status, body = c.post(path)
        assert status == 200 and body["name"] == "a"
        gen = store.publish(route("ems-km", [("i2", b)]))  # moved to another instance
        gw.wait_generation(gen)
        assert c.post(path)[1]["name"] == "b"
        gen = store.delete("ems-km")
        gw.wait_generation(gen)
        assert c.post(path)[0] == 404
        token = generate_token()
        gen = store.publish(route("ems-km", [("i1", a)], [token_sha256(token)]))  # auth on
        gw.wait_generation(gen)
        assert c.post(path)[0] == 401
        assert c.post(path, token)[0] == 200
    finally:
        c.close()

"""What a batch job reads and writes: input lines out of object storage, batches to an
instance's ``:predict``, part objects and the assembled output files. No database here.

Input lines: a ``.jsonl`` file is split on ``\\n`` (a ``\\r`` before it dropped; a last line
without ``\\n`` counts); each line is one instance. A ``.json`` file holds a JSON array of
instances or ``{"instances": [...]}``; each item is one line of the output.

Output lines: one per input line, in order — the prediction (compact JSON) or
``{"error": "..."}``.
"""

from __future__ import annotations

import itertools
import queue
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from urllib.parse import urlsplit

import httptools
import orjson  # the runtime server's JSON library (runtimes/requirements.txt): C speed per line

MODEL_NAME = "m"
CHUNK = 1 << 16
_BAD = object()


class Unavailable(Exception):
    """No instance answered (connection refused, reset, timed out): the part is released and
    tried again. ``reached``: an instance took the batch and then failed it (reset, timed out
    — a line that kills or hangs the runtime looks like this), which counts as a lost run of
    the part; only refused or unreachable instances (restarting, a node going down) do not."""

    def __init__(self, message: str, *, reached: bool = False):
        super().__init__(message)
        self.reached = reached


class BadInputFile(Exception):
    """A ``.json`` input file that is not an array of instances: the job cannot run."""


# --- input --------------------------------------------------------------------------------------
def iter_raw_lines(stream) -> Iterator[bytes]:
    """The lines of a byte stream, without their ``\\n`` (and ``\\r``), read in chunks."""
    rest = b""
    while chunk := stream.read(CHUNK):
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for line in lines:
            yield line[:-1] if line.endswith(b"\r") else line
    if rest:
        yield rest[:-1] if rest.endswith(b"\r") else rest


def count_lines(stream) -> int:
    return scan_lines(stream, 0)[0]


def scan_lines(stream, every: int) -> tuple[int, list[int], int]:
    """One pass over a .jsonl stream: (its lines, the byte offsets where lines 0, ``every``,
    2·``every``, … start — one per part of ``every`` lines —, its size). ``every`` 0: no
    offsets. The offsets let a part read only its own bytes (``read_lines``)."""
    starts, count, offset, last = [0], 0, 0, b"\n"
    while chunk := stream.read(CHUNK):
        n = chunk.count(b"\n")
        pos, seen = -1, count  # the last newline found in this chunk, newlines up to it
        while every and count + n >= len(starts) * every:
            target = len(starts) * every  # the newline that ends line target - 1
            while seen < target:
                pos = chunk.find(b"\n", pos + 1)
                seen += 1
            starts.append(offset + pos + 1)
        count += n
        offset += len(chunk)
        last = chunk[-1:]
    lines = count + (0 if last == b"\n" else 1)
    return lines, starts[: -(-lines // every)] if every else [], offset


def json_items(data: bytes, name: str) -> list:
    """The instances of a ``.json`` input file."""
    try:
        value = orjson.loads(data)
    except ValueError as exc:
        raise BadInputFile(f"{name} is not valid JSON ({exc}).") from None
    if isinstance(value, dict) and isinstance(value.get("instances"), list):
        return value["instances"]
    if isinstance(value, list):
        return value
    raise BadInputFile(
        f'{name} holds neither a JSON array of instances nor {{"instances": [...]}}.'
    )


def parse_line(raw: bytes, number: int):
    """(the line's JSON text, None) or (_BAD, error message) for line ``number`` (1-based).
    The line is parsed to check it; the text itself goes into the request unchanged."""
    text = raw.strip()
    if not text:
        return _BAD, f"line {number} is empty"
    try:
        orjson.loads(text)
    except ValueError as exc:
        return _BAD, f"line {number} is not JSON: {exc}"
    return bytes(text), None


def check_lines(raw: list[bytes], first: int) -> tuple[list[bytes], dict[int, str]]:
    """The JSON texts of the good lines among ``raw`` (line ``first`` and on, 1-based), in
    order, and ``{index in raw: error}`` of the bad ones. Each line must be one JSON value: the
    texts are joined into a request unchanged, so a line such as ``1,2`` would shift every
    prediction after it. The common case — every line good — costs one C call per line."""
    try:
        for _ in map(orjson.loads, raw):
            pass
    except ValueError:
        pass
    else:
        return raw, {}
    texts, bad = [], {}
    for i, line in enumerate(raw):
        text, error = parse_line(line, first + i)
        if error is None:
            texts.append(text)
        else:
            bad[i] = error
    return texts, bad


def read_lines(
    storage,
    bucket: str,
    key: str,
    fmt: str,
    start: int,
    end: int,
    byte_range: tuple[int, int] | None = None,
) -> list[bytes]:
    """Lines ``[start, end)`` of an input file, without their ``\\n`` (and ``\\r``): for a
    .jsonl part planned with its byte range, one ranged read of those bytes; otherwise the file
    read from its beginning (a .json file is one JSON value: read whole, items re-encoded)."""
    if fmt == "json":
        with storage.open(bucket, key) as stream:
            items = json_items(stream.read(), key)
        return list(map(_compact, items[start:end]))
    if byte_range is not None:
        with storage.open_range(bucket, key, *byte_range) as stream:
            data = stream.read()
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        if len(lines) == end - start:  # else the file changed since planning: count again
            if b"\r" in data:
                lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
            return lines
    out = []
    with storage.open(bucket, key) as stream:
        for index, raw in enumerate(iter_raw_lines(stream)):
            if index >= end:
                break
            if index >= start:
                out.append(raw)
    return out


def _compact(value) -> bytes:
    return orjson.dumps(value)


# --- predictions --------------------------------------------------------------------------------
_local = threading.local()
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict".encode()


class _Answer:
    """httptools callbacks: the status, the body's pieces, whether the connection may be
    kept (known once the headers are read) and whether the answer is complete."""

    def __init__(self):
        self.body: list[bytes] = []
        self.done = self.keep = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.keep = self.parser.should_keep_alive()
        self.status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.done = True


class Connection:
    """One kept-alive HTTP/1.1 connection to an instance. A request is written whole in one
    ``sendall``; the answer is parsed by httptools (C: status, headers, Content-Length or
    chunked). Cheaper than ``http.client``, whose header parsing (``email.parser``) cost a
    batch job's worker more CPU per batch than everything else it does with the answer."""

    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed
        self.head = b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n" % (
            PREDICT_PATH,
            name.encode("idna"),
            port,
        )

    def post(self, body: bytes) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection may be used again)."""
        self.sock.sendall(b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body))
        answer = _Answer()
        while not answer.done:
            data = self.sock.recv(CHUNK)
            if not data:
                raise ConnectionResetError("the instance closed the connection")
            answer.parser.feed_data(data)
        return answer.status, b"".join(answer.body), answer.keep

    def close(self) -> None:
        self.sock.close()


def _connection(address: str, timeout: float) -> Connection:
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(address)
    if conn is None:
        parts = urlsplit(address)
        conn = Connection(parts.hostname, parts.port or 80, timeout)
        conns[address] = conn
    return conn


def _drop(address: str) -> None:
    conn = getattr(_local, "conns", {}).pop(address, None)
    if conn is not None:
        conn.close()


def post_predict(address: str, body: bytes, *, timeout: float = 120.0) -> tuple[int, dict]:
    """One ``POST <address>/v1/models/m:predict`` over a kept-alive connection of this thread;
    returns (status, JSON body). Raises ``Unavailable`` on a connection failure."""
    for attempt in (0, 1):  # a kept-alive connection the server closed: one fresh try
        try:
            conn = _connection(address, timeout)
        except OSError as exc:  # refused, unreachable: the batch never reached an instance
            raise Unavailable(f"{address}: {type(exc).__name__}: {exc}") from None
        try:
            status, data, keep = conn.post(body)
        except (OSError, httptools.HttpParserError) as exc:
            _drop(address)
            if attempt:  # a fresh connection took the batch, then failed
                raise Unavailable(f"{address}: {type(exc).__name__}: {exc}", reached=True) from None
            continue
        if not keep:
            _drop(address)
        try:
            return status, orjson.loads(data or b"{}")
        except ValueError:
            return status, {"error": data[:500].decode(errors="replace")}
    raise Unavailable(address)  # not reached


def _body(instances: list[bytes], signature_name: str) -> bytes:
    """The request for instances given as JSON texts (each checked to be one JSON value)."""
    tail = b"]"
    if signature_name:
        tail += b',"signature_name":' + _compact(signature_name)
    return b'{"instances":[' + b",".join(instances) + tail + b"}"


class BatchPool:
    """A worker process's batches in flight: ``size`` threads (each keeps its own connections
    to the instances) that take the batches of the part that started first before any of a
    later part's. Parts run at once (the worker's concurrency) so finish one after the other:
    one part's bookkeeping (its output object, its count, the next part's read) overlaps
    another part's batches, instead of every part finishing together and the instances waiting
    for the next ones (what a first-in first-out pool did)."""

    def __init__(self, size: int):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        for n in range(size):
            threading.Thread(target=self._work, name=f"job-batch-{n}", daemon=True).start()

    def rank(self) -> int:
        """A part's place: its batches go before those of parts ranked later."""
        return next(self._order)

    def submit(self, rank: int, fn, *args) -> Future:
        future: Future = Future()
        self._queue.put((rank, next(self._order), future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            _, _, future, fn, args = self._queue.get()
            if not future.set_running_or_notify_cancel():  # its part gave up (lease lost)
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)


class Predictor:
    """Sends batches to a set of instance addresses, spread round-robin, each batch with a
    bounded retry on another instance when one is unreachable."""

    RETRIES = 6

    def __init__(self, addresses: list[str], *, signature_name: str = "", offset: int = 0):
        if not addresses:
            raise Unavailable("no running instance")
        self.addresses = list(addresses)
        self.signature_name = signature_name
        self._next = offset
        self._lock = threading.Lock()

    def _pick(self) -> str:
        with self._lock:
            address = self.addresses[self._next % len(self.addresses)]
            self._next += 1
            return address

    def _send(self, instances: list[bytes]) -> tuple[int, dict]:
        body = _body(instances, self.signature_name)
        last, reached = "", False
        for attempt in range(self.RETRIES):
            address = self._pick()
            try:
                status, answer = post_predict(address, body)
            except Unavailable as exc:
                last, reached = str(exc), reached or exc.reached
                time.sleep(min(0.2 * 2**attempt, 3.0))
                continue
            if status >= 500 and attempt == 0:
                last = f"{address}: HTTP {status}"
                continue  # once more, maybe on another instance
            return status, answer
        raise Unavailable(last, reached=reached)

    def predict(self, instances: list[bytes]) -> tuple[list[bytes], dict[int, str]]:
        """The output line of each instance (a JSON text), in order — its prediction or
        ``{"error": …}`` —, and ``{index: error}`` of those that failed. A batch the model
        refuses is retried line by line, so only the bad lines fail. The answer is decoded once
        and each prediction encoded back by orjson (C, no Python loop per line)."""
        status, answer = self._send(instances)
        predictions = answer.get("predictions") if status == 200 else None
        if isinstance(predictions, list) and len(predictions) == len(instances):
            return list(map(orjson.dumps, predictions)), {}
        if len(instances) == 1:
            error = answer.get("error") if isinstance(answer, dict) else None
            if status == 200:
                error = "the model answered without one prediction for the instance"
            error = str(error or f"HTTP {status}")
            return [error_line(error)], {0: error}
        out, errors = [], {}
        for i, instance in enumerate(instances):
            (line,), error = self.predict([instance])
            out.append(line)
            if error:
                errors[i] = error[0]
        return out, errors


def error_line(error: str) -> bytes:
    return orjson.dumps({"error": error})


# --- assembly -----------------------------------------------------------------------------------
class ChainReader:
    """A read-only stream over several objects one after the other (object stores have no
    append: an output file is written once, from its parts, in one streamed upload)."""

    def __init__(self, storage, bucket: str, keys: list[str]):
        self.storage, self.bucket, self.keys = storage, bucket, list(keys)
        self._current = None

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._current is None:
                if not self.keys:
                    return b""
                self._current = self.storage.open(self.bucket, self.keys.pop(0))
            data = self._current.read(size if size and size > 0 else CHUNK)
            if data:
                return data
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

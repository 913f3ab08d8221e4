"""Units of batch jobs: reading input lines, planning parts, claims and leases (a part counts
once whoever finishes it), assembly of part objects into one output file."""

from __future__ import annotations

import io
import itertools
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from serving import services as serving
from serving.jobs import io as jobio
from serving.jobs import runner
from serving.jobs import services as jobs
from serving.jobs.models import Job, JobFile, JobPart
from tests.serving import jobs_flow as flow
from tests.serving.conftest import make_version


class Chunks:
    """A stream that answers reads in small pieces (lines cross chunk boundaries)."""

    def __init__(self, data: bytes, size: int = 3):
        self.data, self.size = data, size

    def read(self, _n: int = -1) -> bytes:
        chunk, self.data = self.data[: self.size], self.data[self.size :]
        return chunk


def test_lines_across_chunks_crlf_and_a_last_line_without_newline(monkeypatch):
    monkeypatch.setattr(jobio, "CHUNK", 3)
    data = b'{"a": 1}\r\n\nnot json\n[1, 2]'
    assert list(jobio.iter_raw_lines(Chunks(data))) == [b'{"a": 1}', b"", b"not json", b"[1, 2]"]
    assert jobio.count_lines(Chunks(data)) == 4
    assert jobio.count_lines(Chunks(b"x\ny\n")) == 2
    assert jobio.count_lines(Chunks(b"")) == 0
    assert jobio.parse_line(b' {"a": 1} ', 1) == (b'{"a": 1}', None)
    assert jobio.parse_line(b"  ", 2)[1] == "line 2 is empty"
    assert jobio.parse_line(b"not json", 3)[1].startswith("line 3 is not JSON")


@pytest.mark.parametrize("chunk", [3, 7, 1 << 16])
@pytest.mark.parametrize(
    "data",
    [b"", b"a\n", b"a\nbb\nccc\n", b"a\nbb\nccc\ndddd", b"a\nbb\nccc\ndddd\n", b"\n\n\n\n\n"],
)
@pytest.mark.parametrize("every", [1, 2, 3])
def test_scan_lines_finds_where_each_part_starts(monkeypatch, chunk, data, every):
    monkeypatch.setattr(jobio, "CHUNK", chunk)
    lines, starts, size = jobio.scan_lines(Chunks(data, chunk), every)
    assert lines == jobio.count_lines(Chunks(data)) and size == len(data)
    expected = list(jobio.iter_raw_lines(Chunks(data)))
    assert len(starts) == -(-lines // every)  # one per part
    bounds = [*starts, size]
    for index, (begin, end) in enumerate(itertools.pairwise(bounds)):
        part = data[begin:end].split(b"\n")
        part = part[:-1] if part[-1] == b"" else part
        assert part == expected[index * every : (index + 1) * every]


def test_check_lines_keeps_good_lines_and_names_bad_ones():
    good = [b'{"a": 1}', b"[1, 2]", b" 3 "]
    texts, bad = jobio.check_lines(good, 10)
    assert (texts, bad) == (good, {})  # unchanged: sent as they are
    # a line of two values would shift every prediction after it: it is an error of its own
    texts, bad = jobio.check_lines([b"[1", b"2]", b"1,2", b"", b" 4"], 5)
    assert texts == [b"4"]
    assert bad[0].startswith("line 5 is not JSON") and bad[2].startswith("line 7 is not JSON")
    assert bad[3] == "line 8 is empty" and set(bad) == {0, 1, 2, 3}


def test_read_lines_reads_only_its_byte_range(owner):
    from tests.models_repo.conftest import tenant_store

    store, bucket = tenant_store(owner.tenant), f"rng-{owner.tenant.app_id}"
    store.create_bucket(bucket, region="ap-beijing")
    store.write(bucket, "x.jsonl", io.BytesIO(b"1\r\n22\n333\n4444"))
    read = jobio.read_lines
    assert read(store, bucket, "x.jsonl", "jsonl", 1, 3, (3, 10)) == [b"22", b"333"]
    assert read(store, bucket, "x.jsonl", "jsonl", 3, 4, (10, 14)) == [b"4444"]
    assert read(store, bucket, "x.jsonl", "jsonl", 0, 2, None) == [b"1", b"22"]
    # the file changed since planning (the range holds other lines): read by line numbers
    assert read(store, bucket, "x.jsonl", "jsonl", 0, 2, (0, 3)) == [b"1", b"22"]


def test_json_files_hold_an_array_or_instances():
    assert jobio.json_items(b"[1, 2]", "x.json") == [1, 2]
    assert jobio.json_items(b'{"instances": [{"a": 1}]}', "x.json") == [{"a": 1}]
    with pytest.raises(jobio.BadInputFile, match=r"x\.json is not valid JSON"):
        jobio.json_items(b"[1,", "x.json")
    with pytest.raises(jobio.BadInputFile, match="neither a JSON array"):
        jobio.json_items(b'{"rows": []}', "x.json")


@pytest.fixture
def job(owner, dedicated, settings):
    settings.EMS_JOB_PART_BATCHES = 2
    version = make_version(owner, flow.EXAMPLE_MODEL, name="classifier")
    source, target, _ = flow.seed_inputs(owner.tenant)
    return jobs.job_create(
        actor=owner.membership,
        version=version,
        group=dedicated,
        name="units",
        size=serving.InstanceSize(cpu_millicores=500, memory_mib=512),
        input_url=source,
        output_url=target,
        batch_size=32,
        max_failed=2,
    )


def test_plan_splits_each_file_into_parts_once(job):
    assert runner.plan(job) and runner.plan(job)  # the second is a no-op
    job.refresh_from_db()
    assert job.total == 1000
    lines = dict(JobFile.objects.filter(job=job).values_list("input_key", "lines"))
    assert lines == {"in/a.jsonl": 400, "in/c.json": 250, "in/sub/b.jsonl": 350}
    first = JobFile.objects.get(job=job, index=0)
    ranges = list(first.parts.order_by("index").values_list("start", "end"))
    assert ranges == [(s, min(s + 64, 400)) for s in range(0, 400, 64)]
    # each .jsonl part knows its bytes: they hold exactly its lines
    from tests.models_repo.conftest import tenant_store

    store, bucket = tenant_store(job.tenant), f"data-{job.tenant.app_id}"
    data = store.read(bucket, "in/a.jsonl")
    lines = data.split(b"\n")[:-1]
    for part in first.parts.order_by("index"):
        chunk = data[part.byte_start : part.byte_end]
        assert chunk.split(b"\n")[:-1] == lines[part.start : part.end]
    assert part.byte_end == len(data)
    json_file = JobFile.objects.get(job=job, index=1)
    assert set(json_file.parts.values_list("byte_start", flat=True)) == {None}
    assert JobPart.objects.filter(job=job).count() == 7 + 4 + 6


def test_parts_hold_whole_batches_and_about_part_bytes_of_input(job, settings):
    """A part is at most EMS_JOB_PART_BATCHES batches, fewer when its input would pass
    EMS_JOB_PART_BYTES (small lines make long parts: a part's bookkeeping costs the same)."""
    assert runner.part_lines(32, 1000, 10_000) == 64  # 2 batches (the job's setting)
    settings.EMS_JOB_PART_BYTES = 5 * 32 * 10  # 5 batches of 10-byte lines
    settings.EMS_JOB_PART_BATCHES = 100
    assert runner.part_lines(32, 1000, 10_000) == 5 * 32
    assert runner.part_lines(32, 1000, 10_000_000) == 32  # at least one batch
    assert runner.part_lines(32, 0, 0) == 100 * 32
    runner.plan(job)
    first = JobFile.objects.get(job=job, index=0)  # a.jsonl: 400 lines
    from tests.models_repo.conftest import tenant_store

    data = tenant_store(job.tenant).read(f"data-{job.tenant.app_id}", "in/a.jsonl")
    step = runner.part_lines(32, 400, len(data))
    assert 32 <= step < 400 and step % 32 == 0
    parts = list(first.parts.order_by("index"))
    assert [(p.start, p.end) for p in parts] == [
        (s, min(s + step, 400)) for s in range(0, 400, step)
    ]
    lines = data.split(b"\n")[:-1]
    for part in parts:
        assert (
            data[part.byte_start : part.byte_end].split(b"\n")[:-1] == lines[part.start : part.end]
        )


def test_a_bad_json_file_fails_the_job_with_its_name(job, owner):
    from tests.models_repo.conftest import tenant_store

    tenant_store(owner.tenant).write(f"data-{owner.tenant.app_id}", "in/c.json", io.BytesIO(b"[1,"))
    assert not runner.plan(job)
    job.refresh_from_db()
    assert job.status == Job.FAILED and "in/c.json is not valid JSON" in job.message
    assert job.service.desired == "delete"


def test_claims_and_leases_count_a_part_once(job, settings):
    runner.plan(job)
    part = JobPart.objects.get(file__index=0, index=0)
    assert runner.claim(part.pk, "w1")
    assert not runner.claim(part.pk, "w2")  # taken
    # w1 dies: its lease runs out, the sweep puts the part back, w2 takes it
    JobPart.objects.filter(pk=part.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert runner.requeue_expired(job) == 1
    assert runner.claim(part.pk, "w2")
    errors = [{"file": "in/a.jsonl", "line": 3, "error": "bad"}]
    assert runner.complete(part, "w2", errors)
    assert not runner.complete(part, "w1", errors)  # the old owner's late finish: not counted
    assert not runner.complete(part, "w2", errors)  # nor a second finish
    job.refresh_from_db()
    assert (job.done, job.failed, job.errors) == (64, 1, errors)
    assert JobPart.objects.get(pk=part.pk).attempts == 2
    assert not runner._renew(part.pk, "w1")


def test_a_part_lost_too_often_fails_the_job_saying_which_lines(job, settings):
    """A part whose worker dies (or that runs past the task time limit) every time is not tried
    for ever: past EMS_JOB_PART_ATTEMPTS lost runs the job fails, naming the lines."""
    settings.EMS_JOB_PART_ATTEMPTS = 2
    runner.plan(job)
    part = JobPart.objects.get(file__index=0, index=0)
    for owner in ("w1", "w2"):
        assert runner.claim(part.pk, owner)
        JobPart.objects.filter(pk=part.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        assert runner.requeue_expired(job) == 1
    assert runner.run_part(part.pk) == runner.CANCELLED
    job.refresh_from_db()
    assert job.status == Job.FAILED
    assert job.message.startswith("lines 1–64 of in/a.jsonl were started 2 times")
    assert "EMS_JOB_PART_BATCHES" in job.message
    assert JobPart.objects.get(pk=part.pk).status == JobPart.CANCELLED
    assert not JobPart.objects.filter(job=job, status=JobPart.PENDING).exists()


def test_batches_an_instance_dies_on_fail_the_job_after_the_attempts(job, settings, monkeypatch):
    settings.EMS_JOB_PART_ATTEMPTS = 2

    def dies(*args, **kwargs):
        raise jobio.Unavailable("http://127.0.0.1:9: ConnectionResetError", reached=True)

    monkeypatch.setattr(runner, "_predict_part", dies)
    runner.plan(job)
    part = JobPart.objects.get(file__index=0, index=0)
    assert runner.run_part(part.pk) == runner.RELEASED
    assert runner.run_part(part.pk) == runner.RELEASED
    assert JobPart.objects.get(pk=part.pk).attempts == 2
    assert runner.run_part(part.pk) == runner.CANCELLED
    job.refresh_from_db()
    assert job.status == Job.FAILED and "were started 2 times" in job.message


def test_a_transient_release_is_not_a_lost_attempt(job):
    runner.plan(job)
    part = JobPart.objects.get(file__index=0, index=0)
    assert runner.claim(part.pk, "w1")
    runner._release(part.pk, "w1")  # no instance answered: given back, not lost
    assert JobPart.objects.get(pk=part.pk).attempts == 0
    assert runner.claim(part.pk, "w1")
    assert JobPart.objects.get(pk=part.pk).attempts == 1


def test_a_part_past_the_soft_time_limit_is_given_back_and_counted(job, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from serving.jobs.models import JobEvent

    def too_slow(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(runner, "_predict_part", too_slow)
    runner.plan(job)
    part = JobPart.objects.get(file__index=0, index=0)
    assert runner.run_part(part.pk) == runner.RELEASED
    part.refresh_from_db()
    assert (part.status, part.attempts) == (JobPart.PENDING, 1)
    event = JobEvent.objects.get(job=job, kind="timeout")
    assert "ran past the task time limit" in event.message and event.level == JobEvent.WARNING


def test_assembly_concatenates_parts_in_order_once(job, owner):
    from tests.models_repo.conftest import tenant_store

    runner.plan(job)
    store, bucket = tenant_store(owner.tenant), f"data-{owner.tenant.app_id}"
    file = JobFile.objects.get(job=job, index=1)  # c.json: 250 lines, 4 parts
    parts = list(file.parts.order_by("index"))
    for part in reversed(parts):  # written out of order
        body = b"".join(
            json.dumps({"line": n}).encode() + b"\n" for n in range(part.start, part.end)
        )
        store.write(bucket, runner.part_key(job, part), io.BytesIO(body))
        assert runner.claim(part.pk, "w") and runner.complete(part, "w", [])
        if part.index:
            assert not runner.assemble(job, file)  # not every part is done yet
    assert runner.assemble(job, file)
    assert not runner.assemble(job, file)
    with store.open(bucket, "out/c.json.out") as stream:
        lines = stream.read().decode().splitlines()
    assert [json.loads(x)["line"] for x in lines] == list(range(250))
    assert list(store.walk(bucket, f"out/.parts/{job.job_id}/00001/")) == []
    assert JobFile.objects.get(pk=file.pk).state == JobFile.ASSEMBLED


def test_an_assembler_that_died_is_taken_over(job):
    runner.plan(job)
    file = JobFile.objects.get(job=job, index=0)
    assert runner._claim_assembly(file)
    assert not runner._claim_assembly(file)  # held
    JobFile.objects.filter(pk=file.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert runner._claim_assembly(file)


def test_past_the_threshold_the_job_fails(job):
    runner.plan(job)
    Job.objects.filter(pk=job.pk).update(status=Job.RUNNING)
    JobPart.objects.filter(job=job).update(status=JobPart.DONE)
    JobFile.objects.filter(job=job).update(state=JobFile.ASSEMBLED)
    Job.objects.filter(pk=job.pk).update(done=1000, failed=3)
    assert runner.maybe_finish(job)
    job.refresh_from_db()
    assert job.status == Job.FAILED
    assert "3 line(s) failed, more than the job's threshold of 2" in job.message


def test_output_lines_stay_aligned_with_bad_and_refused_lines(job):
    """Bad input lines are not sent (a batch is shorter); a line the model refused comes back
    as an error from the batch: both land on their own input line, in order."""
    runner.plan(job)
    part = JobPart.objects.select_related("file").get(file__index=0, index=0)
    raw = [b"1", b"", b"3", b"4", b"x", b"6"]  # batches of 3: [1, -, 3] and [4, -, 6]
    bad = {1: "line 2 is empty", 4: "line 5 is not JSON"}
    answers = [
        (0, {1: bad[1]}, [b'"p1"', b'"p3"'], {}),
        (3, {1: bad[4]}, [b'{"error":"refused"}', b'"p6"'], {0: "refused"}),
    ]
    body, errors = runner._output_body(raw, bad, answers, part, 3)
    lines = body.decode().splitlines()
    assert lines[0] == '"p1"' and lines[2] == '"p3"' and lines[5] == '"p6"'
    assert json.loads(lines[1]) == {"error": "line 2 is empty"}
    assert json.loads(lines[3]) == {"error": "refused"}
    assert json.loads(lines[4]) == {"error": "line 5 is not JSON"}
    assert [(e["line"], e["error"]) for e in errors] == [
        (2, "line 2 is empty"),
        (4, "refused"),
        (5, "line 5 is not JSON"),
    ]


def test_predict_connection_reads_length_chunked_and_closing_answers():
    """The job's HTTP client: answers with Content-Length or chunked, kept alive or not; a
    connection the instance closed is replaced once, then the address is Unavailable."""
    import socket
    import threading

    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" + b'{"predictions":[',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"pre\r\n11\r\ndictions":[1, 2]}\r\n0\r\n\r\n',
        b'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 11\r\n\r\n{"error":1}',
    ]
    seen = []
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()  # one connection, kept alive until the answer that closes it
        for answer in answers:
            seen.append(conn.recv(65536))
            conn.sendall(answer)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{server.getsockname()[1]}"
    status, body = jobio.post_predict(address, b'{"instances":[1]}', timeout=5)
    assert (status, body) == (200, {"error": '{"predictions":['})  # not JSON: kept as text
    assert jobio.post_predict(address, b"{}", timeout=5) == (200, {"predictions": [1, 2]})
    assert jobio.post_predict(address, b"{}", timeout=5) == (400, {"error": 1})
    thread.join(5)
    request = seen[0]
    assert len(seen) == 3
    assert request.startswith(b"POST /v1/models/m:predict HTTP/1.1\r\n")
    assert b"Content-Length: 17\r\n" in request and request.endswith(b'\r\n\r\n{"instances":[1]}')
    server.close()
    with pytest.raises(jobio.Unavailable) as refused:  # closed, and nothing listens now
        jobio.post_predict(address, b"{}", timeout=2)
    assert not refused.value.reached  # the batch reached no instance: not a lost run


def test_an_instance_that_takes_a_batch_and_dies_counts_as_a_lost_run():
    """A reset after the request was sent (a line that kills the runtime) is ``reached``: such
    runs count against EMS_JOB_PART_ATTEMPTS, so a poison line cannot loop for ever."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        for _ in range(2):  # the kept-alive try and the fresh one: both read, then reset
            conn, _ = server.accept()
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{server.getsockname()[1]}"
    with pytest.raises(jobio.Unavailable) as died:
        jobio.post_predict(address, b"{}", timeout=5)
    assert died.value.reached
    thread.join(5)
    server.close()


def test_the_batch_pool_runs_the_older_parts_batches_first():
    """Parts finish one after the other: a part's batches go before a later part's, whatever
    the order they were handed in; a cancelled batch is not run."""
    import threading

    pool, gate, done = jobio.BatchPool(1), threading.Event(), []
    older, newer = pool.rank(), pool.rank()
    pool.submit(older, gate.wait)  # holds the only thread while the others queue
    futures = [pool.submit(newer, done.append, "newer-1"), pool.submit(newer, done.append, "n2")]
    futures += [pool.submit(older, done.append, "older-1"), pool.submit(older, done.append, "o2")]
    cancelled = pool.submit(older, done.append, "cancelled")
    assert cancelled.cancel()
    failing = pool.submit(newer, int, "not a number")
    gate.set()
    for future in futures:
        future.result(timeout=5)
    with pytest.raises(ValueError):
        failing.result(timeout=5)
    assert done == ["older-1", "o2", "newer-1", "n2"]

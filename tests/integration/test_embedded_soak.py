"""Soak test of `make run`'s own configuration while both CPUs are saturated.

The embedded default (SQLite, the file broker, the process backend, the file route store) with
the Procfile's four processes — web, worker, beat, gateway — started as the Procfile starts
them, but under a supervisor of the test's own that notices any one of them dying (honcho would
stop the others and hide it). Over the REST API, as a user would: deploy services of the real
Angel LR model, then rounds of scale, stop, resume, delete-and-redeploy, each round waiting for
every service to reach what was asked, with predictions flowing through the gateway all along
and two CPU burners running. At the end: every service in its asked state, every process
alive, no dead letter, no "Unrecoverable error". Bounded by EMS_SOAK_SECONDS (default 120) for
the rounds; the whole test stays under 5 minutes.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from runtimes.testing import free_port
from tests.integration.procs import ROOT, clean_env
from tests.testdata import models_dir

pytestmark = pytest.mark.integration

MODEL = models_dir() / "angel/lr/lr-model/6"
SOAK_SECONDS = int(os.environ.get("EMS_SOAK_SECONDS", "120"))
# No round starts later than this after the test began (setup included), and each must
# converge within 60 s (they take 5-9 s on 2 saturated CPUs): the test stays under 5 minutes.
MAX_ROUNDS_UNTIL = 200
SERVICES = 3
PREDICT = json.dumps({"instances": [[0.5] * 123]}).encode()


class Supervisor:
    """The Procfile's processes, each in its own session; a watcher records any exit."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.deaths: list[str] = []
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def start_procfile(self) -> None:
        for line in (ROOT / "Procfile").read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, command = line.split(":", 1)
            log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop()
            self.procs[name] = subprocess.Popen(
                ["bash", "-c", f"exec {command.strip()}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for name, proc in self.procs.items():
                code = proc.poll()
                if code is not None and not any(d.startswith(f"{name} ") for d in self.deaths):
                    self.deaths.append(f"{name} exited with {code}")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        self._stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


class Api:
    def __init__(self, base: str) -> None:
        self.base, self.headers = base, {}

    def call(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        all_headers = {**self.headers, **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base + path, data=data, headers=all_headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        return status, (json.loads(text) if text else None)

    def ok(self, method: str, path: str, body=None, **kwargs):
        status, answer = self.call(method, path, body, **kwargs)
        assert status in (200, 201, 202, 204), (method, path, status, answer)
        return answer


def multipart(fields: dict[str, str], name: str, filename: str, data: bytes):
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for key, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode())
        out.write(f"{value}\r\n".encode())
    out.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: application/zip\r\n\r\n'.encode()
    )
    out.write(data + f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def model_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(p for p in MODEL.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(MODEL).as_posix())
    return buffer.getvalue()


def results(answer):
    return answer["results"] if isinstance(answer, dict) and "results" in answer else answer


def wait(check, timeout: float, what: str, supervisor: Supervisor):
    deadline = time.monotonic() + timeout
    while True:
        assert not supervisor.deaths, f"{supervisor.deaths} while waiting for {what}"
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


class Predictions:
    """Predictions through the gateway on every service that should be serving."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        # Services that should answer; "steady" ones (running, at most being scaled) must
        # answer 200 every time, the others (resuming, just deployed) may answer 503 first.
        self.serving: list[str] = []
        self.steady: set[str] = set()
        self.counts: Counter = Counter()
        self.steady_failures: Counter = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self, service_id: str) -> int:
        request = urllib.request.Request(
            f"{self.gateway}/{service_id}/v1/models/m:predict",
            data=PREDICT,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                body = json.loads(answer.read())
                assert len(body["predictions"]) == 1
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def run(self) -> None:
        while not self.stop.is_set():
            targets, steady = list(self.serving), set(self.steady)
            if targets:
                target = random.choice(targets)
                status = self.one(target)
                self.counts[status] += 1
                if target in steady and status != 200:
                    self.steady_failures[status] += 1
            self.stop.wait(0.05)


def burn(seconds: int) -> list[subprocess.Popen]:
    """Two busy processes that end by themselves after ``seconds`` even if the test dies."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]


def kill_leftovers(marker: str) -> None:
    """Runtime processes the process backend started under this test's data folder."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "runtimes.server" in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


def test_embedded_default_survives_a_soak_on_saturated_cpus(tmp_path):
    if not MODEL.is_dir():
        pytest.skip("shared/testdata is not present on this machine")
    started = time.monotonic()
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    # three free ports: left unset, the admin listener takes the gateway's port + 1, which
    # another process (the web, a runtime) may hold
    web_port, gateway_port, admin_port = free_port(), free_port(), free_port()
    env = clean_env(
        data,
        EMS_WEB_BIND=f"127.0.0.1:{web_port}",
        EMS_GATEWAY_BIND=f"127.0.0.1:{gateway_port}",
        EMS_GATEWAY_ADMIN_BIND=f"127.0.0.1:{admin_port}",
        EMS_GATEWAY_URL=f"http://127.0.0.1:{gateway_port}",
        EMS_RUNTIME_BACKEND="process",
        EMS_STORAGE_BACKEND="local",
        EMS_WORKER_CONCURRENCY="2",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    # The operator over-commits the local node (its capacity is the machine's CPUs, and public
    # quotas are whole cores): room for every replica the rounds ask for.
    capacity = (
        "from serving.models import Node; "
        "Node.objects.filter(name='local-ap-beijing').update(capacity_cpu_millicores=16000)"
    )
    for argv in (
        ["migrate", "--noinput", "-v", "0"],
        ["ems_bootstrap", "--demo"],
        ["shell", "-c", capacity],
    ):
        subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, check=True, timeout=300
        )
    supervisor = Supervisor(env, tmp_path)
    burners: list[subprocess.Popen] = []
    predictions = Predictions(f"http://127.0.0.1:{gateway_port}")
    api = Api(f"http://127.0.0.1:{web_port}/api/v1")
    ops: Counter = Counter()
    rounds: list[float] = []
    try:
        supervisor.start_procfile()
        burners = burn(SOAK_SECONDS + 150)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{web_port}/healthz", timeout=30
                ) as answer:
                    return answer.status == 200
            except OSError:  # HTTPError (503) included: not yet
                return False

        wait(healthy, 120, "/healthz 200 (web, broker, worker)", supervisor)

        # A user, a key, the service role, a bucket with the model, a config.
        password = "Soak-test-pass-phrase-9"
        api.ok(
            "POST",
            "/auth/signup/",
            {"username": "soak", "email": "s@example.com", "password": password},
        )
        basic = base64.b64encode(f"soak:{password}".encode()).decode()
        key = api.ok(
            "POST", "/auth/api-keys/", {"name": "soak"}, headers={"Authorization": f"Basic {basic}"}
        )["key"]
        api.headers = {"Authorization": f"Bearer {key}"}
        api.ok("POST", "/service-role/authorize/")
        bucket = api.ok("POST", "/buckets/", {"name": "models", "region": "ap-beijing"})["name"]
        body, ctype = multipart({"prefix": "lr/"}, "zip", "lr.zip", model_zip())
        address = api.ok(
            "POST", f"/buckets/{bucket}/upload/", raw=body, headers={"Content-Type": ctype}
        )["address"]
        runtime = next(
            r["id"] for r in results(api.ok("GET", "/runtimes/")) if r["name"] == "angel"
        )
        config = api.ok(
            "POST",
            "/model-configs/",
            {"name": "lr", "region": "ap-beijing", "runtime": runtime, "address": address},
        )
        version = config["versions"][0]["id"]
        group = next(
            g["id"]
            for g in results(api.ok("GET", "/resource-groups/"))
            if g["name"] == "public-ap-beijing"
        )

        asked: dict[str, dict] = {}  # service id -> {"replicas": n, "stopped": bool}

        def deploy(n: int) -> None:
            answer = api.ok(
                "POST",
                "/services/",
                {
                    "name": f"soak-{n}",
                    "version": version,
                    "resource_group": group,
                    "quota_type": "cpu",
                    "quota_count": 1,
                    "replicas": 1,
                },
            )
            asked[answer["service_id"]] = {"replicas": 1, "stopped": False}
            ops["deploy"] += 1

        def converged() -> bool:
            for sid, want in asked.items():
                detail = api.ok("GET", f"/services/{sid}/")
                running = [
                    i
                    for i in results(api.ok("GET", f"/services/{sid}/instances/"))
                    if i["state"] in ("pending", "starting", "running", "stopping")
                ]
                if want["stopped"]:
                    if detail["status"] != "Stopped" or running:
                        return False
                elif (
                    detail["status"] != "Normal"
                    or detail["instances_ready"] != want["replicas"]
                    or len(running) != want["replicas"]
                ):
                    return False
            return True

        def serve_asked() -> None:
            predictions.serving = [s for s, w in asked.items() if not w["stopped"]]

        for n in range(SERVICES):
            deploy(n)
        round_started = time.monotonic()
        wait(converged, 120, "the first deploys", supervisor)
        rounds.append(time.monotonic() - round_started)
        serve_asked()
        predictions.steady = set(asked)
        predictions.thread.start()

        deployed = SERVICES
        # Each service walks scale, stop, (resume), delete-and-redeploy, scale, ... from a
        # different starting point, so every round mixes the operations.
        cycle = ["scale", "stop", "redeploy", "scale"]
        step = {sid: i for i, sid in enumerate(asked)}
        k = 0
        rounds_started = time.monotonic()
        while time.monotonic() - rounds_started < SOAK_SECONDS or k < 3:
            k += 1
            round_started = time.monotonic()
            predictions.steady = set()  # until the stopped/deleted ones are out of the targets
            steady = set()
            for sid in list(asked):
                want = asked[sid]
                if want["stopped"]:
                    api.ok("POST", f"/services/{sid}/resume/")
                    want["stopped"] = False
                    ops["resume"] += 1
                    continue
                op = cycle[step[sid] % len(cycle)]
                step[sid] += 1
                if op == "scale":
                    want["replicas"] = 3 - want["replicas"]  # 1 <-> 2
                    api.ok("POST", f"/services/{sid}/scale/", {"replicas": want["replicas"]})
                    ops["scale"] += 1
                    steady.add(sid)
                elif op == "stop":
                    predictions.serving = [s for s in predictions.serving if s != sid]
                    want["stopped"] = True
                    api.ok("POST", f"/services/{sid}/stop/")
                    ops["stop"] += 1
                else:
                    predictions.serving = [s for s in predictions.serving if s != sid]
                    api.ok("DELETE", f"/services/{sid}/")
                    del asked[sid]
                    ops["delete"] += 1
                    deploy(deployed)
                    step[list(asked)[-1]] = 0
                    deployed += 1
            # Predictions wherever something should serve; only steady ones must answer 200.
            time.sleep(1)  # the last in-flight request to a stopped/deleted service ends
            predictions.steady = steady
            predictions.serving = [s for s, w in asked.items() if not w["stopped"]]
            wait(converged, 60, f"round {k}", supervisor)
            rounds.append(time.monotonic() - round_started)
            predictions.steady = {s for s, w in asked.items() if not w["stopped"]}
            serve_asked()
            if time.monotonic() - started > MAX_ROUNDS_UNTIL:
                break

        # The end state: what was asked, every process alive, answers from every running one.
        assert converged()
        for sid, want in asked.items():
            status = predictions.one(sid)
            assert status == (503 if want["stopped"] else 200), (sid, want, status)
        assert not supervisor.deaths, supervisor.deaths
        assert all(p.poll() is None for p in supervisor.procs.values())
        dead = list((data / "broker" / "dead-letter").glob("*.msg"))
        assert not dead, [p.name for p in dead]
        # Every message taken is acknowledged (or consumed without acks, like the worker's
        # control messages): none stays claimed. Beat's 1-second tasks (health probes, wakes)
        # keep a message or two in hand at any moment, so the check is that no claimed message
        # is older than any task of this soak takes.
        claimed = data / "broker" / "claimed"

        def none_stuck() -> bool:
            now = time.time()
            for path in claimed.glob("*/*"):
                try:  # the claim is a rename: ctime is when it was claimed
                    if now - path.stat().st_ctime >= 30:
                        return False
                except FileNotFoundError:  # acknowledged meanwhile
                    pass
            return True

        wait(none_stuck, 40, "no message claimed for more than 30 s", supervisor)
        assert "Unrecoverable error" not in supervisor.log("worker")
        elapsed = time.monotonic() - started
        print(
            f"\nsoak: {elapsed:.0f}s, {len(rounds)} rounds (converged in "
            f"{', '.join(f'{r:.1f}' for r in rounds)} s), ops {dict(ops)}, "
            f"predictions {dict(predictions.counts)}, failed on steady services "
            f"{dict(predictions.steady_failures)}"
        )
        assert predictions.counts[200] > 0
        assert not predictions.steady_failures, predictions.steady_failures
    except BaseException:
        for name in supervisor.procs:
            print(f"--- {name} log (tail) ---\n{supervisor.log(name)[-3000:]}")
        raise
    finally:
        predictions.stop.set()
        for proc in burners:
            proc.kill()
            proc.wait()
        supervisor.stop()
        kill_leftovers(shlex.quote(str(data)).strip("'"))

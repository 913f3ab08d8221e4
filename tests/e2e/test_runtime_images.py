"""Every runtime image in a real container: starts, reports AVAILABLE, answers correctly,
drains an in-flight request on SIGTERM, runs as non-root with the model mounted read-only
under the hardening the docker backend applies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from runtimes.testing import RunningServer
from tests.testdata import require_testdata

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _build(runtime: str) -> str:
    built = subprocess.run(
        [str(ROOT / "runtimes/build-images"), runtime],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def _http(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class Container:
    """A runtime container the way the docker backend starts one."""

    def __init__(self, client, image: str, runtime: str, model_dir: Path):
        self.started = time.monotonic()
        self.container = client.containers.run(
            image,
            [
                "--runtime",
                runtime,
                "--model-dir",
                "/models/m",
                "--model-name",
                "m",
                "--port",
                "8501",
                "--host",
                "0.0.0.0",
            ],
            detach=True,
            volumes={str(model_dir): {"bind": "/models/m", "mode": "ro"}},
            ports={"8501/tcp": ("127.0.0.1", None)},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=256,
            read_only=True,
            tmpfs={"/tmp": "size=256m"},
            nano_cpus=2_000_000_000,
            mem_limit="2g",
            labels={"ems.test": "runtime-images"},
        )
        self.container.reload()
        port = self.container.attrs["NetworkSettings"]["Ports"]["8501/tcp"][0]["HostPort"]
        self.url = f"http://127.0.0.1:{port}"

    def wait_available(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(self.container.logs().decode()[-3000:])
            try:
                status, body = _http(f"{self.url}/v1/models/m", timeout=2)
                state = body["model_version_status"][0]["state"]
                if status == 200 and state == "AVAILABLE":
                    return time.monotonic() - self.started
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"not AVAILABLE in {timeout}s: {self.container.logs()[-2000:]!r}")

    def remove(self):
        self.container.remove(force=True)


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    subprocess.run(
        [sys.executable, "-m", "runtimes.examples", str(out)],
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    # World-readable: the container's user is not the owner of the host folder.
    for path in [out, *out.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return out


def _host_answer(runtime: str, model_dir: Path, request: dict) -> dict:
    with RunningServer(runtime, model_dir, threads=1) as server:
        status, body = server.request("POST", "/v1/models/m:predict", request)
    assert status == 200, body
    return body


def _in_flight(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^ems_runtime_requests_in_flight (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _sigterm_during_request(container: Container, request: dict) -> tuple[int, dict]:
    """Send a request big enough to keep the model busy, SIGTERM the container once the server
    reports it in flight, and return that request's answer."""
    repeat = 500
    while True:
        big = {"instances": request["instances"] * repeat}
        answer: dict = {}

        def call(body=big, answer=answer):
            answer["status"], answer["body"] = _http(
                f"{container.url}/v1/models/m:predict", body, timeout=120
            )

        caller = threading.Thread(target=call)
        caller.start()
        seen = False
        while caller.is_alive() and not seen:
            seen = _in_flight(container.url) >= 1
        if seen:
            container.container.kill(signal="SIGTERM")
        caller.join(120)
        if seen:
            assert len(answer["body"].get("predictions", [])) == len(big["instances"])
            answer["body"]["predictions"] = answer["body"]["predictions"][
                : len(request["instances"])
            ]
            return answer["status"], answer["body"]
        repeat *= 4  # it finished before we saw it in flight: a bigger one
        assert repeat <= 500 * 4**4, "could not catch a request in flight"


def _flower_request(examples: Path, repeat: int = 1) -> dict:
    body = json.loads((examples / "flower" / "flower.json").read_text())
    return {"instances": body["instances"] * repeat}


def _cases(examples: Path, tmp: Path) -> dict[str, tuple[Path, dict, object]]:
    """runtime -> (model folder, request, check(predictions))"""
    angel = tmp / "angel"
    if not angel.exists():
        shutil.copytree(require_testdata() / "models/angel/lr/lr-model", angel)
        for path in [angel, *angel.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    pmml_request = json.loads((examples / "pmml" / "request.json").read_text())
    ov_request = json.loads((examples / "openvino" / "request.json").read_text())
    angel_request = {"instances": [{"sparseIndices": [0, 3, 7], "sparseValues": [1.0, 1.0, 1.0]}]}
    # The reference answer: the same server and loader run on the host, outside any container.
    pmml_expected = _host_answer("pmml", examples / "pmml", pmml_request)
    ov_expected = _host_answer("openvino", examples / "openvino", ov_request)
    angel_expected = _host_answer("angel", angel, angel_request)

    def flower_ok(predictions):
        assert predictions[0]["classes"] == "roses"
        assert predictions[0]["class_idx"] == 2

    def pmml_ok(predictions):
        assert predictions == pmml_expected["predictions"]

    def openvino_ok(predictions):
        assert np.allclose(predictions, ov_expected["predictions"], rtol=1e-4, atol=1e-5)

    def angel_ok(predictions):
        assert predictions == pytest.approx(angel_expected["predictions"])
        assert set(predictions[0]) == {"pred", "proba", "predLabel"}

    return {
        "tfserving": (examples / "flower", _flower_request(examples), flower_ok),
        "pmml": (examples / "pmml", pmml_request, pmml_ok),
        "openvino": (examples / "openvino", ov_request, openvino_ok),
        "angel": (angel, angel_request, angel_ok),
    }


@pytest.mark.parametrize("runtime", ["tfserving", "pmml", "openvino", "angel"])
def test_image_serves_drains_and_is_hardened(runtime, docker_client, examples, tmp_path):
    image = _build(runtime)
    model_dir, request, check = _cases(examples, tmp_path)[runtime]
    container = Container(docker_client, image, runtime, model_dir)
    try:
        seconds = container.wait_available()
        print(f"{runtime}: start -> AVAILABLE {seconds:.2f}s")
        status, body = _http(f"{container.url}/v1/models/m:predict", request)
        assert status == 200, body
        check(body["predictions"])

        # Non-root, model mount read-only.
        assert container.container.attrs["Config"]["User"] == "10001:10001"
        _, out = container.container.exec_run(["id", "-u"])
        assert out.decode().strip() == "10001"
        mount = next(
            m for m in container.container.attrs["Mounts"] if m["Destination"] == "/models/m"
        )
        assert mount["RW"] is False
        _, out = container.container.exec_run(["sh", "-c", "touch /models/m/x 2>&1; echo $?"])
        assert out.decode().strip().splitlines()[-1] != "0"

        # SIGTERM while a request is in flight (its body still arriving): it still gets its
        # answer, then the server exits 0.
        status, body = _sigterm_during_request(container, request)
        assert status == 200, body
        check(body["predictions"])
        result = container.container.wait(timeout=60)
        assert result["StatusCode"] == 0, container.container.logs()[-2000:]
    finally:
        container.remove()


def test_tensorrt_image_is_skipped_with_a_clear_message():
    built = subprocess.run(
        [str(ROOT / "runtimes/build-images"), "tensorrt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0
    assert "tensorrt: skipped: needs NVIDIA's TensorRT base image" in built.stderr


def test_image_tag_changes_with_its_inputs(tmp_path):
    first = subprocess.run(
        [str(ROOT / "runtimes/build-images"), "--print-tag", "angel"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert first.startswith("ems-runtime-angel:")
    probe = ROOT / "runtimes" / "_tag_probe.py"
    probe.write_text("# changes the sources hash\n")
    try:
        second = subprocess.run(
            [str(ROOT / "runtimes/build-images"), "--print-tag", "angel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    finally:
        probe.unlink()
    assert second != first

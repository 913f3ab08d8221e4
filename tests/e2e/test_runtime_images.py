"""Every runtime image in a real container: starts, reports AVAILABLE, answers correctly,
drains an in-flight request on SIGTERM, runs as non-root with the model mounted read-only
under the hardening the docker backend applies."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT.parent / "shared" / "testdata" / "models"
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


def _sigterm_during_request(container: Container, request: dict) -> tuple[int, dict]:
    payload = json.dumps(request).encode()
    port = int(container.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload[: len(payload) // 2]
        )
        time.sleep(0.3)
        container.container.kill(signal="SIGTERM")
        time.sleep(0.5)
        sock.sendall(payload[len(payload) // 2 :])
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"chunked" in head.lower():
        body = _unchunk(body)
    return status, json.loads(body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def _flower_request(examples: Path, repeat: int = 1) -> dict:
    body = json.loads((examples / "flower" / "flower.json").read_text())
    return {"instances": body["instances"] * repeat}


def _cases(examples: Path, tmp: Path) -> dict[str, tuple[Path, dict, object]]:
    """runtime -> (model folder, request, check(predictions))"""
    angel = tmp / "angel"
    if not angel.exists():
        shutil.copytree(TESTDATA / "angel" / "lr" / "lr-model", angel)
        for path in [angel, *angel.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    pmml_request = json.loads((examples / "pmml" / "request.json").read_text())
    pmml_expected = json.loads((examples / "pmml" / "expected.json").read_text())
    ov_request = json.loads((examples / "openvino" / "request.json").read_text())
    ov_expected = json.loads((examples / "openvino" / "expected.json").read_text())

    def flower_ok(predictions):
        assert predictions[0]["classes"] == "roses"
        assert predictions[0]["class_idx"] == 2

    def pmml_ok(predictions):
        assert predictions == pmml_expected["predictions"]

    def openvino_ok(predictions):
        for got, want in zip(predictions, ov_expected["predictions"], strict=True):
            assert got == pytest.approx(want, rel=1e-4, abs=1e-5)

    def angel_ok(predictions):
        assert {"pred", "proba", "predLabel"} <= set(predictions[0])
        assert 0.0 <= predictions[0]["proba"] <= 1.0

    angel_request = {"instances": [{"sparseIndices": [0, 3, 7], "sparseValues": [1.0, 1.0, 1.0]}]}
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

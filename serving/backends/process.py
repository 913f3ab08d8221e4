"""The process backend: runtime servers as child processes of the portal's own interpreter.

For the embedded default (no Docker): each instance is ``python -m runtimes.server`` started in
its own session (so a worker restart does not kill it) with its output in a log file. A state
file per instance (JSON: pid, the process's create time, port, labels, start time) plays the
part of container labels; the create time guards against a recycled pid.

What it cannot do (docs/serving.md, and the service page says so): enforce CPU or memory limits
(the thread pool is sized from the CPU request, nothing more), isolate the runtime from the
portal's files or network, mount the model read-only, give GPUs. Finish times of instances that
die on their own are the log file's last write (the closest record there is).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from serving import faults
from serving.backends.base import (
    EXITED,
    LABEL_INSTANCE,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_TENANT,
    MISSING,
    MODEL_NAME,
    RUNNING,
    Backend,
    BackendError,
    InstanceSpec,
    InstanceStats,
    InstanceStatus,
)

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; everything after its ")" is space-separated
    return text[text.rindex(")") + 2 :].split()


def create_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _alive(pid: int, created: int | None) -> bool:
    fields = _proc_stat(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return created is None or int(fields[19]) == created


def _reap(pid: int) -> int | None:
    """Collect the exit code when the runtime is our own child (no zombie left behind)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ProcessBackend(Backend):
    name = "process"
    enforces_limits = False

    def __init__(self, *, node: str, state_dir: str | Path, host: str = "127.0.0.1"):
        super().__init__(node=node)
        self.state_dir = Path(state_dir) / node
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.host = host

    def _state_path(self, instance_id: str) -> Path:
        if "/" in instance_id or instance_id.startswith("."):
            raise BackendError(f"bad instance id {instance_id!r}")
        return self.state_dir / f"{instance_id}.json"

    def _read(self, instance_id: str) -> dict | None:
        try:
            return json.loads(self._state_path(instance_id).read_text())
        except (OSError, ValueError):
            return None

    def _write(self, instance_id: str, state: dict) -> None:
        path = self._state_path(instance_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, spec: InstanceSpec, model_dir: str) -> InstanceStatus:
        if spec.gpus:
            raise BackendError("the process backend cannot give an instance GPUs")
        if self._read(spec.instance_id):
            raise BackendError(f"instance {spec.instance_id} already exists")
        port = _free_port(self.host)
        threads = max(1, spec.cpu_millicores // 1000)
        argv = [
            sys.executable,
            "-m",
            "runtimes.server",
            "--runtime",
            spec.runtime,
            "--model-dir",
            str(model_dir),
            "--model-name",
            MODEL_NAME,
            "--port",
            str(port),
            "--host",
            self.host,
            "--threads",
            str(threads),
        ]
        log_path = self.state_dir / f"{spec.instance_id}.log"
        env = {
            key: value
            for key, value in os.environ.items()
            # the runtime needs none of the portal's secrets or database settings
            if not key.startswith(("DATABASE_", "REDIS_", "CELERY_", "EMS_SECRETS", "SECRET_"))
        }
        env.update(TF_CPP_MIN_LOG_LEVEL="2", EMS_INSTANCE=spec.instance_id)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(Path(__file__).resolve().parents[2]),
                env=env,
                start_new_session=True,
            )
        started = _now()
        self._write(
            spec.instance_id,
            {
                "pid": proc.pid,
                "create_time": create_time(proc.pid),
                "port": port,
                "labels": spec.labels(self.node),
                "started_at": started.isoformat(),
                "log": log_path.name,
                "cpu_millicores": spec.cpu_millicores,
                "memory_mib": spec.memory_mib,
            },
        )
        faults.point("after_container_create")
        return self.inspect(spec.instance_id)

    def stop(self, instance_id: str, *, grace: float = 10.0) -> InstanceStatus | None:
        state = self._read(instance_id)
        if state is None:
            return None
        pid, created = state["pid"], state.get("create_time")
        if _alive(pid, created):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
                os.killpg(pid, signal.SIGCONT)  # a stopped (SIGSTOP) runtime handles it too
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _alive(pid, created):
                _reap(pid)
                time.sleep(0.05)
            if _alive(pid, created):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                for _ in range(100):
                    _reap(pid)
                    if not _alive(pid, created):
                        break
                    time.sleep(0.02)
            state["finished_at"] = _now().isoformat()
        code = _reap(pid)
        if code is not None:
            state["exit_code"] = code
        status = self._status(instance_id, state)
        self._state_path(instance_id).unlink(missing_ok=True)
        (self.state_dir / state.get("log", "")).unlink(missing_ok=True)
        return status

    def inspect(self, instance_id: str) -> InstanceStatus:
        state = self._read(instance_id)
        if state is None:
            return InstanceStatus(instance_id, "", "", "", MISSING)
        return self._status(instance_id, state)

    def list(self, labels: dict[str, str] | None = None) -> list[InstanceStatus]:
        wanted = {LABEL_NODE: self.node, **(labels or {})}
        found = []
        for path in sorted(self.state_dir.glob("*.json")):
            state = self._read(path.stem)
            if state is None:
                continue
            have = state.get("labels", {})
            if all(have.get(key) == value for key, value in wanted.items()):
                found.append(self._status(path.stem, state))
        return found

    def stats(self, instance_id: str) -> InstanceStats:
        state = self._read(instance_id)
        if state is None or not _alive(state["pid"], state.get("create_time")):
            raise BackendError(f"{instance_id} is not running")
        pid = state["pid"]

        def cpu_ticks() -> int:
            fields = _proc_stat(pid) or ["0"] * 20
            return int(fields[11]) + int(fields[12])

        before, t0 = cpu_ticks(), time.monotonic()
        time.sleep(0.5)
        used = (cpu_ticks() - before) / _TICKS / (time.monotonic() - t0)
        rss = None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        except OSError:
            pass
        limit_cores = max(state.get("cpu_millicores", 1000), 1) / 1000
        return InstanceStats(
            cpu_percent=100.0 * used / limit_cores,
            memory_bytes=rss,
            memory_limit_bytes=int(state.get("memory_mib", 0)) * 1024 * 1024 or None,
        )

    def logs(self, instance_id: str, *, tail: int = 100) -> str:
        state = self._read(instance_id)
        if state is None:
            return ""
        try:
            with open(self.state_dir / state["log"], "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 256 * 1024))
                lines = handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:]) + ("\n" if lines else "")

    # --- helpers ------------------------------------------------------------------------------
    def _status(self, instance_id: str, state: dict) -> InstanceStatus:
        labels = state.get("labels", {})
        pid, created = state["pid"], state.get("create_time")
        alive = _alive(pid, created)
        finished = state.get("finished_at")
        exit_code = state.get("exit_code")
        if not alive:
            code = _reap(pid)
            if code is not None:
                exit_code = state["exit_code"] = code
            if finished is None:
                log_file = self.state_dir / state.get("log", "")
                try:
                    when = dt.datetime.fromtimestamp(log_file.stat().st_mtime, dt.UTC)
                except OSError:
                    when = _now()
                finished = state["finished_at"] = when.isoformat()
                if self._state_path(instance_id).exists():
                    self._write(instance_id, state)
        message = ""
        if not alive:
            message = f"exited with code {exit_code}" if exit_code is not None else "exited"
        return InstanceStatus(
            instance_id=labels.get(LABEL_INSTANCE, instance_id),
            service_id=labels.get(LABEL_SERVICE, ""),
            tenant_id=labels.get(LABEL_TENANT, ""),
            backend_id=f"proc-{pid}-{created}",
            state=RUNNING if alive else EXITED,
            address=f"http://{self.host}:{state['port']}",
            started_at=dt.datetime.fromisoformat(state["started_at"]),
            finished_at=dt.datetime.fromisoformat(finished) if (finished and not alive) else None,
            exit_code=exit_code if not alive else None,
            message=message,
            labels=labels,
        )

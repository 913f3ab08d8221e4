"""A second Docker host on this machine: a ``dockerd`` in its own network namespace.

It has its own bridge, data root, exec root, pidfile and socket, and listens with TLS on a veth
address (``10.231.0.2:2376``) the host reaches; the CA, the server's and the client's
certificates are made here with ``cryptography``. Images are copied in from the first engine
(``docker save | docker -H … load``). :func:`remote_engine` is a context manager that removes
the namespace, the veth pair, the dockerd (and its containerd) and the data root at the end,
whatever happened.

Run alone (``python -m tests.serving.remote_engine [IMAGE]``) to check the setup on a machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST_ADDR, NODE_ADDR, PREFIX = "10.231.0.1", "10.231.0.2", 24
BRIDGE_CIDR = "10.232.0.1/24"  # the second engine's docker0, inside its namespace
PORT = 2376


@dataclass
class Certs:
    ca: str
    cert: str
    key: str  # the client's (what a Node stores)
    server_cert: str
    server_key: str


def make_certs(server_ip: str, *, days: int = 2) -> Certs:
    """A CA, a server certificate for ``server_ip`` and a client certificate, all PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def pem_key(key):
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"ems test CA {uuid.uuid4().hex[:8]}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name, usage, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), pem_key(key)

    server_cert, server_key = leaf(
        "ems test engine",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address(server_ip))],
    )
    client_cert, client_key = leaf("ems control plane", ExtendedKeyUsageOID.CLIENT_AUTH)
    return Certs(
        ca=ca.public_bytes(serialization.Encoding.PEM).decode(),
        cert=client_cert,
        key=client_key,
        server_cert=server_cert,
        server_key=server_key,
    )


@dataclass
class RemoteEngine:
    namespace: str
    root: Path
    certs: Certs
    address: str = NODE_ADDR
    port: int = PORT
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{self.port}"

    @property
    def socket(self) -> str:
        return f"unix://{self.root}/docker.sock"

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """The docker CLI against this engine (over its unix socket)."""
        return subprocess.run(
            ["docker", "-H", self.socket, *args],
            capture_output=True,
            text=True,
            check=kwargs.pop("check", True),
            timeout=kwargs.pop("timeout", 120),
            **kwargs,
        )

    def load_images(self, *images: str) -> float:
        """``docker save | docker -H … load``; returns the seconds it took."""
        started = time.monotonic()
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        try:
            load = subprocess.run(
                ["docker", "-H", self.socket, "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                timeout=600,
                check=False,
            )
        finally:
            save.stdout.close()
            save.wait(timeout=60)
        if load.returncode != 0 or save.returncode != 0:
            raise RuntimeError(f"loading {images} failed: {load.stderr.decode()[-2000:]}")
        return time.monotonic() - started

    def stop(self, *, sig=signal.SIGTERM, wait: float = 30.0) -> None:
        """Stop the engine (and the containerd it started, and so its containers' shims):
        the "host" stops answering."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def unreachable(self) -> None:
        """Take the host off the network (its veth down): the engine and its instances stop
        answering, as when a host dies, and nothing on it gets a chance to clean up."""
        subprocess.run(["ip", "link", "set", f"{self.namespace}h", "down"], check=True)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


def _wait_engine(engine: RemoteEngine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            log = (engine.root / "dockerd.log").read_text()[-3000:]
            raise RuntimeError(f"the second dockerd exited: {log}")
        if engine.docker("version", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.3)
    log = (engine.root / "dockerd.log").read_text()[-3000:]
    raise RuntimeError(f"the second dockerd did not answer within {timeout} s: {log}")


def missing() -> str:
    """Why a second engine cannot run here ("" when it can)."""
    for tool in ("ip", "nsenter", "dockerd", "docker", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (.ci/run installs iproute2, iptables and util-linux)"
    if os.geteuid() != 0:
        return "a second dockerd in a network namespace needs root"
    return ""


@contextlib.contextmanager
def remote_engine(*, start_timeout: float = 60.0) -> Iterator[RemoteEngine]:
    """Start the second engine; always take it all down again."""
    if why := missing():
        raise RuntimeError(why)
    ns = "ems" + uuid.uuid4().hex[:6]  # veths are named <ns>h / <ns>n: 10 characters
    root = Path(tempfile.mkdtemp(prefix="ems-engine-"))
    certs = make_certs(NODE_ADDR)
    engine = RemoteEngine(namespace=ns, root=root, certs=certs)
    log = None
    try:
        tls = root / "tls"
        tls.mkdir()
        for name, text in {
            "ca.pem": certs.ca,
            "server.pem": certs.server_cert,
            "server-key.pem": certs.server_key,
        }.items():
            (tls / name).write_text(text)
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", f"{ns}h", "type", "veth", "peer", "name", f"{ns}n")
        _run("ip", "link", "set", f"{ns}n", "netns", ns)
        _run("ip", "addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", f"{ns}h")
        _run("ip", "link", "set", f"{ns}h", "up")
        inside = ("ip", "netns", "exec", ns)
        _run(*inside, "ip", "addr", "add", f"{NODE_ADDR}/{PREFIX}", "dev", f"{ns}n")
        _run(*inside, "ip", "link", "set", f"{ns}n", "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "route", "add", "default", "via", HOST_ADDR)
        log = (root / "dockerd.log").open("w")
        # nsenter, not `ip netns exec`: that one remounts /sys and so hides the cgroups
        engine.process = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{ns}",
                "dockerd",
                "--data-root",
                str(root / "data"),
                "--exec-root",
                str(root / "exec"),
                "--pidfile",
                str(root / "dockerd.pid"),
                "-H",
                engine.socket,
                "-H",
                f"tcp://{NODE_ADDR}:{PORT}",
                "--tlsverify",
                "--tlscacert",
                str(tls / "ca.pem"),
                "--tlscert",
                str(tls / "server.pem"),
                "--tlskey",
                str(tls / "server-key.pem"),
                "--bip",
                BRIDGE_CIDR,
                "--containerd-namespace",
                f"{ns}",
                "--containerd-plugins-namespace",
                f"{ns}-plugins",
                "--storage-driver",
                "overlay2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_engine(engine, start_timeout)
        yield engine
    finally:
        _teardown(engine)
        if log is not None:
            log.close()


def _teardown(engine: RemoteEngine) -> None:
    ns, root = engine.namespace, engine.root
    if engine.process is not None and engine.process.poll() is None:
        with contextlib.suppress(Exception):
            engine.docker("rm", "-f", *_containers(engine), check=False, timeout=60)
        engine.stop()
    # the engine's containerd and its shims (and their containers) live in this namespace:
    # whatever still runs there is ours to end
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run("ip", "link", "del", f"{ns}h", check=False)
    _run("ip", "netns", "del", ns, check=False)
    # overlay mounts the engine left behind under its data root
    mounts = Path("/proc/mounts").read_text().splitlines()
    for line in sorted(mounts, key=len, reverse=True):
        point = line.split()[1]
        if point.startswith(str(root)):
            _run("umount", "-l", point, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _containers(engine: RemoteEngine) -> list[str]:
    out = engine.docker("ps", "-aq", check=False).stdout.split()
    return out or ["--"]


if __name__ == "__main__":  # a manual check of the setup
    import sys
    import urllib.request

    image = sys.argv[1] if len(sys.argv) > 1 else "ems-base"
    with remote_engine() as engine:
        print("engine up at", engine.url, flush=True)
        print(f"loaded {image} in {engine.load_images(image):.1f} s", flush=True)
        engine.docker(
            "run",
            "-d",
            "--name",
            "probe",
            "-p",
            f"{NODE_ADDR}::8000",
            image,
            "python3",
            "-m",
            "http.server",
            "8000",
        )
        port = engine.docker("port", "probe", "8000").stdout.split(":")[-1].strip()
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://{NODE_ADDR}:{port}/", timeout=2) as r:
                    print("reached the container:", r.status)
                    break
            except OSError as exc:
                print("not yet:", exc)
                time.sleep(0.3)

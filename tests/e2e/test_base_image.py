"""The local base image builds from Debian packages and starts a container."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    built = subprocess.run(
        [str(ROOT / "docker/base/build")], capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr
    tag = built.stdout.strip().splitlines()[-1]
    expected = subprocess.run(
        [str(ROOT / "docker/base/build"), "--print-tag"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tag == expected
    return tag


def test_tag_is_a_hash_of_the_inputs(base_image):
    name, _, digest = base_image.partition(":")
    assert name == "ems-base"
    assert len(digest) == 12 and all(c in "0123456789abcdef" for c in digest)


def test_container_runs_python_with_venv_and_certificates(docker_client, base_image):
    script = (
        "import ssl, sys, venv, tempfile, os; "
        "d = tempfile.mkdtemp(); venv.create(d, with_pip=False); "
        "assert os.path.exists(os.path.join(d, 'bin', 'python')); "
        "assert ssl.create_default_context().cert_store_stats()['x509_ca'] > 0; "
        "print(sys.version_info[:2])"
    )
    out = docker_client.containers.run(
        base_image, ["python3", "-c", script], remove=True, network_disabled=True
    )
    assert out.decode().strip() == "(3, 11)"

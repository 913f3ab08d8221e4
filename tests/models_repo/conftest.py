"""Fixtures of the model repository tests: a moto S3 server over HTTP, storage on both backends,
and copies of the shared test models."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.testdata import models_dir

TESTDATA = models_dir()  # the tests that use MODELS ask for `repo` or `storage`: both check it

APP_ID = "1250000000"
OTHER_APP_ID = "1250000001"

MODELS = {
    "angel-lr": ("angel", TESTDATA / "angel" / "lr" / "lr-model" / "6"),
    "angel-deepfm": ("angel", TESTDATA / "angel" / "deepFM" / "deepFM-model" / "0"),
    "pmml-lr": ("pmml", TESTDATA / "pmml" / "lr" / "lr-model" / "6"),
}


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API over HTTP (path-style), in this process."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def fake_aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def make_tenant(app_id: str = APP_ID):
    return SimpleNamespace(app_id=app_id, pk=int(app_id[-3:]) + 1)


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path, fake_aws):
    """The same tests run on the local folder store and on S3 over HTTP (moto)."""
    if request.param == "local":
        from models_repo.storage.local import LocalBackend

        return LocalBackend(tmp_path / "storage")
    from models_repo.storage.s3 import S3Backend

    endpoint = request.getfixturevalue("moto_endpoint")
    return S3Backend(endpoint_url=endpoint, addressing_style="path", region_name="ap-beijing")


@pytest.fixture
def storage(backend, request):
    """The tenant's storage with a fresh bucket ``models-<n>-1250000000`` in ap-beijing."""
    from models_repo.storage import get_storage

    store = get_storage(make_tenant(), guard=lambda tenant: None, backend=backend)
    bucket = f"t{abs(hash(request.node.nodeid)) % 10**8}-{APP_ID}"
    store.create_bucket(bucket, region="ap-beijing")
    store.test_bucket = bucket
    return store


def copy_model(name: str, target: Path) -> Path:
    _, source = MODELS[name]
    shutil.copytree(source, target)
    return target


# --- Django side ---------------------------------------------------------------------------------
@pytest.fixture
def repo(db, settings, tmp_path, testdata):
    """Regions and public runtimes bootstrapped; storage in a fresh local folder."""
    from models_repo import bootstrap

    settings.EMS_STORAGE_BACKEND = "local"
    settings.EMS_STORAGE_ROOT = tmp_path / "storage"
    bootstrap.run(demo=False, log=lambda line: None)
    return SimpleNamespace(root=tmp_path / "storage")


@pytest.fixture
def repo_s3(repo, settings, moto_endpoint, fake_aws):
    """The same, with storage on S3 over HTTP (moto, path-style)."""
    settings.EMS_STORAGE_BACKEND = "s3"
    settings.EMS_S3_ENDPOINT_URL = moto_endpoint
    settings.EMS_S3_ADDRESSING_STYLE = "path"
    return repo


def tenant_store(tenant):
    from models_repo.storage import get_storage, make_backend

    return get_storage(tenant, guard=lambda t: None, backend=make_backend())


def seed_folder(tenant, source: Path, *, bucket="models", prefix="m/", region="ap-beijing"):
    """Copy a local folder into ``<bucket>-<app_id>/<prefix>``; returns (bucket, cos address)."""
    import io

    from models_repo.addresses import build_cos_address

    store = tenant_store(tenant)
    full = f"{bucket}-{tenant.app_id}"
    store.create_bucket(full, region=region)
    for file in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        key = prefix + file.relative_to(source).as_posix()
        store.write(full, key, io.BytesIO(file.read_bytes()))
    return full, build_cos_address(full, prefix, region=region)


def runtime_id(name: str) -> int:
    from models_repo.models import RuntimeEnvironment

    return RuntimeEnvironment.objects.get(tenant__isnull=True, name=name).pk


# --- serving's fixtures, for the tests that delete what a running service uses --------------
from tests.serving.conftest import angel_version, dedicated, serving_env  # noqa: E402, F401

"""The demo tenant's model repository (``ems_bootstrap --demo``, DEBUG only): the service role
authorized, a bucket ``examples-<app id>`` holding the example models, and a config for each —
so a first-time user reaches a prediction in a few clicks. Idempotent: what exists is kept.

The Angel and PMML examples ship in ``examples/``; the flower classifier (the seed's
``flower.json`` → roses) and the OpenVINO IR are generated once by ``python -m
runtimes.examples`` into ``$EMS_DATA_DIR/examples`` (a subprocess, so TensorFlow never loads
into the bootstrap). See ``examples/README.md``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from accounts import service_role
from accounts.services import service_role_authorize
from models_repo import services
from models_repo.models import ModelConfig, Region, RuntimeEnvironment
from models_repo.storage.base import AccessRefused, NotFound
from models_repo.uploads import UploadedFile

REPO_EXAMPLES = Path(settings.BASE_DIR) / "examples"
DEMO_REGION = "ap-guangzhou"
DEMO_BUCKET = "examples"
# Instances for a first batch job (examples/batch-inputs/<config>/ → inputs/<config>/).
BATCH_INPUTS = REPO_EXAMPLES / "batch-inputs"


@dataclass(frozen=True)
class Example:
    config: str
    runtime: str
    description: str
    generator: str | None  # runtimes.examples writer, or None when shipped in examples/
    folder: str  # under examples/ (shipped) or $EMS_DATA_DIR/examples (generated)


EXAMPLES = [
    Example("flowers", "tfserving", "Flower classifier (SavedModel); try flower.json", "flower",
            "flower/1"),
    Example("flowers-ir", "openvino", "OpenVINO IR of a small dense model", "openvino",
            "openvino/1"),
    Example("iris", "pmml", "Iris logistic regression (PMML)", None, "iris-pmml"),
    Example("angel-lr", "angel", "Logistic regression trained with Angel", None, "angel-lr"),
]  # fmt: skip


def generated_dir() -> Path:
    return Path(settings.DATA_DIR) / "examples"


def _generate(names: list[str], log) -> list[str]:
    """Run the example writers that have not run yet; answer the ones that failed."""
    out = generated_dir()
    missing = [n for n in names if not (out / n / ".done").exists()]
    failed = []
    for name in missing:
        result = subprocess.run(
            [sys.executable, "-m", "runtimes.examples", str(out), "--only", name],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            log(f"example {name} could not be generated: {tail[0]}")
            failed.append(name)
            continue
        (out / name / ".done").write_text("ok\n")
        log(f"generated example {name} in {out / name}")
    return failed


def _files(folder: Path) -> list[UploadedFile]:
    return [
        UploadedFile(p.relative_to(folder).as_posix(), p.open("rb"), p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".done"
    ]


def ensure_demo_models(member, log) -> None:
    tenant = member.tenant
    if service_role.current_authorization(tenant) is None:
        service_role_authorize(actor=member)
        log("authorized EMS_ServiceRole for the demo tenant")
    region = Region.objects.get(name=DEMO_REGION)
    storage = services.tenant_storage(tenant)
    bucket = storage.full_bucket_name(DEMO_BUCKET)
    try:
        storage.bucket_info(bucket)
    except (AccessRefused, NotFound):
        services.bucket_create(actor=member, name=DEMO_BUCKET, region=region)
        log(f"created bucket {bucket}")
    ensure_demo_inputs(member, bucket, log)
    todo = [e for e in EXAMPLES if not ModelConfig.objects.filter(tenant=tenant, name=e.config)]
    failed = set(_generate([e.generator for e in todo if e.generator], log))
    for example in todo:
        if example.generator in failed:
            continue
        root = generated_dir() if example.generator else REPO_EXAMPLES
        files = _files(root / example.folder)
        prefix = f"{example.config}/"
        try:
            services.files_upload(actor=member, bucket=bucket, prefix=prefix, files=files)
        finally:
            for item in files:
                item.stream.close()
        services.model_config_create(
            actor=member,
            name=example.config,
            region=region,
            runtime=RuntimeEnvironment.objects.get(tenant=None, name=example.runtime),
            description=example.description,
            bucket=bucket,
            prefix=prefix,
        )
        log(f"demo config {example.config} ({example.runtime}) from {bucket}/{prefix}")


def ensure_demo_inputs(member, bucket: str, log) -> None:
    """JSON Lines of instances for the example configs, so a batch job has something to run
    over: ``inputs/<config>/`` in the demo bucket (kept when already there)."""
    storage = services.tenant_storage(member.tenant)
    for folder in sorted(p for p in BATCH_INPUTS.iterdir() if p.is_dir()):
        prefix = f"inputs/{folder.name}/"
        if storage.list_folder(bucket, prefix, page_size=1).objects:
            continue
        files = _files(folder)
        try:
            services.files_upload(actor=member, bucket=bucket, prefix=prefix, files=files)
        finally:
            for item in files:
                item.stream.close()
        log(f"demo batch inputs in {bucket}/{prefix}")

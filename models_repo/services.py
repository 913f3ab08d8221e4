"""Every write of the model repository: configs, versions, custom runtimes, buckets, uploads.

Each service takes keyword-only arguments and the acting membership, asks ``accounts.authz``,
does slow storage I/O (listing, validation) before its transaction, and writes its rows and one
audit row in a single ``transaction.atomic()``. User mistakes raise ``ValidationError`` keyed by
the field to blame (``address``, ``name`` …); storage outages raise ``TransientStorageError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, ProtectedError

from accounts import audit, authz
from models_repo.addresses import (
    AddressError,
    ModelAddress,
    build_cos_address,
    check_address,
    check_bucket_name,
    parse_address,
)
from models_repo.manifest import Manifest, build_manifest, diff_manifest, folder_manifest
from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment
from models_repo.storage import (
    AccessRefused,
    NotFound,
    StorageError,
    TenantStorage,
    TransientStorageError,
    get_storage,
)
from models_repo.storage.base import check_prefix
from models_repo.uploads import UploadedFile, UploadLimits, upload_folder, upload_zip
from models_repo.validation import StorageFolder, validate_folder

# --- "in use" hook: serving registers checks (a running service, a job) ----------------------
_IN_USE_CHECKS: list[Callable[[ModelConfigVersion], str | None]] = []


def register_in_use_check(check: Callable[[ModelConfigVersion], str | None]):
    """``check(version)`` returns why the version is in use (e.g. "service ems-7f3k2p9q runs
    it") or None. Serving registers its checks from its ``AppConfig.ready()``."""
    if check not in _IN_USE_CHECKS:
        _IN_USE_CHECKS.append(check)
    return check


def version_in_use(version: ModelConfigVersion) -> str | None:
    for check in _IN_USE_CHECKS:
        reason = check(version)
        if reason:
            return reason
    return None


def tenant_storage(tenant) -> TenantStorage:
    """The tenant's storage; raises ``ServiceRoleNotAuthorized`` when the role is missing."""
    return get_storage(tenant)


def _storage_refusal(exc: StorageError, field: str = "address") -> ValidationError:
    return ValidationError({field: str(exc)})


# --- model folders ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckedFolder:
    address: ModelAddress
    manifest: Manifest
    status: str
    messages: list[str]


def resolve_address(
    *, storage: TenantStorage, address: str = "", bucket: str = "", prefix: str = ""
) -> ModelAddress:
    """A typed address, or a picked (bucket, folder) turned into the bucket's cos:// address."""
    try:
        if address:
            return parse_address(address)
        if bucket:
            info = storage.bucket_info(bucket)
            key = check_prefix(prefix if prefix.endswith("/") else prefix + "/")
            if not key:
                raise AddressError("path", "Pick a folder inside the bucket, not the bucket.")
            if info.region:
                return parse_address(build_cos_address(bucket, key, region=info.region))
            return ModelAddress("s3", bucket, key)
    except AddressError as exc:
        raise ValidationError({"address": exc.message}) from None
    except (AccessRefused, NotFound):
        raise ValidationError(
            {"address": f"There is no bucket {bucket} in this account."}
        ) from None
    except TransientStorageError:
        raise
    except StorageError as exc:
        raise _storage_refusal(exc) from None
    raise ValidationError(
        {"address": "Give the model folder: type its address, pick a folder, or upload one."}
    )


def check_folder(
    *, tenant, region: Region, runtime: RuntimeEnvironment, storage: TenantStorage, address
) -> CheckedFolder:
    """The folder rules: the tenant's bucket, the config's region, a folder (not a file) that
    exists, and a valid model of the runtime's format. Returns its manifest."""
    try:
        check_address(address, app_id=tenant.app_id, region=region.name)
        if address.region is None:  # s3:// names no region: ask the store
            bucket_region = storage.bucket_info(address.bucket).region
            if bucket_region and bucket_region != region.name:
                raise AddressError(
                    "region",
                    f"The bucket is in {bucket_region} but the config is in {region.name}.",
                )
        if storage.is_file(address.bucket, address.key):
            raise AddressError(
                "path", f"{address.key.rstrip('/')} is a file, not a folder: give its folder."
            )
        folder = StorageFolder(storage, address.bucket, address.key)
    except AddressError as exc:
        raise ValidationError({"address": exc.message}) from None
    except (AccessRefused, NotFound):
        raise ValidationError(
            {"address": f"There is no bucket {address.bucket} in this account."}
        ) from None
    except TransientStorageError:
        raise
    except StorageError as exc:
        raise _storage_refusal(exc) from None
    if not folder.files:
        raise ValidationError(
            {"address": f"The folder {address.key} in {address.bucket} is empty or does not exist."}
        )
    result = validate_folder(runtime.model_format, folder)
    if not result.ok:
        raise ValidationError({"address": result.messages})
    status = (
        ModelConfigVersion.SKIPPED
        if runtime.model_format == "custom"
        else ModelConfigVersion.PASSED
    )
    return CheckedFolder(address, build_manifest(folder.infos), status, result.messages)


def _add_version(*, actor, config: ModelConfig, runtime, checked: CheckedFolder):
    """Inside the caller's transaction: the next number (conditional UPDATE), the row, audit."""
    ModelConfig.objects.filter(pk=config.pk).update(last_version=F("last_version") + 1)
    number = ModelConfig.objects.filter(pk=config.pk).values_list("last_version", flat=True)[0]
    version = ModelConfigVersion.objects.create(
        tenant=config.tenant,
        config=config,
        number=number,
        runtime=runtime,
        address=str(checked.address),
        bucket=checked.address.bucket,
        key_prefix=checked.address.key,
        manifest=checked.manifest.as_json(),
        manifest_digest=checked.manifest.digest,
        total_size=checked.manifest.total_size,
        validation_status=checked.status,
        validation_messages=checked.messages,
        created_by=actor,
    )
    audit.record(
        actor=actor,
        action="ems:CreateModelConfigVersion",
        resource=config.resource_name,
        detail={"version": version.label, "address": version.address, "runtime": runtime.name},
    )
    return version


def _usable_runtime(actor, runtime: RuntimeEnvironment) -> RuntimeEnvironment:
    if runtime.tenant_id not in (None, actor.tenant_id):
        raise ValidationError({"runtime": "Pick one of the runtimes offered."})
    return runtime


def model_config_create(
    *,
    actor,
    name: str,
    region: Region,
    runtime: RuntimeEnvironment,
    description: str = "",
    address: str = "",
    bucket: str = "",
    prefix: str = "",
) -> ModelConfig:
    """A config and its first version (``1.0``) from the given folder."""
    tenant = actor.tenant
    authz.check(
        actor,
        "ems:CreateModelConfig",
        authz.resource_name(tenant, "config", "*", region=region.name),
    )
    _usable_runtime(actor, runtime)
    if ModelConfig.objects.filter(tenant=tenant, name=name).exists():
        raise ValidationError({"name": f"A config named {name} already exists in this account."})
    storage = tenant_storage(tenant)
    target = resolve_address(storage=storage, address=address, bucket=bucket, prefix=prefix)
    checked = check_folder(
        tenant=tenant, region=region, runtime=runtime, storage=storage, address=target
    )
    try:
        with transaction.atomic():
            config = ModelConfig.objects.create(
                tenant=tenant, name=name, region=region, description=description, created_by=actor
            )
            audit.record(
                actor=actor,
                action="ems:CreateModelConfig",
                resource=config.resource_name,
                detail={"name": name, "region": region.name},
            )
            _add_version(actor=actor, config=config, runtime=runtime, checked=checked)
    except IntegrityError:
        raise ValidationError(
            {"name": f"A config named {name} already exists in this account."}
        ) from None
    return config


def model_config_version_create(
    *,
    actor,
    config: ModelConfig,
    runtime: RuntimeEnvironment,
    address: str = "",
    bucket: str = "",
    prefix: str = "",
) -> ModelConfigVersion:
    """The next version of ``config``; numbers are distinct under concurrent creation."""
    authz.check(actor, "ems:CreateModelConfigVersion", config)
    _usable_runtime(actor, runtime)
    storage = tenant_storage(actor.tenant)
    target = resolve_address(storage=storage, address=address, bucket=bucket, prefix=prefix)
    checked = check_folder(
        tenant=actor.tenant, region=config.region, runtime=runtime, storage=storage, address=target
    )
    with transaction.atomic():
        return _add_version(actor=actor, config=config, runtime=runtime, checked=checked)


def model_config_version_delete(*, actor, version: ModelConfigVersion) -> None:
    authz.check(actor, "ems:DeleteModelConfigVersion", version.config)
    reason = version_in_use(version)
    if reason:
        raise ValidationError(f"Version {version.label} is in use: {reason}.")
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="ems:DeleteModelConfigVersion",
            resource=version.config.resource_name,
            detail={"version": version.label},
        )
        try:
            version.delete()
        except ProtectedError:
            raise ValidationError(f"Version {version.label} is in use.") from None


def model_config_delete(*, actor, config: ModelConfig) -> None:
    authz.check(actor, "ems:DeleteModelConfig", config)
    for version in config.versions.all():
        reason = version_in_use(version)
        if reason:
            raise ValidationError(f"Version {version.label} is in use: {reason}.")
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="ems:DeleteModelConfig",
            resource=config.resource_name,
            detail={"name": config.name},
        )
        try:
            config.versions.all().delete()
            config.delete()
        except ProtectedError:
            raise ValidationError(f"A version of {config.name} is in use.") from None


class FolderChanged(Exception):
    """The version's folder no longer matches its manifest; ``message`` names the file."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def check_version_unchanged(version: ModelConfigVersion) -> Manifest:
    """Raise ``FolderChanged`` naming the first changed, added or removed file; serving calls it
    before a deploy. Returns the (unchanged) manifest."""
    storage = tenant_storage(version.tenant)
    now = folder_manifest(storage, version.bucket, version.key_prefix)
    then = Manifest.from_json(version.manifest)
    difference = diff_manifest(then, now)
    if difference or now.digest != version.manifest_digest:
        raise FolderChanged(
            f"The folder of {version} changed since the version was created: "
            f"{difference or 'its manifest differs'} Create a new version to use it."
        )
    return now


# --- custom runtimes ---------------------------------------------------------------------------
def runtime_create(
    *,
    actor,
    name: str,
    image: str,
    model_format: str = "custom",
    display_name: str = "",
    needs_gpu: bool = False,
    health_check: bool = True,
    description: str = "",
) -> RuntimeEnvironment:
    authz.check(actor, "ems:CreateRuntime", authz.resource_name(actor.tenant, "runtime", name))
    if RuntimeEnvironment.objects.filter(tenant__isnull=True, name=name).exists() or (
        RuntimeEnvironment.objects.filter(tenant=actor.tenant, name=name).exists()
    ):
        raise ValidationError({"name": f"A runtime named {name} already exists."})
    runtime = RuntimeEnvironment(
        tenant=actor.tenant,
        name=name,
        display_name=display_name or name,
        runtime="custom",
        model_format=model_format,
        image=image,
        needs_gpu=needs_gpu,
        health_check=health_check,
        description=description,
    )
    runtime.full_clean()
    with transaction.atomic():
        runtime.save()
        audit.record(
            actor=actor,
            action="ems:CreateRuntime",
            resource=runtime.resource_name,
            detail={"image": image},
        )
    return runtime


def runtime_delete(*, actor, runtime: RuntimeEnvironment) -> None:
    authz.check(actor, "ems:DeleteRuntime", runtime)
    if runtime.is_public:
        raise ValidationError("Public runtimes are managed by the platform operator.")
    if ModelConfigVersion.objects.filter(runtime=runtime).exists():
        raise ValidationError(f"Versions use the runtime {runtime.name}; it cannot be deleted.")
    with transaction.atomic():
        audit.record(actor=actor, action="ems:DeleteRuntime", resource=runtime.resource_name)
        runtime.delete()


# --- buckets and uploads -------------------------------------------------------------------------
def bucket_resource(tenant, bucket: str) -> str:
    return authz.resource_name(tenant, "bucket", bucket)


def bucket_create(*, actor, name: str, region: Region):
    storage = tenant_storage(actor.tenant)
    try:
        full = storage.full_bucket_name(name.strip().lower())
        check_bucket_name(full)
    except AccessRefused as exc:
        raise ValidationError({"name": str(exc)}) from None
    except AddressError as exc:
        raise ValidationError({"name": exc.message}) from None
    authz.check(actor, "storage:CreateBucket", bucket_resource(actor.tenant, full))
    info = storage.create_bucket(full, region=region.name)
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="storage:CreateBucket",
            resource=bucket_resource(actor.tenant, full),
            detail={"region": region.name},
        )
    return info


def _upload(actor, bucket: str, prefix: str, do_upload) -> dict:
    authz.check(actor, "storage:PutObject", bucket_resource(actor.tenant, bucket))
    storage = tenant_storage(actor.tenant)
    try:
        region = storage.bucket_info(bucket).region
    except (AccessRefused, NotFound):
        raise ValidationError({"bucket": f"There is no bucket {bucket} in this account."}) from None
    written = do_upload(storage)
    folder = prefix if prefix.endswith("/") else prefix + "/"
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="storage:PutObject",
            resource=bucket_resource(actor.tenant, bucket),
            detail={"prefix": folder, "files": len(written)},
        )
    address = (
        build_cos_address(bucket, folder, region=region) if region else f"s3://{bucket}/{folder}"
    )
    return {"bucket": bucket, "prefix": folder, "address": address, "files": written}


def objects_delete(*, actor, bucket: str, key: str) -> int:
    """Delete one object, or a folder (``key`` ending in ``/``) with everything under it.
    Refused while a config version is served from that folder. Answers how many were deleted."""
    authz.check(actor, "storage:DeleteObject", bucket_resource(actor.tenant, bucket))
    storage = tenant_storage(actor.tenant)
    try:
        storage.bucket_info(bucket)
    except (AccessRefused, NotFound):
        raise ValidationError({"bucket": f"There is no bucket {bucket} in this account."}) from None
    folder = key.endswith("/")
    used = ModelConfigVersion.objects.filter(tenant=actor.tenant, bucket=bucket)
    for version in used.select_related("config"):
        inside = (
            version.key_prefix.startswith(key) if folder else key.startswith(version.key_prefix)
        )
        if inside:
            raise ValidationError(
                f"{bucket}/{key} holds the folder of {version.config.name} {version.label}; "
                "delete that version first (a version never changes, so its folder stays)."
            )
    keys = [info.key for info in storage.walk(bucket, key)] if folder else [key]
    if not folder:
        storage.stat(bucket, key)  # NotFound: nothing to delete
    for name in keys:
        storage.delete(bucket, name)
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="storage:DeleteObject",
            resource=bucket_resource(actor.tenant, bucket),
            detail={"key": key, "objects": len(keys)},
        )
    return len(keys)


def upload_discard(*, actor, upload: dict, reason: str) -> None:
    """Delete the files an upload just wrote, when what they were for was refused (e.g. the
    folder is not a valid model): a refused form leaves nothing in the bucket, and the audit
    log says so next to the upload's own row."""
    storage = tenant_storage(actor.tenant)
    bucket = upload["bucket"]
    for info in upload["files"]:
        storage.delete(bucket, info.key if hasattr(info, "key") else info["key"])
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="storage:DeleteObject",
            resource=bucket_resource(actor.tenant, bucket),
            detail={"prefix": upload["prefix"], "files": len(upload["files"]), "why": reason},
        )


def files_upload(*, actor, bucket: str, prefix: str, files: list[UploadedFile]) -> dict:
    """A local folder's files, each with its relative path, into ``bucket/prefix/``."""
    return _upload(
        actor,
        bucket,
        prefix,
        lambda storage: upload_folder(
            storage, bucket=bucket, prefix=prefix, files=files, limits=UploadLimits.from_settings()
        ),
    )


def zip_upload(*, actor, bucket: str, prefix: str, stream, size: int) -> dict:
    """A zip of a model folder, checked then unpacked into ``bucket/prefix/``."""
    return _upload(
        actor,
        bucket,
        prefix,
        lambda storage: upload_zip(
            storage,
            bucket=bucket,
            prefix=prefix,
            stream=stream,
            size=size,
            limits=UploadLimits.from_settings(),
        ),
    )

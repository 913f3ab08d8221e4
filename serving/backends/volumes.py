"""Models on a Docker engine of another host: one volume per model version, filled through the
engine's own API (no shared disk).

``ensure_volume`` makes ``ems-model-<digest>`` (the version's manifest digest) once per node:

1. the volume is created and a short-lived *helper* container of the runtime image (no network,
   every capability dropped) mounts it read-write at ``/models/m``;
2. the control plane streams the version's files (its own verified copy, ``serving.modelcache``)
   into it with ``put_archive`` (a tar of files readable by the runtime's uid 10001);
3. the helper runs once: it lists every file's path, size and SHA-256 *as the node stores it*
   and prints the digest of that listing, which must equal the digest of the same listing taken
   on the control plane's copy (whose keys and sizes match the version's manifest: it was
   filled after ``check_version_unchanged``). A mismatch removes the volume and fails the
   launch (transient: retried from scratch);
4. verified, the helper is renamed ``ems-model-<digest>``: that stopped container is the
   volume's *keeper* — "this volume is complete" — and also keeps Docker from removing the
   volume by accident. Concurrent fillers race on the rename; the loser drops its helper.

Instances mount the volume read-only at ``/models/m``. ``gc`` removes keepers and volumes no
live instance uses once they are ``min_age`` seconds old (a volume in use cannot be removed:
Docker refuses, and it is kept), and helpers left by a killed fill after an hour. Django-free.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import tarfile
import tempfile
import uuid
from pathlib import Path

from docker.errors import APIError, ImageNotFound, NotFound

from serving.backends.base import MODEL_MOUNT, BackendError, parse_time

log = logging.getLogger(__name__)

PREFIX = "ems-model-"
LABEL_VOLUME = "ems.model-volume"  # on volumes, keepers and helpers: the digest
LABEL_VOLUME_NODE = "ems.model-node"  # never ems.node: the node sweep removes those
HELPER_TIMEOUT = 300
HELPER_PYTHON = "/opt/ems/bin/python"

# Runs inside the helper: the same listing as content_digest(), of what the node stores.
VERIFY = r"""
import hashlib, json, os, sys
root = sys.argv[1]
rows = []
for folder, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(files):
        path = os.path.join(folder, name)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        key = os.path.relpath(path, root).replace(os.sep, "/")
        rows.append([key, os.path.getsize(path), digest.hexdigest()])
rows.sort()
text = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
print("ems-digest", hashlib.sha256(text).hexdigest(), len(rows))
"""


def volume_name(digest: str) -> str:
    return f"{PREFIX}{digest}"


def content_rows(root: Path) -> list[list]:
    rows = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
            key = os.path.relpath(path, root).replace(os.sep, "/")
            rows.append([key, os.path.getsize(path), digest.hexdigest()])
    rows.sort()
    return rows


def content_digest(root: Path) -> str:
    text = json.dumps(content_rows(root), separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(text).hexdigest()


def _keeper(client, digest: str):
    try:
        container = client.containers.get(volume_name(digest))
    except NotFound:
        return None
    return container if container.labels.get(LABEL_VOLUME) == digest else None


def _tar(model_dir: Path, out) -> None:
    """Files 0644, folders 0755, owned by root: the runtime (uid 10001) reads, never writes."""
    with tarfile.open(fileobj=out, mode="w") as archive:
        for folder, dirs, files in os.walk(model_dir):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = Path(folder) / name
                if path.is_symlink():
                    continue
                info = archive.gettarinfo(str(path), arcname=str(path.relative_to(model_dir)))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o755 if info.isdir() else 0o644
                if info.isdir():
                    archive.addfile(info)
                else:
                    with path.open("rb") as handle:
                        archive.addfile(info, handle)


def ensure_volume(client, *, node: str, digest: str, model_dir: str, image: str) -> str:
    """The name of the node's complete, verified volume of ``digest`` (made when missing)."""
    name = volume_name(digest)
    if _keeper(client, digest) is not None:
        return name
    source = Path(model_dir)
    expected = content_digest(source)
    labels = {LABEL_VOLUME: digest, LABEL_VOLUME_NODE: node}
    try:
        client.volumes.create(name, labels=labels)  # an existing volume is returned as it is
        helper = client.containers.create(
            image,
            entrypoint=[HELPER_PYTHON, "-c", VERIFY, MODEL_MOUNT],
            command=[],
            name=f"ems-fill-{digest[:12]}-{uuid.uuid4().hex[:6]}",
            labels=labels,
            user="0:0",
            network_disabled=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            volumes={name: {"bind": MODEL_MOUNT, "mode": "rw"}},
        )
    except ImageNotFound as exc:
        raise BackendError(f"image {image} is not on node {node}") from exc
    except APIError as exc:
        raise BackendError(
            f"cannot prepare the model volume {name}: {exc}", transient=True
        ) from exc
    try:
        with tempfile.TemporaryFile() as archive:
            _tar(source, archive)
            archive.seek(0)
            if not helper.put_archive(MODEL_MOUNT, archive):
                raise BackendError(f"the engine refused the model files of {name}", transient=True)
        helper.start()
        result = helper.wait(timeout=HELPER_TIMEOUT)
        output = helper.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        words = output.split()
        got = words[words.index("ems-digest") + 1] if "ems-digest" in words else ""
        if result.get("StatusCode") != 0 or got != expected:
            helper.remove(force=True)
            helper = None
            _remove_volume(client, name)
            raise BackendError(
                f"the model volume {name} on node {node} does not match the model "
                f"(content digest {got or 'missing'}, expected {expected}): {output[-500:]}",
                transient=True,
            )
        try:
            helper.rename(name)  # verified: the helper becomes the volume's keeper
        except APIError as exc:
            if getattr(exc, "status_code", None) != 409:
                raise
            helper.remove(force=True)  # another filler's keeper won; its volume is the same
        helper = None
    except APIError as exc:
        raise BackendError(f"cannot fill the model volume {name}: {exc}", transient=True) from exc
    except Exception as exc:  # requests' timeouts and connection errors
        if isinstance(exc, BackendError):
            raise
        raise BackendError(f"cannot fill the model volume {name}: {exc}", transient=True) from exc
    finally:
        if helper is not None:
            with contextlib.suppress(APIError):
                helper.remove(force=True)
    log.info("model volume %s filled and verified on %s", name, node)
    return name


def _remove_volume(client, name: str) -> bool:
    try:
        client.volumes.get(name).remove()
    except NotFound:
        return True
    except APIError:  # in use by an instance (or a keeper): keep it
        return False
    return True


def gc(client, *, node: str, in_use, min_age: float = 600.0) -> list[str]:
    """Remove volumes of digests not in ``in_use`` (and their keepers) once ``min_age`` old."""
    keep = set(in_use)
    now = dt.datetime.now(dt.UTC)
    removed = []
    containers = client.containers.list(
        all=True, filters={"label": [f"{LABEL_VOLUME_NODE}={node}"]}
    )
    for container in containers:
        digest = container.labels.get(LABEL_VOLUME, "")
        created = parse_time(container.attrs.get("Created")) or now
        age = (now - created).total_seconds()
        if container.name != volume_name(digest):  # a helper a killed fill left
            if age > max(min_age, 3600):
                container.remove(force=True)
            continue
        if digest in keep or age < min_age:
            continue
        container.remove(force=True)
        if _remove_volume(client, volume_name(digest)):
            removed.append(digest)
    return removed


def digests(client, *, node: str) -> list[str]:
    """The digests whose volumes are complete on the node (keepers)."""
    found = client.containers.list(all=True, filters={"label": [f"{LABEL_VOLUME_NODE}={node}"]})
    return sorted(
        c.labels[LABEL_VOLUME] for c in found if c.name == volume_name(c.labels[LABEL_VOLUME])
    )


__all__ = ["content_digest", "digests", "ensure_volume", "gc", "volume_name"]

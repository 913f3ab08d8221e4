"""Model volumes on a real engine (the local one here; remote nodes use the same code over
TLS, see test_sv_remote_nodes_e2e.py): filled through the engine's API and verified, a
leftover of a killed fill is detected and refilled, the runtime reads the files, and garbage
collection removes what no instance uses."""

from __future__ import annotations

import hashlib
import shutil
import uuid

import pytest

from serving.backends import BackendError, volumes
from tests.serving.helpers import angel_model, build_image, open_tmp

pytestmark = pytest.mark.e2e


@pytest.fixture
def node_name(docker_client):
    name = f"vol-{uuid.uuid4().hex[:6]}"
    yield name
    for container in docker_client.containers.list(
        all=True, filters={"label": [f"{volumes.LABEL_VOLUME_NODE}={name}"]}
    ):
        container.remove(force=True)
    for volume in docker_client.volumes.list(
        filters={"label": f"{volumes.LABEL_VOLUME_NODE}={name}"}
    ):
        volume.remove(force=True)


def test_fill_verify_refill_and_gc(docker_client, node_name):
    image = build_image("angel")
    source = open_tmp("ems-vol-")
    try:
        shutil.copytree(angel_model(), source / "m")
        digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        name = volumes.volume_name(digest)
        labels = {volumes.LABEL_VOLUME: digest, volumes.LABEL_VOLUME_NODE: node_name}

        # a killed fill left a file in the volume: the check sees it, the volume goes
        docker_client.volumes.create(name, labels=labels)
        docker_client.containers.run(
            image,
            entrypoint=["/bin/sh", "-c", "echo stale > /models/m/leftover"],
            command=[],
            user="0:0",
            volumes={name: {"bind": "/models/m", "mode": "rw"}},
            remove=True,
        )
        with pytest.raises(BackendError, match="does not match the model") as caught:
            volumes.ensure_volume(
                docker_client,
                node=node_name,
                digest=digest,
                model_dir=str(source / "m"),
                image=image,
            )
        assert caught.value.transient
        assert not docker_client.volumes.list(filters={"name": name})
        assert volumes.digests(docker_client, node=node_name) == []

        # filled from scratch: verified, kept by its keeper, readable by the runtime's user
        got = volumes.ensure_volume(
            docker_client, node=node_name, digest=digest, model_dir=str(source / "m"), image=image
        )
        assert got == name
        assert volumes.digests(docker_client, node=node_name) == [digest]
        listing = docker_client.containers.run(
            image,
            entrypoint=["/bin/sh", "-c", "cat /models/m/6/input_bias/0 && ls -ln /models/m/6"],
            command=[],
            user="10001:10001",
            volumes={name: {"bind": "/models/m", "mode": "ro"}},
            remove=True,
        ).decode()
        assert (source / "m/6/input_bias/0").read_text().strip() in listing
        # a second call finds the keeper and copies nothing
        assert volumes.ensure_volume(
            docker_client, node=node_name, digest=digest, model_dir="/nonexistent", image=image
        )

        # in use: kept; unused and old enough: keeper and volume removed
        assert volumes.gc(docker_client, node=node_name, in_use={digest}, min_age=0) == []
        assert volumes.gc(docker_client, node=node_name, in_use=set(), min_age=3600) == []
        assert volumes.gc(docker_client, node=node_name, in_use=set(), min_age=0) == [digest]
        assert volumes.digests(docker_client, node=node_name) == []
        assert not docker_client.volumes.list(filters={"name": name})
    finally:
        shutil.rmtree(source, ignore_errors=True)

"""Versions: numbered by the server without duplicates under concurrency, immutable in the
model layer, and a folder changed after creation is caught before deploy."""

import io
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections

from models_repo import services
from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment
from tests.conftest import service_missing
from tests.models_repo.conftest import MODELS, seed_folder, tenant_store


def make_config(owner, *, prefix="m/"):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix=prefix)
    config = services.model_config_create(
        actor=owner.membership,
        name="p",
        region=Region.objects.get(name="ap-beijing"),
        runtime=RuntimeEnvironment.objects.get(name="pmml", tenant=None),
        address=address,
    )
    return config, address


@pytest.mark.django_db
def test_versions_are_immutable_in_the_model_layer(owner, repo):
    config, _ = make_config(owner)
    version = config.versions.get()
    version.address = "s3://x-1/y/"
    with pytest.raises(ValidationError, match="never changes"):
        version.save()
    with pytest.raises(ValidationError, match="never changes"):
        ModelConfigVersion.objects.filter(pk=version.pk).update(number=7)
    version.refresh_from_db()
    assert version.number == 1


@pytest.mark.django_db
def test_a_changed_folder_is_caught_naming_the_file(owner, repo):
    config, _ = make_config(owner)
    version = config.versions.get()
    assert services.check_version_unchanged(version).digest == version.manifest_digest
    store = tenant_store(owner.tenant)
    store.write(version.bucket, "m/LogisticRegressionIris.pmml", io.BytesIO(b"<PMML/>"))
    with pytest.raises(services.FolderChanged) as caught:
        services.check_version_unchanged(version)
    assert "LogisticRegressionIris.pmml changed" in caught.value.message
    store.write(version.bucket, "m/extra.txt", io.BytesIO(b"x"))
    with pytest.raises(services.FolderChanged, match="changed"):
        services.check_version_unchanged(version)


@pytest.mark.django_db
def test_a_removed_file_is_named(owner, repo):
    config, _ = make_config(owner)
    version = config.versions.get()
    tenant_store(owner.tenant).delete(version.bucket, "m/LogisticRegressionIris.pmml")
    with pytest.raises(services.FolderChanged, match=r"LogisticRegressionIris\.pmml was removed"):
        services.check_version_unchanged(version)


@pytest.mark.django_db
def test_sequential_versions_count_up(owner, repo):
    config, address = make_config(owner)
    runtime = RuntimeEnvironment.objects.get(name="pmml", tenant=None)
    for _ in range(2):
        services.model_config_version_create(
            actor=owner.membership, config=config, runtime=runtime, address=address
        )
    assert [v.label for v in config.versions.order_by("number")] == ["1.0", "2.0", "3.0"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_version_creation_gives_distinct_numbers(owner, repo):
    if connection.vendor != "postgresql":
        service_missing("needs PostgreSQL (DATABASE_URL=postgres://…) for real concurrent writers")
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    config = ModelConfig.objects.create(
        tenant=owner.tenant, name="c", region=Region.objects.get(name="ap-beijing")
    )
    runtime = RuntimeEnvironment.objects.get(name="pmml", tenant=None)
    barrier = threading.Barrier(3)
    errors = []

    def create():
        try:
            barrier.wait()
            services.model_config_version_create(
                actor=owner.membership, config=config, runtime=runtime, address=address
            )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    labels = sorted(v.label for v in config.versions.all())
    assert labels == ["1.0", "2.0", "3.0"]

"""The model repository API: configs and versions from the three sources, refusals with clear
messages, immutability, buckets, uploads, isolation."""

import io
import zipfile

import pytest

from models_repo.models import ModelConfigVersion
from tests.models_repo.conftest import MODELS, runtime_id, seed_folder, tenant_store

pytestmark = pytest.mark.django_db

CONFIGS = "/api/v1/model-configs/"


def zip_of(source):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(source).as_posix())
    buffer.seek(0)
    buffer.name = "model.zip"
    return buffer


def create_config(world, address, *, name="lr", runtime="angel", region="ap-beijing"):
    return world.api.post(
        CONFIGS,
        {"name": name, "region": region, "runtime": runtime_id(runtime), "address": address},
        format="json",
    )


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_config_and_three_versions_through_the_three_sources(owner, repo, backend, request):
    if backend == "s3":
        request.getfixturevalue("repo_s3")
    _, lr = MODELS["angel-lr"]
    bucket, address = seed_folder(owner.tenant, lr, prefix="lr/6/")
    # 1. a typed address
    answer = create_config(owner, address)
    assert answer.status_code == 201, answer.json()
    config = answer.json()
    assert [v["version"] for v in config["versions"]] == ["1.0"]
    assert config["versions"][0]["address"] == address
    assert len(config["versions"][0]["manifest_digest"]) == 64
    versions = f"{CONFIGS}{config['id']}/versions/"
    # 2. browse and pick
    listing = owner.api.get(f"/api/v1/buckets/{bucket}/objects/", {"prefix": "lr/"})
    assert listing.status_code == 200
    assert listing.json()["folders"] == ["lr/6/"]
    answer = owner.api.post(
        versions,
        {"runtime": runtime_id("angel"), "bucket": bucket, "prefix": "lr/6/"},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["version"] == "2.0"
    # 3. upload a zip into the bucket, then pick it
    upload = owner.api.post(
        f"/api/v1/buckets/{bucket}/upload/",
        {"prefix": "uploaded/lr/", "zip": zip_of(lr)},
        format="multipart",
    )
    assert upload.status_code == 201, upload.json()
    assert upload.json()["address"].endswith("/uploaded/lr/")
    answer = owner.api.post(
        versions, {"runtime": runtime_id("angel"), "address": upload.json()["address"]}
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["version"] == "3.0"
    listed = owner.api.get(versions).json()
    assert [v["version"] for v in listed] == ["1.0", "2.0", "3.0"]
    assert owner.api.get(f"{versions}3/").json()["address"] == upload.json()["address"]


def test_folder_upload_keeps_relative_paths(owner, repo):
    bucket, _ = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="seed/")
    answer = owner.api.post(
        f"/api/v1/buckets/{bucket}/upload/",
        {
            "prefix": "sm/",
            "files": [io.BytesIO(b"graph"), io.BytesIO(b"index")],
            "paths": ["saved_model.pb", "variables/variables.index"],
        },
        format="multipart",
    )
    assert answer.status_code == 201, answer.json()
    keys = [f["key"] for f in answer.json()["files"]]
    assert keys == ["sm/saved_model.pb", "sm/variables/variables.index"]


def test_wrong_region_is_refused_with_a_clear_message(owner, repo):
    _, address = seed_folder(owner.tenant, MODELS["angel-lr"][1], region="ap-shanghai")
    answer = create_config(owner, address, region="ap-beijing")
    assert answer.status_code == 400
    assert answer.json() == {
        "address": ["The bucket is in ap-shanghai but the config is in ap-beijing."]
    }
    assert not ModelConfigVersion.objects.exists()


def test_wrong_format_is_refused_listing_what_is_missing(owner, repo):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    answer = create_config(owner, address, runtime="tfserving")
    assert answer.status_code == 400
    message = answer.json()["address"][0]
    assert message.startswith("Not a valid TensorFlow SavedModel:")
    assert "saved_model.pb (or saved_model.pbtxt) is missing" in message
    assert "variables/ folder is missing" in message


def test_a_file_address_and_a_missing_folder_are_refused(owner, repo):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    file_address = address + "LogisticRegressionIris.pmml/"
    answer = create_config(owner, file_address, runtime="pmml")
    assert "is a file, not a folder" in answer.json()["address"][0]
    answer = create_config(owner, address + "nothing/", runtime="pmml")
    assert "empty or does not exist" in answer.json()["address"][0]
    answer = create_config(owner, "https://example.com/model/", runtime="pmml")
    assert "never fetches a typed URL" in answer.json()["address"][0]


def test_another_tenants_bucket_is_refused(owner, outsider, repo):
    _, address = seed_folder(outsider.tenant, MODELS["pmml-lr"][1])
    answer = create_config(owner, address, runtime="pmml")
    assert answer.status_code == 400
    assert f"not to this account ({owner.tenant.app_id})" in answer.json()["address"][0]


def test_names_are_unique_in_the_tenant_and_short(owner, outsider, repo):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    assert create_config(owner, address, runtime="pmml").status_code == 201
    again = create_config(owner, address, runtime="pmml")
    assert again.status_code == 400
    assert "already exists" in again.json()["name"][0]
    long = create_config(owner, address, runtime="pmml", name="x" * 21)
    assert long.status_code == 400
    _, other = seed_folder(outsider.tenant, MODELS["pmml-lr"][1])
    assert create_config(outsider, other, runtime="pmml").status_code == 201


def test_versions_are_never_updated_through_the_api(owner, repo):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    config = create_config(owner, address, runtime="pmml").json()
    url = f"{CONFIGS}{config['id']}/versions/1/"
    for method in ("put", "patch"):
        answer = getattr(owner.api, method)(url, {"address": "s3://x-1/y/"}, format="json")
        assert answer.status_code == 405
    assert owner.api.put(f"{CONFIGS}{config['id']}/", {}, format="json").status_code == 405
    assert owner.api.get(url).json()["address"] == address


def test_the_version_and_config_of_a_running_service_cannot_be_deleted(
    owner, angel_version, dedicated
):
    """The real in-use check (serving's), against a service that runs the version: both
    deletes are refused naming the service, and the service keeps running."""
    from serving import services as serving
    from serving.models import Service
    from tests.serving.conftest import converge, status_is

    service = serving.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="uses-it",
        size=serving.InstanceSize(cpu_millicores=500, memory_mib=512),
    )
    converge(service, status_is(Service.NORMAL), what="Normal")
    config_url = f"{CONFIGS}{angel_version.config_id}/"
    for url in (f"{config_url}versions/1/", config_url):
        answer = owner.api.delete(url)
        assert answer.status_code == 400, url
        assert "Version 1.0 is in use" in str(answer.json()), answer.json()
        assert "uses-it" in str(answer.json()), answer.json()
    assert ModelConfigVersion.objects.filter(pk=angel_version.pk).exists()
    assert service.instances.filter(state="running").count() == 1  # still serving


def test_a_version_no_service_uses_can_be_deleted(owner, repo):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    config = create_config(owner, address, runtime="pmml").json()
    assert owner.api.delete(f"{CONFIGS}{config['id']}/versions/1/").status_code == 204


def test_outsider_sees_404_everywhere(owner, outsider, repo):
    bucket, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    config = create_config(owner, address, runtime="pmml").json()
    for url in (
        f"{CONFIGS}{config['id']}/",
        f"{CONFIGS}{config['id']}/versions/",
        f"{CONFIGS}{config['id']}/versions/1/",
        f"/api/v1/buckets/{bucket}/objects/",
    ):
        assert outsider.api.get(url).status_code == 404, url
    assert outsider.api.get(CONFIGS).json()["results"] == []
    assert bucket not in [b["name"] for b in outsider.api.get("/api/v1/buckets/").json()]
    upload = outsider.api.post(
        f"/api/v1/buckets/{bucket}/upload/",
        {"prefix": "x/", "files": [io.BytesIO(b"1")], "paths": ["a"]},
        format="multipart",
    )
    assert upload.status_code == 404  # before a byte of the body is read
    assert not tenant_store(owner.tenant).is_file(bucket, "x/a")


def test_service_role_not_authorized_is_refused(new_owner, repo):
    answer = new_owner.api.get("/api/v1/buckets/")
    assert answer.status_code == 403
    assert answer.json()["code"] == "service_role_not_authorized"


def test_regions_runtimes_and_custom_runtimes(owner, outsider, repo):
    regions = owner.api.get("/api/v1/regions/").json()
    assert {"ap-beijing", "ap-shanghai", "ap-guangzhou"} <= {r["name"] for r in regions}
    runtimes = owner.api.get("/api/v1/runtimes/").json()["results"]
    public = {r["name"]: r for r in runtimes if r["is_public"]}
    assert set(public) == {"tfserving", "pmml", "tensorrt", "openvino", "angel"}
    assert public["tensorrt"]["needs_gpu"] is True
    assert public["pmml"]["image"] == "ems-runtime-pmml"
    made = owner.api.post(
        "/api/v1/runtimes/",
        {
            "name": "my-xgb",
            "image": "registry.example.com/team/xgb-server",
            "model_format": "custom",
        },
        format="json",
    )
    assert made.status_code == 201, made.json()
    assert made.json()["runtime"] == "custom"
    clash = owner.api.post("/api/v1/runtimes/", {"name": "pmml", "image": "x"}, format="json")
    assert clash.status_code == 400
    theirs = outsider.api.get("/api/v1/runtimes/").json()["results"]
    assert "my-xgb" not in [r["name"] for r in theirs]
    assert outsider.api.get(f"/api/v1/runtimes/{made.json()['id']}/").status_code == 404


def test_buckets_create_list_and_paginate(owner, repo):
    made = owner.api.post("/api/v1/buckets/", {"name": "models", "region": "ap-guangzhou"})
    assert made.status_code == 201, made.json()
    bucket = made.json()["name"]
    assert bucket == f"models-{owner.tenant.app_id}"
    assert made.json()["region"] == "ap-guangzhou"
    store = tenant_store(owner.tenant)
    for n in range(5):
        store.write(bucket, f"f/{n}.txt", io.BytesIO(b"x"))
    first = owner.api.get(f"/api/v1/buckets/{bucket}/objects/", {"prefix": "f/", "page_size": 3})
    body = first.json()
    assert [o["key"] for o in body["objects"]] == ["f/0.txt", "f/1.txt", "f/2.txt"]
    second = owner.api.get(
        f"/api/v1/buckets/{bucket}/objects/",
        {"prefix": "f/", "page_size": 3, "token": body["next_token"]},
    ).json()
    assert [o["key"] for o in second["objects"]] == ["f/3.txt", "f/4.txt"]
    assert second["next_token"] is None
    bad = owner.api.post("/api/v1/buckets/", {"name": "Bad_Name", "region": "ap-beijing"})
    assert bad.status_code == 400


def test_upload_over_the_limit_is_413_and_attacks_write_nothing(owner, repo, settings):
    bucket, _ = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="seed/")
    settings.EMS_UPLOAD_MAX_BYTES = 2048
    big = owner.api.post(
        f"/api/v1/buckets/{bucket}/upload/",
        {"prefix": "big/", "files": [io.BytesIO(b"x" * 3000)], "paths": ["a"]},
        format="multipart",
    )
    assert big.status_code == 413
    settings.EMS_UPLOAD_MAX_BYTES = 1 << 20
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ok.txt", b"1")
        archive.writestr("../../escape.txt", b"2")
    buffer.seek(0)
    buffer.name = "evil.zip"
    evil = owner.api.post(
        f"/api/v1/buckets/{bucket}/upload/", {"prefix": "evil/", "zip": buffer}, format="multipart"
    )
    assert evil.status_code == 400
    assert "'..'" in evil.json()["detail"]
    keys = [i.key for i in tenant_store(owner.tenant).walk(bucket, "")]
    assert all(key.startswith("seed/") for key in keys)


def test_config_list_query_count_is_pinned(owner, repo, django_assert_max_num_queries):
    """Session, actor, service role, count, configs, versions (prefetched with runtimes): the
    same handful of queries for one config or many."""
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    for n in range(4):
        config = create_config(owner, address, runtime="pmml", name=f"c{n}").json()
        owner.api.post(
            f"{CONFIGS}{config['id']}/versions/",
            {"runtime": runtime_id("pmml"), "address": address},
        )
    with django_assert_max_num_queries(8):
        body = owner.api.get(CONFIGS).json()
    assert body["count"] == 4
    assert all(len(config["versions"]) == 2 for config in body["results"])

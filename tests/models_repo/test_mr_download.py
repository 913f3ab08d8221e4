"""Downloading one object: the API (``buckets/{bucket}/download/?key=``) and the bucket
browser's download page, on the local store and on S3 over HTTP (moto)."""

import io
import re

import pytest

from tests.models_repo.conftest import MODELS, seed_folder, tenant_store

pytestmark = pytest.mark.django_db


def body_of(answer) -> bytes:
    return b"".join(answer.streaming_content)


@pytest.fixture(params=["local", "s3"])
def stored(request, owner, repo):
    """A bucket of the owner's with a model folder and a 300 KiB JSON Lines file (several
    chunks of the stream), on each backend."""
    if request.param == "s3":
        request.getfixturevalue("repo_s3")
    bucket, _ = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="m/")
    lines = b"".join(b'{"predictions": [%d]}\n' % n for n in range(15000))
    tenant_store(owner.tenant).write(bucket, "out/part 1.jsonl", io.BytesIO(lines))
    return bucket, lines


def test_api_streams_one_object_with_its_headers(owner, stored):
    bucket, lines = stored
    answer = owner.api.get(
        f"/api/v1/buckets/{bucket}/download/",
        {"key": "out/part 1.jsonl"},
        HTTP_ACCEPT="application/octet-stream",  # any Accept: the file's own type answers
    )
    assert answer.status_code == 200
    assert answer.streaming
    assert answer["Content-Type"] == "application/jsonl"
    assert answer["Content-Length"] == str(len(lines))
    assert answer["Content-Disposition"] == 'attachment; filename="part 1.jsonl"'
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert body_of(answer) == lines
    pmml = owner.api.get(
        f"/api/v1/buckets/{bucket}/download/", {"key": "m/LogisticRegressionIris.pmml"}
    )
    source = MODELS["pmml-lr"][1] / "LogisticRegressionIris.pmml"
    assert body_of(pmml) == source.read_bytes()
    assert pmml["Content-Type"] in ("application/xml", "text/xml", "application/octet-stream")


def test_api_refuses_missing_folders_and_malformed_keys(owner, stored):
    bucket, _ = stored
    url = f"/api/v1/buckets/{bucket}/download/"
    missing = owner.api.get(url, {"key": "out/nope.jsonl"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    for key, says in [
        ("", "Give the file's key"),
        ("out/", "is a folder"),
        ("out", "is a folder"),
        ("../x", "'../x'"),
        ("a//b", "'a//b'"),
    ]:
        answer = owner.api.get(url, {"key": key})
        assert answer.status_code == 400, key
        assert says in answer.json()["key"][0], answer.json()
    assert owner.api.get(url).status_code == 400  # no key at all


def test_api_download_is_the_tenants_own_and_needs_get_object(
    owner, outsider, make_sub_account, stored
):
    bucket, _ = stored
    url = f"/api/v1/buckets/{bucket}/download/"
    assert outsider.api.get(url, {"key": "out/part 1.jsonl"}).status_code == 404
    assert outsider.api.get(url, {"key": "out/nope"}).status_code == 404
    other = f"nothere-{owner.tenant.app_id}"
    assert owner.api.get(f"/api/v1/buckets/{other}/download/", {"key": "a"}).status_code == 404
    reader = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    refused = reader.api.get(url, {"key": "out/part 1.jsonl"})
    assert refused.status_code == 403
    assert refused.json()["action"] == "storage:GetObject"
    storage = make_sub_account(name="storage", policies=("StorageFullControl",))
    assert storage.api.get(url, {"key": "out/part 1.jsonl"}).status_code == 200


def test_bucket_browser_links_each_file_to_its_download(owner, outsider, make_sub_account, stored):
    bucket, lines = stored
    page = owner.client.get("/models/browse/", {"bucket": bucket, "prefix": "out/"})
    links = re.findall(r'<a class="download" href="([^"]+)"', page.content.decode())
    assert len(links) == 1
    link = links[0].replace("&amp;", "&")
    answer = owner.client.get(link)
    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'attachment; filename="part 1.jsonl"'
    assert body_of(answer) == lines
    assert outsider.client.get(link).status_code == 404
    folder = owner.client.get("/models/browse/download/", {"bucket": bucket, "key": "out/"})
    assert folder.status_code == 400 and b"is a folder" in folder.content
    missing = owner.client.get("/models/browse/download/", {"bucket": bucket, "key": "out/x"})
    assert missing.status_code == 404
    # a member who may list but not read sees no download link, and the page says which action
    reader = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    listing = reader.client.get("/models/browse/", {"bucket": bucket, "prefix": "out/"})
    assert b'class="download"' not in listing.content
    refused = reader.client.get(link)
    assert refused.status_code == 403 and b"storage:GetObject" in refused.content

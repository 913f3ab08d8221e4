"""Web pages: create a config and versions through the three sources, with the exact multipart
request the upload page sends; list, detail, browse; the admin never edits a version."""

import re

import pytest
from django.test import Client

from models_repo.models import ModelConfig, ModelConfigVersion
from tests.models_repo.conftest import MODELS, runtime_id, seed_folder

pytestmark = pytest.mark.django_db

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def browser_multipart(fields, files):
    """The body a browser builds for the create form: every text field, each file of the
    folder input with its base name as filename, the hidden ``paths`` the page's script adds,
    and the empty zip input (``filename=""``)."""
    lines = []
    for name, value in fields:
        lines += [f"--{BOUNDARY}", f'Content-Disposition: form-data; name="{name}"', "", value]
    body = "\r\n".join(lines).encode() + b"\r\n"
    for name, filename, content in files:
        body += (
            (
                f"--{BOUNDARY}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + content
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()


def test_create_page_shows_labelled_fields_with_stable_names(owner, repo):
    page = owner.client.get("/models/new/")
    assert page.status_code == 200
    html = page.content.decode()
    for name in (
        "name",
        "region",
        "runtime",
        "description",
        "source",
        "address",
        "bucket",
        "prefix",
        "files",
        "zip",
    ):
        assert f'name="{name}"' in html, name
    assert 'enctype="multipart/form-data"' in html
    assert "webkitdirectory" in html
    assert '<label for="id_name">' in html


def test_three_sources_through_the_web_form(owner, repo):
    _, lr = MODELS["angel-lr"]
    bucket, address = seed_folder(owner.tenant, lr, prefix="lr/6/")
    angel = str(runtime_id("angel"))
    # 1. typed address
    answer = owner.client.post(
        "/models/new/",
        {
            "name": "lr",
            "region": "ap-beijing",
            "runtime": angel,
            "source": "address",
            "address": address,
        },
    )
    assert answer.status_code == 302, answer.content.decode()
    config = ModelConfig.objects.get(tenant=owner.tenant, name="lr")
    # 2. browse and pick: the browse page links back to the form with the folder filled in
    browse = owner.client.get(
        "/models/browse/",
        {"bucket": bucket, "prefix": "lr/", "next": f"/models/{config.pk}/versions/new/"},
    )
    use = re.search(r'class="use" href="([^"]+)"', browse.content.decode()).group(1)
    assert "source=pick" in use
    assert "prefix=lr%2F6%2F" in use
    form = owner.client.get(use.replace("&amp;", "&"))
    assert 'value="lr/6/"' in form.content.decode()
    answer = owner.client.post(
        f"/models/{config.pk}/versions/new/",
        {"runtime": angel, "source": "pick", "bucket": bucket, "prefix": "lr/6/"},
    )
    assert answer.status_code == 302, answer.content.decode()
    # 3. upload a local folder, exactly as the page sends it
    files = sorted(p for p in lr.rglob("*") if p.is_file())
    fields = [
        ("csrfmiddlewaretoken", "x"),
        ("runtime", angel),
        ("source", "upload"),
        ("address", ""),
        ("bucket", bucket),
        ("prefix", "uploads/lr-6/"),
    ]
    fields += [("paths", f.relative_to(lr).as_posix()) for f in files]
    parts = [("files", f.name, f.read_bytes()) for f in files] + [("zip", "", b"")]
    answer = owner.client.generic(
        "POST",
        f"/models/{config.pk}/versions/new/",
        browser_multipart(fields, parts),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert answer.status_code == 302, answer.content.decode()
    versions = list(config.versions.order_by("number"))
    assert [v.label for v in versions] == ["1.0", "2.0", "3.0"]
    assert versions[2].key_prefix == "uploads/lr-6/"
    assert {f["key"] for f in versions[2].manifest} == {f.relative_to(lr).as_posix() for f in files}
    detail = owner.client.get(f"/models/{config.pk}/").content.decode()
    assert "3.0" in detail and "uploads/lr-6/" in detail
    listing = owner.client.get("/models/").content.decode()
    assert "1.0" in listing and "2.0" in listing and "3.0" in listing


def test_saved_model_folder_upload_keeps_variables_tree(owner, repo):
    bucket, _ = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="seed/")
    fields = [
        ("name", "sm"),
        ("region", "ap-beijing"),
        ("runtime", str(runtime_id("tfserving"))),
        ("description", ""),
        ("source", "upload"),
        ("address", ""),
        ("bucket", bucket),
        ("prefix", "sm/"),
        ("paths", "saved_model.pb"),
        ("paths", "variables/variables.index"),
        ("paths", "variables/variables.data-00000-of-00001"),
    ]
    parts = [
        ("files", "saved_model.pb", b"\x08\x01"),
        ("files", "variables.index", b"i"),
        ("files", "variables.data-00000-of-00001", b"d"),
        ("zip", "", b""),
    ]
    answer = owner.client.generic(
        "POST",
        "/models/new/",
        browser_multipart(fields, parts),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert answer.status_code == 302, answer.content.decode()
    version = ModelConfigVersion.objects.get(config__name="sm")
    assert sorted(f["key"] for f in version.manifest) == [
        "saved_model.pb",
        "variables/variables.data-00000-of-00001",
        "variables/variables.index",
    ]


def test_form_shows_wrong_region_and_wrong_format(owner, repo):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1], region="ap-shanghai")
    answer = owner.client.post(
        "/models/new/",
        {
            "name": "p",
            "region": "ap-beijing",
            "runtime": str(runtime_id("pmml")),
            "source": "address",
            "address": address,
        },
    )
    assert answer.status_code == 400
    assert (
        "The bucket is in ap-shanghai but the config is in ap-beijing." in answer.content.decode()
    )
    answer = owner.client.post(
        "/models/new/",
        {
            "name": "p",
            "region": "ap-shanghai",
            "runtime": str(runtime_id("openvino")),
            "source": "address",
            "address": address,
        },
    )
    assert answer.status_code == 400
    assert "Not a valid OpenVINO IR: no OpenVINO IR .xml file" in answer.content.decode()
    assert not ModelConfig.objects.exists()


def test_pages_are_404_for_another_tenant(owner, outsider, repo):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    owner.client.post(
        "/models/new/",
        {
            "name": "p",
            "region": "ap-beijing",
            "runtime": str(runtime_id("pmml")),
            "source": "address",
            "address": address,
        },
    )
    config = ModelConfig.objects.get(name="p")
    assert outsider.client.get(f"/models/{config.pk}/").status_code == 404
    assert outsider.client.get(f"/models/{config.pk}/versions/new/").status_code == 404
    bucket = f"models-{owner.tenant.app_id}"
    assert outsider.client.get("/models/browse/", {"bucket": bucket}).status_code == 404
    assert "p" not in [c.name for c in outsider.client.get("/models/").context["configs"]]


def test_admin_never_changes_a_version(owner, repo, django_user_model):
    _, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1])
    owner.client.post(
        "/models/new/",
        {
            "name": "p",
            "region": "ap-beijing",
            "runtime": str(runtime_id("pmml")),
            "source": "address",
            "address": address,
        },
    )
    version = ModelConfigVersion.objects.get()
    operator = django_user_model.objects.create_superuser("op", "op@example.com", "pw-123456!")
    admin = Client()
    admin.force_login(operator)
    url = f"/admin/models_repo/modelconfigversion/{version.pk}/change/"
    page = admin.get(url)
    assert page.status_code == 200
    assert 'name="address"' not in page.content.decode()  # shown, not editable
    answer = admin.post(url, {"address": "s3://evil-1/x/", "number": "9"})
    assert answer.status_code == 403
    assert admin.get("/admin/models_repo/modelconfigversion/add/").status_code == 403
    version.refresh_from_db()
    assert (version.number, version.address) == (1, address)
    assert admin.get("/admin/models_repo/region/").status_code == 200


def test_the_version_form_adds_a_version_and_never_changes_one(owner, repo):
    _, first = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="a/")
    _, second = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="b/")
    pmml = str(runtime_id("pmml"))
    owner.client.post(
        "/models/new/",
        {
            "name": "p",
            "region": "ap-beijing",
            "runtime": pmml,
            "source": "address",
            "address": first,
        },
    )
    config = ModelConfig.objects.get(name="p")
    before = config.versions.get(number=1)
    answer = owner.client.post(
        f"/models/{config.pk}/versions/new/",
        {"runtime": pmml, "source": "address", "address": second, "number": "1"},
    )
    assert answer.status_code == 302
    assert [(v.number, v.address) for v in config.versions.order_by("number")] == [
        (1, first),
        (2, second),
    ]
    assert config.versions.get(number=1).manifest_digest == before.manifest_digest


def test_without_the_service_role_the_form_points_to_the_authorize_page(new_owner, repo):
    answer = new_owner.client.post(
        "/models/new/",
        {
            "name": "p",
            "region": "ap-beijing",
            "runtime": str(runtime_id("pmml")),
            "source": "address",
            "address": "cos://m-1.cos.ap-beijing.myqcloud.com/m/",
        },
    )
    assert answer.status_code == 403
    assert "EMS_ServiceRole" in answer.content.decode()
    assert not ModelConfig.objects.exists()


def test_a_refused_upload_leaves_nothing_in_the_bucket(owner, repo):
    """The folder is uploaded for the config; the config is refused (not a PMML model), so the
    files are removed again and the audit log says so after the upload."""
    from accounts.models import AuditEvent
    from models_repo.services import tenant_storage

    bucket, _ = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="seed/")
    fields = [
        ("name", "bad"),
        ("region", "ap-beijing"),
        ("runtime", str(runtime_id("pmml"))),
        ("description", ""),
        ("source", "upload"),
        ("address", ""),
        ("bucket", bucket),
        ("prefix", "refused/"),
        ("paths", "README.txt"),
    ]
    parts = [("files", "README.txt", b"not a model"), ("zip", "", b"")]
    answer = owner.client.generic(
        "POST",
        "/models/new/",
        browser_multipart(fields, parts),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert answer.status_code == 400
    assert "removed from the bucket again" in answer.content.decode()
    page = tenant_storage(owner.tenant).list_folder(bucket, prefix="refused/")
    assert not page.objects and not page.folders
    actions = list(
        AuditEvent.objects.filter(tenant=owner.tenant, action__startswith="storage:")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[-2:] == ["storage:PutObject", "storage:DeleteObject"]
    assert not ModelConfig.objects.filter(name="bad").exists()


def test_bucket_browser_uploads_deletes_and_says_when_empty(owner, make_sub_account, repo):
    """Upload a folder into the folder being browsed, delete a file and a folder (confirmed on
    the page), an empty bucket says what to do next, "Up" at the root goes to the buckets, and
    a folder a version is served from cannot be deleted."""
    from models_repo.services import tenant_storage

    bucket, _ = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="seed/")
    store = tenant_storage(owner.tenant)
    for key in [i.key for i in store.walk(bucket, "")]:
        store.delete(bucket, key)
    root = owner.client.get("/models/browse/", {"bucket": bucket}).content.decode()
    assert "This bucket is empty." in root and "Upload a model folder below" in root
    up = re.search(r'<a href="([^"]+)">↑ Up</a>', root).group(1).replace("&amp;", "&")
    assert "bucket=" not in up  # from the root, Up lists the buckets
    fields = [("csrfmiddlewaretoken", "x"), ("op", "upload"), ("folder", "lr")]
    fields += [("paths", "model.pmml"), ("paths", "notes/readme.txt")]
    parts = [("files", "model.pmml", b"<PMML/>"), ("files", "readme.txt", b"hello")]
    answer = owner.client.generic(
        "POST",
        f"/models/browse/?bucket={bucket}&prefix=",
        browser_multipart(fields, parts),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert answer.status_code == 302
    assert sorted(i.key for i in store.walk(bucket, "")) == ["lr/model.pmml", "lr/notes/readme.txt"]
    page = owner.client.get("/models/browse/", {"bucket": bucket, "prefix": "lr/"}).content.decode()
    assert 'data-confirm="Delete' in page
    url = f"/models/browse/?bucket={bucket}&prefix=lr/"
    assert owner.client.post(url, {"op": "delete", "key": "lr/model.pmml"}).status_code == 302
    assert [i.key for i in store.walk(bucket, "")] == ["lr/notes/readme.txt"]
    # a read-only member sees no upload or delete, and its POST is refused naming the action
    reader = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    seen = reader.client.get("/models/browse/", {"bucket": bucket, "prefix": "lr/"}).content
    assert b'name="op" value="upload"' not in seen and b'value="delete"' not in seen
    refused = reader.client.post(url, {"op": "delete", "key": "lr/notes/"})
    assert refused.status_code == 403 and b"storage:DeleteObject" in refused.content
    assert owner.client.post(url, {"op": "delete", "key": "lr/notes/"}).status_code == 302
    assert list(store.walk(bucket, "")) == []


def test_a_served_folder_cannot_be_deleted(owner, repo):
    bucket, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="lr/6/")
    owner.client.post(
        "/models/new/",
        {"name": "kept", "region": "ap-beijing", "runtime": runtime_id("pmml"),
         "source": "address", "address": address},
    )  # fmt: skip
    assert ModelConfig.objects.filter(name="kept").exists()
    answer = owner.client.post(
        f"/models/browse/?bucket={bucket}&prefix=", {"op": "delete", "key": "lr/"}, follow=True
    )
    assert "holds the folder of kept 1.0" in answer.content.decode()
    from models_repo.services import tenant_storage

    assert list(tenant_storage(owner.tenant).walk(bucket, "lr/"))

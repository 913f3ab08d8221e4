"""Backend details that need no server: COS virtual-host URLs, local path escapes."""

import io

import pytest
from botocore.awsrequest import AWSResponse

from models_repo.storage import AccessRefused
from models_repo.storage.local import LocalBackend
from models_repo.storage.s3 import Credentials, S3Backend


class _Raw:
    def stream(self, **kwargs):
        return iter([b""])


def capture_requests(backend):
    sent = []

    def before_send(request, **kwargs):
        sent.append(request)
        return AWSResponse(request.url, 200, {"ETag": '"abc"', "Content-Length": "3"}, _Raw())

    backend.client.meta.events.register("before-send.s3", before_send)
    return sent


def test_cos_virtual_host_request_url():
    backend = S3Backend(
        endpoint_url="https://cos.ap-beijing.myqcloud.com",
        addressing_style="virtual",
        credentials=Credentials("AKIDexample", "s3kr1t"),
        region_name="ap-beijing",
    )
    sent = capture_requests(backend)
    backend.client.head_object(Bucket="examplebucket-1250000000", Key="models/m/saved_model.pb")
    assert sent[0].url == (
        "https://examplebucket-1250000000.cos.ap-beijing.myqcloud.com/models/m/saved_model.pb"
    )
    assert "AKIDexample" in sent[0].headers["Authorization"].decode()
    assert "s3kr1t" not in repr(Credentials("AKIDexample", "s3kr1t"))


def test_path_style_request_url():
    backend = S3Backend(
        endpoint_url="http://127.0.0.1:9000",
        addressing_style="path",
        credentials=Credentials("k", "s"),
    )
    sent = capture_requests(backend)
    backend.client.head_object(Bucket="models-1250000000", Key="a/b")
    assert sent[0].url == "http://127.0.0.1:9000/models-1250000000/a/b"


def test_local_backend_refuses_symlink_escape(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    backend = LocalBackend(tmp_path / "root")
    backend.create_bucket("b-1", region="ap-beijing")
    (tmp_path / "root" / "b-1" / "link").symlink_to(outside)
    with pytest.raises(AccessRefused):
        backend.stat("b-1", "link/secret")
    with pytest.raises(AccessRefused):
        backend.write("b-1", "link/new", io.BytesIO(b"x"))
    assert not (outside / "new").exists()
    assert [info.key for info in backend.walk("b-1", "")] == []


def test_local_bucket_names_cannot_escape(tmp_path):
    backend = LocalBackend(tmp_path / "root")
    for name in ["..", ".buckets", "a/b", ""]:
        with pytest.raises(AccessRefused):
            backend.create_bucket(name, region="ap-beijing")


def test_cos_endpoint_gives_the_signing_region():
    from models_repo.storage.s3 import endpoint_region

    assert endpoint_region("https://cos.ap-shanghai.myqcloud.com") == "ap-shanghai"
    assert endpoint_region("http://127.0.0.1:9000") is None
    backend = S3Backend(
        endpoint_url="https://cos.ap-guangzhou.myqcloud.com", credentials=Credentials("k", "s")
    )
    assert backend.client.meta.region_name == "ap-guangzhou"

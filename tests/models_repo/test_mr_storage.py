"""One storage interface, two backends: every test here runs on the local folder store and on
S3 over HTTP (moto's server, path-style)."""

import io

import pytest

from models_repo.storage import AccessRefused, NotFound, get_storage
from models_repo.storage.base import ObjectInfo
from tests.models_repo.conftest import APP_ID, make_tenant


def put(storage, key, data=b"x"):
    return storage.write(storage.test_bucket, key, io.BytesIO(data))


def test_write_stat_read(storage):
    info = put(storage, "m/saved_model.pb", b"graph")
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size) == ("m/saved_model.pb", 5)
    assert info.etag
    assert storage.stat(storage.test_bucket, "m/saved_model.pb") == info
    assert storage.read(storage.test_bucket, "m/saved_model.pb") == b"graph"
    assert storage.is_file(storage.test_bucket, "m/saved_model.pb/")
    assert not storage.is_file(storage.test_bucket, "m/")


def test_rewrite_changes_the_etag(storage):
    first = put(storage, "m/a.bin", b"one")
    second = put(storage, "m/a.bin", b"two!")
    assert first.etag != second.etag


def test_missing_object_is_not_found(storage):
    with pytest.raises(NotFound):
        storage.stat(storage.test_bucket, "nope/x")


def test_buckets_are_the_tenants_only(storage):
    names = [info.name for info in storage.list_buckets()]
    assert storage.test_bucket in names
    assert all(name.endswith(f"-{APP_ID}") for name in names)
    info = storage.bucket_info(storage.test_bucket)
    assert info.region == "ap-beijing"


def test_another_tenants_bucket_is_refused(storage):
    other = get_storage(make_tenant("1250000001"), guard=lambda t: None, backend=storage.backend)
    other_bucket = "shared-1250000001"
    other.create_bucket(other_bucket, region="ap-beijing")
    assert other_bucket not in [b.name for b in storage.list_buckets()]
    for call in (
        lambda: storage.list_folder(other_bucket, ""),
        lambda: storage.stat(other_bucket, "a"),
        lambda: storage.write(other_bucket, "a", io.BytesIO(b"")),
        lambda: storage.create_bucket("mine-1250000001", region="ap-beijing"),
        lambda: storage.create_bucket("no-app-id", region="ap-beijing"),
    ):
        with pytest.raises(AccessRefused):
            call()


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", "./a"])
def test_escaping_keys_are_refused(storage, key):
    with pytest.raises(AccessRefused):
        put(storage, key)
    with pytest.raises(AccessRefused):
        storage.stat(storage.test_bucket, key)


def test_list_folder_is_paginated_with_folders_and_files(storage):
    for name in ["a", "b", "c", "d", "e"]:
        put(storage, f"m/{name}.txt")
    put(storage, "m/variables/variables.index")
    put(storage, "other/x")
    seen_files, seen_folders, token, pages = [], [], None, 0
    while True:
        page = storage.list_folder(storage.test_bucket, "m/", page_size=2, token=token)
        pages += 1
        seen_files += [info.key for info in page.objects]
        seen_folders += page.folders
        token = page.next_token
        if not token:
            break
    assert pages >= 3
    assert seen_files == [f"m/{n}.txt" for n in "abcde"]
    assert seen_folders == ["m/variables/"]
    root = storage.list_folder(storage.test_bucket, "")
    assert root.folders == ["m/", "other/"]


def test_walk_and_copy_folder_into_a_cache(storage, tmp_path):
    put(storage, "m/saved_model.pb", b"g")
    put(storage, "m/variables/variables.index", b"ii")
    put(storage, "m/variables/variables.data-00000-of-00001", b"ddd")
    put(storage, "mx/not-mine", b"n")
    keys = [info.key for info in storage.walk(storage.test_bucket, "m/")]
    assert keys == [
        "m/saved_model.pb",
        "m/variables/variables.data-00000-of-00001",
        "m/variables/variables.index",
    ]
    dest = tmp_path / "cache" / "digest"
    copied = storage.copy_folder(storage.test_bucket, "m/", dest)
    assert sorted(info.key for info in copied) == sorted(k[2:] for k in keys)
    assert (dest / "variables" / "variables.index").read_bytes() == b"ii"
    assert not (dest / "not-mine").exists()
    with pytest.raises(Exception, match="already exists"):
        storage.copy_folder(storage.test_bucket, "m/", dest)


def test_write_streams_large_file(storage):
    data = b"0123456789abcdef" * (1 << 16) * 10  # 10 MiB: multipart on S3
    info = put(storage, "big/model.bin", data)
    assert info.size == len(data)
    assert storage.read(storage.test_bucket, "big/model.bin") == data


def test_guard_refuses_before_anything_is_touched(backend):
    class NotAuthorized(Exception):
        pass

    def guard(tenant):
        raise NotAuthorized(tenant.app_id)

    with pytest.raises(NotAuthorized):
        get_storage(make_tenant(), guard=guard, backend=backend)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0, 4, b"0123"), (3, 7, b"3456"), (8, 100, b"89"), (10, 12, b""), (5, 5, b"")],
)
def test_open_range_reads_only_the_slice(storage, start, end, expected):
    put(storage, "d/ten.bin", b"0123456789")
    with storage.open_range(storage.test_bucket, "d/ten.bin", start, end) as stream:
        first = stream.read(1)
        assert first + stream.read() == expected
        assert stream.read() == b""


def test_open_range_of_a_missing_object_is_not_found(storage):
    with pytest.raises(NotFound):
        storage.open_range(storage.test_bucket, "d/none.bin", 0, 4).read()


def test_open_range_seeks_instead_of_reading_what_comes_before(tmp_path):
    """The local store seeks: the bytes before the slice are never read."""
    from models_repo.storage.local import LocalBackend

    backend = LocalBackend(tmp_path / "s")
    backend.create_bucket("b-1250000000", region="ap-beijing")
    backend.write("b-1250000000", "big.bin", io.BytesIO(b"a" * 4096 + b"tail"))
    stream = backend.open_range("b-1250000000", "big.bin", 4096, 4100)
    assert stream.stream.tell() == 4096 and stream.read() == b"tail"
    stream.close()

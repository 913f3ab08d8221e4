"""Upload safety on both storage backends: attacks are refused and nothing is written."""

import io
import stat
import zipfile

import pytest

from models_repo.uploads import UploadedFile, UploadLimits, UploadRefused, upload_folder, upload_zip

LIMITS = UploadLimits(
    max_bytes=1 << 20, zip_max_total_bytes=8 << 20, zip_max_entries=20, zip_max_ratio=100
)


def nothing_written(storage):
    return list(storage.walk(storage.test_bucket, "")) == []


def make_zip(entries, *, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                archive.writestr(entry, b"target")
            else:
                name, data = entry
                archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def send_zip(storage, buffer, prefix="up/model/", limits=LIMITS):
    return upload_zip(
        storage,
        bucket=storage.test_bucket,
        prefix=prefix,
        stream=buffer,
        size=len(buffer.getbuffer()),
        limits=limits,
    )


def files(*pairs):
    return [UploadedFile(path, io.BytesIO(data), len(data)) for path, data in pairs]


def test_folder_upload_keeps_the_variables_tree(storage):
    written = upload_folder(
        storage,
        bucket=storage.test_bucket,
        prefix="up/m",
        files=files(
            ("saved_model.pb", b"g"),
            ("variables/variables.index", b"i"),
            ("variables/variables.data-00000-of-00001", b"d"),
        ),
        limits=LIMITS,
    )
    assert sorted(info.key for info in written) == [
        "up/m/saved_model.pb",
        "up/m/variables/variables.data-00000-of-00001",
        "up/m/variables/variables.index",
    ]


@pytest.mark.parametrize("path", ["../evil", "a/../../evil", "/etc/passwd", "C:\\x", "a//b", ""])
def test_folder_upload_refuses_bad_paths_and_writes_nothing(storage, path):
    with pytest.raises(UploadRefused):
        upload_folder(
            storage,
            bucket=storage.test_bucket,
            prefix="up/m/",
            files=files(("ok.txt", b"1"), (path, b"2")),
            limits=LIMITS,
        )
    assert nothing_written(storage)


def test_folder_upload_over_the_limit_is_413(storage):
    with pytest.raises(UploadRefused) as caught:
        upload_folder(
            storage,
            bucket=storage.test_bucket,
            prefix="up/m/",
            files=files(("a", b"x" * (600 << 10)), ("b", b"x" * (600 << 10))),
            limits=LIMITS,
        )
    assert caught.value.status == 413
    assert nothing_written(storage)


def test_upload_into_a_folder_with_files_is_refused(storage):
    storage.write(storage.test_bucket, "up/m/old.pb", io.BytesIO(b"old"))
    with pytest.raises(UploadRefused) as caught:
        send_zip(storage, make_zip([("new.pb", b"n")]), prefix="up/m/")
    assert caught.value.status == 409
    assert storage.read(storage.test_bucket, "up/m/old.pb") == b"old"


def test_zip_upload_writes_entries_and_keeps_nested_archives(storage):
    inner = make_zip([("x", b"1")]).getvalue()
    written = send_zip(
        storage,
        make_zip([("saved_model.pb", b"g"), ("variables/", b""), ("extra/inner.zip", inner)]),
    )
    assert sorted(info.key for info in written) == [
        "up/model/extra/inner.zip",
        "up/model/saved_model.pb",
    ]
    assert storage.read(storage.test_bucket, "up/model/extra/inner.zip") == inner


def symlink_entry():
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def device_entry():
    info = zipfile.ZipInfo("dev")
    info.external_attr = (stat.S_IFCHR | 0o666) << 16
    return info


ATTACKS = {
    "traversal": ([("ok", b"1"), ("../../evil", b"2")], "'..'"),
    "absolute": ([("ok", b"1"), ("/etc/cron.d/evil", b"2")], "absolute"),
    "symlink": ([("ok", b"1"), symlink_entry()], "symbolic link"),
    "device": ([("ok", b"1"), device_entry()], "device"),
    "bomb": ([("ok", b"1"), ("zeros.bin", b"\0" * (4 << 20))], "zip bomb"),
    "too many entries": ([(f"f{i}", b"1") for i in range(21)], "at most 20"),
    "duplicate": ([("a", b"1"), ("a", b"2")], "twice"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_zip_attacks_are_refused_and_nothing_is_written(storage, attack):
    entries, message = ATTACKS[attack]
    with pytest.warns(UserWarning) if attack == "duplicate" else _nothing():
        buffer = make_zip(entries)
    with pytest.raises(UploadRefused) as caught:
        send_zip(storage, buffer)
    assert message in caught.value.message
    assert nothing_written(storage)


def test_zip_total_uncompressed_cap(storage):
    limits = UploadLimits(
        max_bytes=1 << 20, zip_max_total_bytes=100_000, zip_max_entries=20, zip_max_ratio=100
    )
    buffer = make_zip([("a", b"x" * 60_000), ("b", b"y" * 60_000)], compression=zipfile.ZIP_STORED)
    with pytest.raises(UploadRefused) as caught:
        send_zip(storage, buffer, limits=limits)
    assert caught.value.status == 413
    assert nothing_written(storage)


def test_oversize_zip_is_413(storage):
    buffer = make_zip([("a", b"x")])
    with pytest.raises(UploadRefused) as caught:
        upload_zip(
            storage,
            bucket=storage.test_bucket,
            prefix="up/m/",
            stream=buffer,
            size=LIMITS.max_bytes + 1,
            limits=LIMITS,
        )
    assert caught.value.status == 413
    assert nothing_written(storage)


def test_not_a_zip(storage):
    with pytest.raises(UploadRefused, match="not a zip"):
        send_zip(storage, io.BytesIO(b"PK but not really"))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

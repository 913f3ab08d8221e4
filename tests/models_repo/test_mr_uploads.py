"""Upload safety on both storage backends: attacks are refused and nothing is written; a
failure after files were written removes them again."""

import io
import stat
import struct
import zipfile
import zlib

import pytest

from models_repo.uploads import (
    UploadedFile,
    UploadLimits,
    UploadRefused,
    _Capped,
    upload_folder,
    upload_zip,
)

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


@pytest.mark.parametrize(
    "path", ["../evil", "a/../../evil", "/etc/passwd", "C:\\x", "C:evil", "C:", "a\\b", "a//b", ""]
)
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


def test_a_bad_target_folder_is_refused_plainly(storage):
    with pytest.raises(UploadRefused):
        upload_folder(
            storage,
            bucket=storage.test_bucket,
            prefix="up/../m/",
            files=files(("a", b"1")),
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
    if attack == "bomb":  # the message says by how much, from the archive's own headers
        info = zipfile.ZipFile(buffer).getinfo("zeros.bin")
        assert f"expands {info.file_size // info.compress_size}-fold" in caught.value.message
    assert nothing_written(storage)


def test_the_ratio_guard_spares_small_entries_and_normal_large_ones(storage):
    """Only entries of 1 MiB and more are held to the ratio; a large entry that compresses
    normally passes, and so does a small one that compresses extremely well."""
    import random

    noise = random.Random(7).randbytes(3 << 19)  # 1.5 MiB that does not compress
    roomy = UploadLimits(
        max_bytes=4 << 20, zip_max_total_bytes=8 << 20, zip_max_entries=20, zip_max_ratio=100
    )
    buffer = make_zip([("weights.bin", noise), ("pad.txt", b"\0" * 100_000)])
    written = send_zip(storage, buffer, limits=roomy)
    assert sorted(i.key for i in written) == ["up/model/pad.txt", "up/model/weights.bin"]
    assert storage.read(storage.test_bucket, "up/model/weights.bin") == noise


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


# --- the rollback, proven: a failure after files were written removes them -------------------
class FailingStream(io.BytesIO):
    """A client that goes away while its third file is being read. Before failing it records
    which files the store already holds, so the test knows the failure came after writes."""

    def __init__(self, storage, expect_written):
        super().__init__(b"never complete")
        self.storage, self.expect_written, self.seen = storage, expect_written, []

    def read(self, size=-1):
        bucket = self.storage.test_bucket
        self.seen = [key for key in self.expect_written if self.storage.is_file(bucket, key)]
        raise OSError("the client went away")


def test_a_failure_mid_folder_upload_removes_the_files_already_written(storage):
    failing = FailingStream(storage, ["up/m/a.pb", "up/m/variables/b.index"])
    items = [*files(("a.pb", b"graph"), ("variables/b.index", b"index"))]
    items.append(UploadedFile("variables/c.data", failing, 14))
    with pytest.raises(OSError, match="went away"):
        upload_folder(
            storage, bucket=storage.test_bucket, prefix="up/m/", files=items, limits=LIMITS
        )
    assert failing.seen == ["up/m/a.pb", "up/m/variables/b.index"]  # written before the failure
    assert nothing_written(storage)  # ... and removed by the rollback


def _headers(buffer: bytearray, name: str):
    """Offsets of ``name``'s local header and central directory entry in a zip."""
    raw = name.encode()
    local = central = None
    for offset in range(len(buffer) - 4):
        if buffer[offset : offset + 4] == b"PK\x03\x04":
            length = struct.unpack_from("<H", buffer, offset + 26)[0]
            if bytes(buffer[offset + 30 : offset + 30 + length]) == raw:
                local = offset
        elif buffer[offset : offset + 4] == b"PK\x01\x02":
            length = struct.unpack_from("<H", buffer, offset + 28)[0]
            if bytes(buffer[offset + 46 : offset + 46 + length]) == raw:
                central = offset
    assert local is not None and central is not None
    return local, central


def crafted_zip(entries, name, *, declared_size=None, crc_of=None, encrypted=False):
    """A real archive, then edited as an attacker would: ``name``'s headers declare a smaller
    size (and optionally a CRC over ``crc_of``), or say the entry is encrypted."""
    buffer = bytearray(make_zip(entries, compression=zipfile.ZIP_STORED).getvalue())
    local, central = _headers(buffer, name)
    if declared_size is not None:
        struct.pack_into("<I", buffer, local + 22, declared_size)
        struct.pack_into("<I", buffer, central + 24, declared_size)
    if crc_of is not None:
        struct.pack_into("<I", buffer, local + 14, zlib.crc32(crc_of))
        struct.pack_into("<I", buffer, central + 16, zlib.crc32(crc_of))
    if encrypted:
        for offset in (local + 6, central + 8):  # general purpose flag, bit 0
            flags = struct.unpack_from("<H", buffer, offset)[0]
            struct.pack_into("<H", buffer, offset, flags | 0x1)
    return io.BytesIO(bytes(buffer))


def test_an_entry_larger_than_its_header_says_is_refused_and_rolled_back(storage):
    """The second entry's headers claim 4 bytes of a 4096-byte body. Python's zipfile reads no
    more than the declared size, so the checksum over the whole body no longer matches: the
    upload is refused as damaged, after the first entry was written, and that entry is
    removed again."""
    entries = [("a.pb", b"graph" * 100), ("b.bin", b"x" * 4096)]
    buffer = crafted_zip(entries, "b.bin", declared_size=4)
    with pytest.raises(UploadRefused, match="damaged") as caught:
        send_zip(storage, buffer)
    assert "b.bin" in caught.value.message
    assert nothing_written(storage)


def test_an_entry_with_a_matching_checksum_is_cut_at_its_declared_size(storage):
    """With a checksum crafted for the declared prefix, the entry is stored as declared: the
    size checks counted the declared size, and no more than that is ever written."""
    entries = [("a.pb", b"graph"), ("b.bin", b"head" + b"x" * 4092)]
    buffer = crafted_zip(entries, "b.bin", declared_size=4, crc_of=b"head")
    send_zip(storage, buffer)
    assert storage.read(storage.test_bucket, "up/model/b.bin") == b"head"


def test_the_cap_refuses_a_reader_that_gives_more_than_declared():
    """Defence in depth under zipfile (which already stops at the declared size): the cap
    itself, against a reader that would hand out more."""
    capped = _Capped(io.BytesIO(b"12345678"), 4, "big.bin")
    with pytest.raises(UploadRefused, match=r"'big\.bin' is larger than its header says"):
        capped.read()
    one_more = _Capped(io.BytesIO(b"12345"), 4, "five.bin")  # a single byte over is too many
    with pytest.raises(UploadRefused, match="larger than its header says"):
        one_more.read()
    exact = _Capped(io.BytesIO(b"1234"), 4, "ok.bin")
    assert exact.read(0) == b""
    assert exact.read(2) == b"12" and exact.read(2) == b"34" and exact.read() == b""


def test_an_encrypted_entry_is_refused_and_nothing_is_written(storage):
    buffer = crafted_zip([("a.pb", b"graph"), ("secret.bin", b"s" * 64)], "secret.bin",
                         encrypted=True)  # fmt: skip
    assert zipfile.ZipFile(buffer).getinfo("secret.bin").flag_bits & 0x1  # really flagged
    buffer.seek(0)
    with pytest.raises(UploadRefused, match=r"'secret\.bin' is encrypted"):
        send_zip(storage, buffer)
    assert nothing_written(storage)


def test_the_limits_are_inclusive(storage):
    """Exactly at a limit is allowed; one over is refused (the ratio, the expanded total and
    the upload size each)."""
    at_ratio = UploadLimits(
        max_bytes=4 << 20, zip_max_total_bytes=8 << 20, zip_max_entries=20, zip_max_ratio=1
    )
    stored = make_zip([("w.bin", b"w" * (1 << 20))], compression=zipfile.ZIP_STORED)
    assert send_zip(storage, stored, prefix="up/ratio/", limits=at_ratio)  # 1-fold, 1 allowed

    at_total = UploadLimits(
        max_bytes=1 << 20, zip_max_total_bytes=100_000, zip_max_entries=20, zip_max_ratio=100
    )
    full = make_zip([("a", b"x" * 60_000), ("b", b"y" * 40_000)], compression=zipfile.ZIP_STORED)
    assert send_zip(storage, full, prefix="up/total/", limits=at_total)  # exactly 100 000
    over = make_zip([("a", b"x" * 60_000), ("b", b"y" * 40_001)], compression=zipfile.ZIP_STORED)
    with pytest.raises(UploadRefused) as caught:
        send_zip(storage, over, prefix="up/over/", limits=at_total)  # one byte over
    assert caught.value.status == 413

    small = make_zip([("a", b"x")])
    written = upload_zip(
        storage,
        bucket=storage.test_bucket,
        prefix="up/size/",
        stream=small,
        size=LIMITS.max_bytes,  # declared exactly at the limit
        limits=LIMITS,
    )
    assert [i.key for i in written] == ["up/size/a"]

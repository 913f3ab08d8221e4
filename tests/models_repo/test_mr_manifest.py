"""Manifests: a digest of (key, size, ETag) per file, and the first difference named."""

import io

from models_repo.manifest import Manifest, build_manifest, diff_manifest, folder_manifest


def test_digest_ignores_order_and_depends_on_every_field():
    a = build_manifest([("b", 1, "e2"), ("a", 2, "e1")])
    assert a == build_manifest([("a", 2, "e1"), ("b", 1, "e2")])
    assert a.digest != build_manifest([("a", 2, "e1"), ("b", 1, "eX")]).digest
    assert a.digest != build_manifest([("a", 3, "e1"), ("b", 1, "e2")]).digest
    assert len(a.digest) == 64
    assert Manifest.from_json(a.as_json()) == a
    assert a.total_size == 3


def test_diff_names_the_first_difference():
    old = build_manifest([("a", 1, "x"), ("b", 1, "y"), ("c", 1, "z")])
    assert diff_manifest(old, old) is None
    assert diff_manifest(old, build_manifest([("a", 1, "x"), ("c", 1, "z")])) == (
        "b was removed from the model folder."
    )
    added = build_manifest([*old.files, ("d", 1, "w")])
    assert diff_manifest(old, added) == "d was added to the model folder."
    changed = build_manifest([("a", 1, "x"), ("b", 1, "CHANGED"), ("c", 5, "z")])
    assert diff_manifest(old, changed) == "b changed (its ETag differs)."
    grown = build_manifest([("a", 9, "x"), ("b", 1, "y"), ("c", 1, "z")])
    assert diff_manifest(old, grown).startswith("a changed (size 1 → 9")


def test_folder_manifest_catches_a_changed_file(storage):
    bucket = storage.test_bucket
    storage.write(bucket, "m/saved_model.pb", io.BytesIO(b"g"))
    storage.write(bucket, "m/variables/variables.index", io.BytesIO(b"i"))
    storage.write(bucket, "mm/other", io.BytesIO(b"o"))
    before = folder_manifest(storage, bucket, "m/")
    assert [key for key, _, _ in before.files] == ["saved_model.pb", "variables/variables.index"]
    assert folder_manifest(storage, bucket, "m/") == before
    storage.write(bucket, "m/variables/variables.index", io.BytesIO(b"I2"))
    after = folder_manifest(storage, bucket, "m/")
    assert diff_manifest(before, after).startswith("variables/variables.index changed")

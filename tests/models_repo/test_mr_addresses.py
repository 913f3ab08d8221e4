"""Address parsing: cos:// and s3:// folders, each malformed part with its own message."""

import pytest

from models_repo.addresses import (
    AddressError,
    ModelAddress,
    build_cos_address,
    build_s3_address,
    check_address,
    parse_address,
)

GOOD = [
    (
        "cos://models-1250000000.cos.ap-beijing.myqcloud.com/resnet/",
        ModelAddress("cos", "models-1250000000", "resnet/", "ap-beijing"),
    ),
    (
        "cos://models-1250000000.cos.ap-shanghai.myqcloud.com/a/b/c/",
        ModelAddress("cos", "models-1250000000", "a/b/c/", "ap-shanghai"),
    ),
    (
        "  COS://Models-1250000000.COS.AP-GUANGZHOU.MYQCLOUD.COM/x/  ",
        ModelAddress("cos", "models-1250000000", "x/", "ap-guangzhou"),
    ),
    (
        "cos://my-team-models-1250000000.cos.na-siliconvalley.myqcloud.com/v1/",
        ModelAddress("cos", "my-team-models-1250000000", "v1/", "na-siliconvalley"),
    ),
    (
        "cos://m-1.cos.ap-beijing-1.myqcloud.com/Model%20One/",
        ModelAddress("cos", "m-1", "Model One/", "ap-beijing-1"),
    ),
    ("s3://models-1250000000/resnet/", ModelAddress("s3", "models-1250000000", "resnet/")),
    ("s3://models-1250000000/a/1/", ModelAddress("s3", "models-1250000000", "a/1/")),
    ("s3://b-42/saved_model_dir/", ModelAddress("s3", "b-42", "saved_model_dir/")),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_addresses_parse(text, expected):
    assert parse_address(text) == expected


BAD = [
    ("", "scheme", "empty"),
    ("models-1250000000/resnet/", "scheme", "must start with cos:// or s3://"),
    ("https://models-1250000000.cos.ap-beijing.myqcloud.com/x/", "scheme", "never fetches"),
    ("file:///etc/passwd", "scheme", "never fetches"),
    ("gs://models-1250000000/x/", "scheme", "Unknown scheme"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com", "path", "names no folder"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com/", "path", "bucket itself"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com/m/model.pb", "path", "names a file"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com/a/../b/", "path", "'..'"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com/a//b/", "path", "double slash"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com//a/", "path", "double slash"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com/a\\b/", "path", "backslash"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com/a/?x=1", "path", "query string"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com/a/%2e%2e/", "path", "'..'"),
    ("cos://models-1250000000.cos.ap-beijing.amazonaws.com/a/", "host", "not a COS bucket"),
    ("cos://models-1250000000.ap-beijing.myqcloud.com/a/", "host", "must be <bucket>"),
    ("cos://models-1250000000.cos.ap-beijing.myqcloud.com:8080/a/", "host", "no port"),
    ("cos://user@models-1250000000.cos.ap-beijing.myqcloud.com/a/", "host", "user name"),
    ("cos://models.cos.ap-beijing.myqcloud.com/a/", "app_id", "does not end in an app id"),
    ("cos://Models_x-1250000000.cos.ap-beijing.myqcloud.com/a/", "bucket", "lowercase"),
    ("cos://-models-1250000000.cos.ap-beijing.myqcloud.com/a/", "bucket", "start and end"),
    ("cos://models--1250000000.cos.ap-beijing.myqcloud.com/a/", "bucket", "single hyphens"),
    (f"cos://{'a' * 60}-1250000000.cos.ap-beijing.myqcloud.com/a/", "bucket", "at most 63"),
    ("cos://models-1250000000.cos.beijing.myqcloud.com/a/", "region", "not a region name"),
    ("s3://models/x/", "app_id", "does not end in an app id"),
    ("s3://models-1250000000", "path", "names no folder"),
    ("s3://models-1250000000/x", "path", "names a file"),
]


@pytest.mark.parametrize(("text", "part", "message"), BAD)
def test_bad_addresses_name_the_wrong_part(text, part, message):
    with pytest.raises(AddressError) as caught:
        parse_address(text)
    assert caught.value.part == part
    assert message in caught.value.message


def test_wrong_region_is_refused_with_both_regions_named():
    address = parse_address("cos://models-1250000000.cos.ap-shanghai.myqcloud.com/m/")
    with pytest.raises(AddressError) as caught:
        check_address(address, app_id="1250000000", region="ap-beijing")
    assert caught.value.part == "region"
    assert caught.value.message == "The bucket is in ap-shanghai but the config is in ap-beijing."


def test_another_tenants_app_id_is_refused():
    address = parse_address("cos://models-1250000001.cos.ap-beijing.myqcloud.com/m/")
    with pytest.raises(AddressError) as caught:
        check_address(address, app_id="1250000000", region="ap-beijing")
    assert caught.value.part == "app_id"
    assert "1250000001" in caught.value.message


def test_matching_tenant_and_region_pass():
    address = parse_address("cos://models-1250000000.cos.ap-beijing.myqcloud.com/m/")
    check_address(address, app_id="1250000000", region="ap-beijing")
    assert address.app_id == "1250000000"
    assert address.name == "models"


@pytest.mark.parametrize("text", [text for text, _ in GOOD])
def test_build_round_trips(text):
    address = parse_address(text)
    assert parse_address(str(address)) == address


def test_builders():
    assert (
        build_cos_address("models-1250000000", "a/b/", region="ap-beijing")
        == "cos://models-1250000000.cos.ap-beijing.myqcloud.com/a/b/"
    )
    assert build_s3_address("models-1250000000", "a/") == "s3://models-1250000000/a/"
    with pytest.raises(AddressError):
        build_s3_address("models-1250000000", "a")

"""Sub-accounts against every write of the model-repository API.

A member with no policy and a member with EMSReadOnlyAccess send every write with a body that
would succeed for the owner: each is refused with 403 naming the action it lacks, and nothing
changes. A member with no policy cannot list either (403, as the services API answers). The
owner's own request is the control: the same call goes through for the owner.

Before the one door (issue 11) the model-repository viewsets were not authorized at the API
layer: these requests reached the object lookup (404) or validation (400) first, or the listing
answered 200 with an empty page. Every case now holds.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from models_repo.models import ModelConfig, ModelConfigVersion, RuntimeEnvironment
from tests.models_repo.conftest import MODELS, runtime_id, seed_folder, tenant_store

pytestmark = pytest.mark.django_db

CONFIGS = "/api/v1/model-configs/"


@pytest.fixture
def setup(owner, repo):
    """The owner's bucket with a model folder, a config with version 1.0, a custom runtime."""
    bucket, address = seed_folder(owner.tenant, MODELS["pmml-lr"][1], prefix="lr/6/")
    config = owner.api.post(
        CONFIGS,
        {"name": "lr", "region": "ap-beijing", "runtime": runtime_id("pmml"), "address": address},
        format="json",
    )
    assert config.status_code == 201, config.json()
    runtime = owner.api.post(
        "/api/v1/runtimes/",
        {"name": "mine", "image": "registry.example.com/x", "model_format": "custom"},
        format="json",
    )
    assert runtime.status_code == 201, runtime.json()
    return SimpleNamespace(
        bucket=bucket,
        address=address,
        config_id=config.json()["id"],
        runtime_id=runtime.json()["id"],
    )


def _state(owner, s):
    """What a refused write must leave unchanged."""
    store = tenant_store(owner.tenant)
    return (
        ModelConfig.objects.filter(tenant=owner.tenant).count(),
        ModelConfigVersion.objects.filter(tenant=owner.tenant).count(),
        RuntimeEnvironment.objects.filter(tenant=owner.tenant).count(),
        sorted(b.name for b in store.list_buckets()),
        store.is_file(s.bucket, "new/a.pmml"),
    )


# case -> (the action the refusal names, the request(api, setup))
WRITES = {
    "create runtime": (
        "ems:CreateRuntime",
        lambda api, s: api.post(
            "/api/v1/runtimes/",
            {"name": "theirs", "image": "example.com/y", "model_format": "custom"},
            format="json",
        ),
    ),
    "create runtime, fields missing": (  # authorization comes before validation: 403, not 400
        "ems:CreateRuntime",
        lambda api, s: api.post("/api/v1/runtimes/", {"name": "half"}, format="json"),
    ),
    "delete runtime": (
        "ems:DeleteRuntime",
        lambda api, s: api.delete(f"/api/v1/runtimes/{s.runtime_id}/"),
    ),
    "create config": (
        "ems:CreateModelConfig",
        lambda api, s: api.post(
            CONFIGS,
            {
                "name": "lr2",
                "region": "ap-beijing",
                "runtime": runtime_id("pmml"),
                "address": s.address,
            },
            format="json",
        ),
    ),
    "delete config": (
        "ems:DeleteModelConfig",
        lambda api, s: api.delete(f"{CONFIGS}{s.config_id}/"),
    ),
    "create version": (
        "ems:CreateModelConfigVersion",
        lambda api, s: api.post(
            f"{CONFIGS}{s.config_id}/versions/",
            {"runtime": runtime_id("pmml"), "address": s.address},
            format="json",
        ),
    ),
    "delete version": (
        "ems:DeleteModelConfigVersion",
        lambda api, s: api.delete(f"{CONFIGS}{s.config_id}/versions/1/"),
    ),
    "create bucket": (
        "storage:CreateBucket",
        lambda api, s: api.post(
            "/api/v1/buckets/", {"name": "more", "region": "ap-beijing"}, format="json"
        ),
    ),
    "upload": (
        "storage:PutObject",
        lambda api, s: api.post(
            f"/api/v1/buckets/{s.bucket}/upload/",
            {"prefix": "new/", "files": [io.BytesIO(b"<PMML/>")], "paths": ["a.pmml"]},
            format="multipart",
        ),
    ),
}

MEMBERS = {"no policy": (), "read-only": ("EMSReadOnlyAccess",)}


def _cases():
    for write in WRITES:
        for member in MEMBERS:
            yield pytest.param(member, write, id=f"{member}-{write}")


@pytest.mark.parametrize(("member", "write"), list(_cases()))
def test_a_member_without_the_action_gets_403_naming_it(
    owner, make_sub_account, setup, member, write
):
    action, call = WRITES[write]
    world = make_sub_account(name="m", policies=MEMBERS[member])
    before = _state(owner, setup)
    answer = call(world.api, setup)
    assert answer.status_code == 403, (answer.status_code, answer.json())
    assert action in str(answer.json()), answer.json()
    assert _state(owner, setup) == before  # nothing written, nothing removed


@pytest.mark.parametrize("write", list(WRITES))
def test_the_owner_may_do_each_write(owner, setup, write):
    """The control: the very request the members sent is a valid one."""
    _, call = WRITES[write]
    if write == "create runtime, fields missing":
        assert call(owner.api, setup).status_code == 400  # the owner learns what is missing
        return
    if write == "delete config":  # its version goes with it; delete it through its own row
        assert owner.api.delete(f"{CONFIGS}{setup.config_id}/versions/1/").status_code == 204
    answer = call(owner.api, setup)
    assert answer.status_code in (200, 201, 204), (answer.status_code, answer.content[:300])


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(CONFIGS, id="configs"),
        pytest.param("/api/v1/runtimes/", id="runtimes"),
        pytest.param("/api/v1/buckets/", id="buckets"),
    ],
)
def test_a_member_with_no_policy_cannot_list(make_sub_account, setup, url):
    world = make_sub_account(name="nobody", policies=())
    answer = world.api.get(url)
    assert answer.status_code == 403, (answer.status_code, answer.json())


def test_a_read_only_member_reads(make_sub_account, setup):
    world = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    configs = world.api.get(CONFIGS)
    assert configs.status_code == 200
    assert [c["id"] for c in configs.json()["results"]] == [setup.config_id]
    assert world.api.get(f"{CONFIGS}{setup.config_id}/versions/1/").status_code == 200
    assert world.api.get(f"/api/v1/buckets/{setup.bucket}/objects/").status_code == 200

"""Pages offer only what their actor may do (``{% can %}``): a read-only sub-account sees the
config, API-key, sub-account, policy and billing pages without the forms and buttons that would
answer 403, and the main account sees them all (the same markers, so the check is not vacuous)."""

from __future__ import annotations

import pytest

from accounts import services as account_services
from accounts.models import Membership
from models_repo import bootstrap
from models_repo.models import ModelConfig, Region

pytestmark = pytest.mark.django_db

READ_ONLY = ("EMSReadOnlyAccess", "BillingReadOnlyAccess", "AccountsReadOnlyForTest")


@pytest.fixture
def setup(owner, make_sub_account):
    bootstrap.run(demo=False, log=lambda line: None)  # regions
    config = ModelConfig.objects.create(
        tenant=owner.tenant, name="lr", region=Region.objects.get(name="ap-beijing")
    )
    policy = account_services.policy_create(
        actor=owner.membership,
        name="AccountsReadOnlyForTest",
        document={
            "version": "1.0",
            "statement": [
                {
                    "effect": "allow",
                    "action": ["accounts:Describe*", "accounts:List*"],
                    "resource": ["*"],
                }
            ],
        },
    )
    account_services.api_key_create(actor=owner.membership, name="owner-key")
    other = make_sub_account(name="other")
    reader = make_sub_account(name="reader", policies=READ_ONLY)
    return {"config": config, "policy": policy, "other": other.membership, "reader": reader}


def _pages(setup) -> dict[str, tuple[str, list[str]]]:
    """URL → the markers of what only a writer may use there."""
    config, policy, other = setup["config"], setup["policy"], setup["other"]
    return {
        "configs": ("/models/", ['href="/models/new/"']),
        "config": (f"/models/{config.pk}/", [f'href="/models/{config.pk}/versions/new/"']),
        "api keys": ("/accounts/api-keys/", ['name="revoke"', "Create key"]),
        "sub-accounts": ("/accounts/sub-accounts/", ["Create sub-account"]),
        "sub-account": (
            f"/accounts/members/{other.pk}/",
            ['value="detach"', 'value="attach"', 'value="delete"'],
        ),
        "policies": ("/accounts/policies/", ["Create policy"]),
        "policy": (f"/accounts/policies/{policy.pk}/", ["Save</button>", 'value="delete"']),
        "billing": ("/billing/", ['action="/billing/budget/"']),
    }


def test_a_read_only_sub_account_sees_no_write_controls(owner, setup):
    assert setup["other"].kind == Membership.SUB
    pages = _pages(setup)
    for name, (url, markers) in pages.items():
        seen = owner.client.get(url)
        assert seen.status_code == 200, (name, seen.status_code)
        for marker in markers:
            assert marker in seen.content.decode(), f"the owner misses {marker!r} on {name}"
    reader = setup["reader"]
    for name, (url, markers) in pages.items():
        seen = reader.client.get(url)
        assert seen.status_code == 200, (name, seen.status_code)
        body = seen.content.decode()
        for marker in markers:
            assert marker not in body, f"a read-only member is offered {marker!r} on {name}"
    # exports are reads here (BillingReadOnlyAccess allows billing:ExportBill): still offered
    assert "bill (CSV)" in reader.client.get("/billing/").content.decode()
    # and what is hidden is refused at the door, naming the action
    refused = reader.client.post("/accounts/policies/", {"name": "x", "document": "{}"})
    assert refused.status_code == 403 and b"accounts:CreatePolicy" in refused.content

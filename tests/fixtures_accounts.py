"""Shared fixtures for every app's tests (loaded by ``tests/conftest.py``).

- ``owner``: the main account of tenant A (service role authorized);
- ``sub_account``: a sub-account of tenant A holding ``EMSFullAccess``;
- ``outsider``: the main account of another tenant B (service role authorized);
- ``new_owner``: a main account whose tenant has *not* authorized the service role.

Each is an ``accounts.testing.World``: ``.user``, ``.membership`` (the actor), ``.tenant``,
``.api`` (DRF ``APIClient`` logged in) and ``.client`` (Django test client logged in).
``make_sub_account(policies=[...])`` builds more members of tenant A.
"""

from __future__ import annotations

import uuid

import pytest

from accounts import testing


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    """Each test counts its requests from zero (the rate-limit counters live in the shared
    cache): a namespace of its own. Throttle tests lower ``settings.EMS_THROTTLE_RATES``."""
    settings.EMS_THROTTLE_NAMESPACE = uuid.uuid4().hex


@pytest.fixture
def presets(db):
    testing.ensure_presets()


@pytest.fixture
def owner(db, presets) -> testing.World:
    return testing.world(testing.make_tenant(name="owner"))


@pytest.fixture
def new_owner(db, presets) -> testing.World:
    return testing.world(testing.make_tenant(name="fresh", authorized=False))


@pytest.fixture
def make_sub_account(owner):
    def make(*, name=None, policies=("EMSFullAccess",), tenant=None) -> testing.World:
        member = testing.make_sub_account(tenant or owner.tenant, name=name, policies=policies)
        return testing.world(member)

    return make


@pytest.fixture
def sub_account(make_sub_account) -> testing.World:
    return make_sub_account(name="engineer")


@pytest.fixture
def outsider(db, presets) -> testing.World:
    return testing.world(testing.make_tenant(name="outsider"))

import pytest

pytestmark = pytest.mark.django_db


def test_fixtures_make_three_worlds(owner, sub_account, outsider):
    assert owner.tenant == sub_account.tenant != outsider.tenant
    assert owner.api.get("/api/v1/sub-accounts/").status_code == 200

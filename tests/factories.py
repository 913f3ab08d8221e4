"""factory_boy factories shared by every app's tests."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from accounts.models import Membership, Policy, Tenant
from accounts.testing import PASSWORD


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    app_id = factory.Sequence(lambda n: str(2_000_000_000 + n))
    name = factory.Sequence(lambda n: f"Tenant {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    kind = Membership.SUB
    name = factory.Sequence(lambda n: f"member{n}")


class PolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Policy

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"policy{n}")
    document = factory.LazyFunction(
        lambda: {
            "version": "1.0",
            "statement": [{"effect": "allow", "action": ["ems:Describe*"], "resource": ["*"]}],
        }
    )

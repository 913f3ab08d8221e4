"""Table-driven policy evaluation: wildcards, deny precedence, several policies, object grants."""

import pytest
from django.core.exceptions import PermissionDenied
from guardian.shortcuts import assign_perm

from accounts import authz, policy
from accounts.errors import ServiceRoleNotAuthorized
from accounts.models import Policy, PolicyAttachment
from accounts.testing import make_sub_account

A = "ems:*:APP:service/*"


def doc(*statements):
    return {
        "version": "1.0",
        "statement": [{"effect": e, "action": a, "resource": r} for e, a, r in statements],
    }


ALLOW_ALL = doc(("allow", "ems:*", "*"))
CASES = [
    # (policies, action, resource, expected)
    ([ALLOW_ALL], "ems:CreateModelConfig", "config/c1", True),
    ([ALLOW_ALL], "ems:DescribeService", "service/s1", True),
    ([ALLOW_ALL], "accounts:CreateSubAccount", "member/x", False),  # other namespace
    ([doc(("allow", "*", "*"))], "accounts:CreateSubAccount", "member/x", True),
    ([doc(("allow", "ems:Describe*", "*"))], "ems:DescribeService", "service/s1", True),
    ([doc(("allow", "ems:Describe*", "*"))], "ems:DescribeModelConfigs", "config/*", True),
    ([doc(("allow", "ems:Describe*", "*"))], "ems:CreateService", "service/s1", False),
    ([doc(("allow", "ems:describe*", "*"))], "ems:DescribeService", "service/s1", True),  # case
    ([doc(("allow", "ems:*Service", "*"))], "ems:StopService", "service/s1", True),
    ([doc(("allow", "ems:*Service", "*"))], "ems:DescribeServices", "service/s1", False),
    ([doc(("allow", "ems:?topService", "*"))], "ems:StopService", "service/s1", True),
    (
        [doc(("allow", ["ems:StopService", "ems:ResumeService"], "*"))],
        "ems:ResumeService",
        "service/s1",
        True,
    ),
    ([doc(("allow", "ems:*", "ems:*:APP:service/s1"))], "ems:StopService", "service/s1", True),
    ([doc(("allow", "ems:*", "ems:*:APP:service/s1"))], "ems:StopService", "service/s2", False),
    ([doc(("allow", "ems:*", A))], "ems:StopService", "service/anything", True),
    ([doc(("allow", "ems:*", A))], "ems:DescribeModelConfig", "config/c1", False),
    ([doc(("allow", "ems:*", "ems:*:APP:*"))], "ems:DescribeModelConfig", "config/c1", True),
    (
        [doc(("allow", "ems:*", "ems:*:APP:service/ems-*"))],
        "ems:StopService",
        "service/ems-7f3k",
        True,
    ),
    ([doc(("allow", "ems:*", "ems:*:APP:service/ems-*"))], "ems:StopService", "service/x", False),
    ([doc(("allow", "ems:*", "ems:*:1999999999:*"))], "ems:StopService", "service/s1", False),
    ([doc(("allow", "ems:*", "ems:ap-beijing:APP:*"))], "ems:StopService", "service/s1", False),
    (
        [doc(("allow", "ems:*", "*"), ("deny", "ems:DeleteService", "*"))],
        "ems:DeleteService",
        "service/s1",
        False,
    ),
    (
        [doc(("allow", "ems:*", "*"), ("deny", "ems:DeleteService", "*"))],
        "ems:StopService",
        "service/s1",
        True,
    ),
    ([doc(("deny", "ems:*", A), ("allow", "ems:*", "*"))], "ems:StopService", "service/s1", False),
    (
        [doc(("deny", "ems:*", A), ("allow", "ems:*", "*"))],
        "ems:CreateModelConfig",
        "config/c",
        True,
    ),
    (
        [doc(("allow", "ems:*", "*")), doc(("deny", "ems:Create*", "*"))],
        "ems:CreateService",
        "service/s1",
        False,
    ),  # deny in another policy wins
    (
        [doc(("allow", "ems:Describe*", "*")), doc(("allow", "ems:StopService", "*"))],
        "ems:StopService",
        "service/s1",
        True,
    ),  # union of several policies
    (
        [doc(("allow", "ems:Describe*", "*")), doc(("allow", "ems:StopService", "*"))],
        "ems:DeleteService",
        "service/s1",
        False,
    ),
    ([], "ems:DescribeService", "service/s1", False),  # nothing allowed: denied
    ([doc(("deny", "ems:StopService", "*"))], "ems:DescribeService", "service/s1", False),
    ([doc(("allow", "billing:*", "*"))], "billing:ExportBill", "bill/2026-01", True),
    ([doc(("allow", "storage:List*", "*"))], "storage:PutObject", "bucket/b", False),
    ([doc(("allow", "storage:*", "*"))], "storage:PutObject", "bucket/models-APP", True),
]


@pytest.fixture
def member(owner):
    return make_sub_account(owner.tenant, policies=())


def _set_policies(member, documents):
    for i, document in enumerate(documents):
        row = Policy.objects.create(
            tenant=member.tenant, name=f"p{i}", document=policy.validate(document)
        )
        PolicyAttachment.objects.create(tenant=member.tenant, policy=row, membership=member)
    authz.invalidate(member)


@pytest.mark.django_db
@pytest.mark.parametrize(("documents", "action", "resource", "expected"), CASES)
def test_policy_evaluation(member, documents, action, resource, expected):
    _set_policies(
        member,
        [
            {
                **d,
                "statement": [
                    {
                        **st,
                        "resource": [
                            r.replace("APP", member.tenant.app_id)
                            for r in (
                                [st["resource"]]
                                if isinstance(st["resource"], str)
                                else st["resource"]
                            )
                        ],
                    }
                    for st in d["statement"]
                ],
            }
            for d in documents
        ],
    )
    name = authz.resource_name(member.tenant, *resource.split("/", 1))
    decision = authz.explain(member, action, name)
    assert decision.allowed is expected, decision
    if expected:
        assert decision.statement is not None and decision.policy is not None


@pytest.mark.django_db
def test_main_account_may_do_everything_in_its_own_tenant_only(owner, outsider):
    actor = owner.membership
    assert authz.is_allowed(
        actor, "accounts:CreateSubAccount", authz.resource_name(owner.tenant, "member", "x")
    )
    assert (
        authz.explain(
            actor, "ems:StopService", authz.resource_name(owner.tenant, "service", "s")
        ).reason
        == "main account"
    )
    assert not authz.is_allowed(
        actor, "ems:StopService", authz.resource_name(outsider.tenant, "service", "s")
    )


@pytest.mark.django_db
def test_service_role_gates_model_actions_but_not_account_actions(new_owner):
    actor = new_owner.membership
    with pytest.raises(ServiceRoleNotAuthorized):
        authz.check(
            actor, "ems:CreateModelConfig", authz.resource_name(new_owner.tenant, "config", "*")
        )
    authz.check(
        actor, "accounts:CreateSubAccount", authz.resource_name(new_owner.tenant, "member", "*")
    )


@pytest.mark.django_db
def test_unknown_action_is_denied(owner):
    with pytest.raises(PermissionDenied):
        authz.check(owner.membership, "ems:NoSuchThing", authz.resource_name(owner.tenant, "x"))


@pytest.mark.django_db
def test_guardian_per_object_grant_allows_one_object_only(member):
    # A per-object grant on a tenant-owned row (here an attachment row stands in for a config).
    other = make_sub_account(member.tenant, policies=("EMSReadOnlyAccess",))
    target = other.attachments.get()
    assert not authz.is_allowed(member, "accounts:ListAttachedPolicies", target)
    assign_perm("accounts.view_policyattachment", member.user, target)
    authz.invalidate(member)
    assert (
        authz.explain(member, "accounts:ListAttachedPolicies", target).reason == "per-object grant"
    )
    assert member.user.has_perm("accounts:ListAttachedPolicies", target)
    # ... and the scoping queryset shows exactly that row
    from accounts.models import PolicyAttachment as PA

    assert list(PA.objects.for_actor(member, "accounts:ListAttachedPolicies")) == [target]


@pytest.mark.django_db
def test_explicit_deny_beats_a_guardian_grant(member):
    other = make_sub_account(member.tenant, policies=("EMSReadOnlyAccess",))
    target = other.attachments.get()
    assign_perm("accounts.view_policyattachment", member.user, target)
    _set_policies(member, [doc(("deny", "accounts:*", "*"))])
    assert not authz.is_allowed(member, "accounts:ListAttachedPolicies", target)


@pytest.mark.django_db
def test_has_perm_uses_the_engine_for_the_active_membership(sub_account):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(pk=sub_account.user.pk)
    assert user.has_perm("ems:CreateModelConfig")  # EMSFullAccess, resolved membership
    assert not user.has_perm("accounts:CreateSubAccount")


@pytest.mark.django_db
def test_decisions_are_cached_per_actor(member, django_assert_num_queries):
    _set_policies(member, [ALLOW_ALL])
    name = authz.resource_name(member.tenant, "service", "s")
    authz.is_allowed(member, "ems:StopService", name)
    with django_assert_num_queries(0):
        for _ in range(5):
            authz.is_allowed(member, "ems:StopService", name)
            authz.is_allowed(member, "ems:ResumeService", name)


def test_a_stored_document_with_strings_instead_of_lists_still_matches():
    """A document written around the policy services (IAM allows a bare string) must not
    silently match nothing: an explicit deny written that way still denies."""
    from accounts.policy import evaluate

    deny = {"statement": [{"effect": "Deny", "action": "ems:DeleteService", "resource": "*"}]}
    allow = {"statement": [{"effect": "allow", "action": ["ems:*"], "resource": ["*"]}]}
    allowed, _, name = evaluate([("a", allow), ("d", deny)], "ems:DeleteService", "x")
    assert (allowed, name) == (False, "d")
    assert evaluate([("a", allow), ("d", deny)], "ems:ListServices", "x")[0] is True


@pytest.mark.django_db
def test_a_collaborator_is_not_the_main_account(owner, outsider):
    """Only the main account sees every row without a policy; a collaborator with no policy
    sees none (kind is compared for what it is, not by its spelling's order)."""
    from django.contrib.auth import get_user_model

    from accounts.models import Membership, Policy

    collaborator = Membership.objects.create(
        tenant=owner.tenant,
        user=get_user_model().objects.get(pk=outsider.user.pk),
        kind=Membership.COLLABORATOR,
        name="helper",
        status=Membership.ACCEPTED,
    )
    Policy.objects.create(tenant=owner.tenant, name="p", document=policy.validate(ALLOW_ALL))
    rows = Policy.objects.filter(tenant=owner.tenant)
    assert authz.scope_queryset(owner.membership, "ems:DescribeModelConfigs", rows).count() == 1
    assert not authz.scope_queryset(collaborator, "ems:DescribeModelConfigs", rows).exists()


@pytest.mark.django_db
def test_refusals_say_what_and_on_which_resource(member):
    name = authz.resource_name(member.tenant, "service", "ems-abc")
    from accounts.errors import ActionDenied, ServiceRoleNotAuthorized

    with pytest.raises(ActionDenied) as info:
        authz.check(member, "ems:StopService", name)
    assert not isinstance(info.value, ServiceRoleNotAuthorized)  # not the service-role refusal
    assert str(info.value) == f"ems:StopService is not allowed on {name}."
    assert info.value.action == "ems:StopService"
    with pytest.raises(ActionDenied) as info:
        authz.check(member, "ems:NoSuchThing", name)  # unknown action: a plain refusal too
    assert not isinstance(info.value, ServiceRoleNotAuthorized)


@pytest.mark.django_db
def test_a_specific_deny_removes_that_row_from_an_allowed_listing(member):
    """Allowed on every policy but denied on one: the scoped listing leaves exactly that one out
    (the wide shortcut must not skip the row-by-row decision when a deny names a row)."""
    app = member.tenant.app_id
    _set_policies(
        member,
        [
            doc(
                ("allow", "accounts:DescribePolicy", "*"),
                ("deny", "accounts:DescribePolicy", f"ems:*:{app}:policy/secret"),
            )
        ],
    )
    for name in ("open", "secret"):
        Policy.objects.create(tenant=member.tenant, name=name, document=policy.validate(ALLOW_ALL))
    rows = Policy.objects.filter(tenant=member.tenant, name__in=["open", "secret"])
    seen = authz.scope_queryset(member, "accounts:DescribePolicy", rows)
    assert sorted(p.name for p in seen) == ["open"]


@pytest.mark.django_db
def test_a_resource_name_not_of_this_tenant_or_not_ems_is_refused(member):
    _set_policies(member, [ALLOW_ALL])
    app = member.tenant.app_id
    assert authz.is_allowed(member, "ems:DescribeService", f"ems:bj:{app}:service/s1")
    for name in (f"cos:bj:{app}:service/s1", "ems:bj:1999999999:service/s1", "ems:bj"):
        assert not authz.is_allowed(member, "ems:DescribeService", name), name


def test_object_grants_map_actions_to_guardian_permissions():
    from accounts.models import Policy as Row

    row = Row()
    assert authz._guardian_perm("ems:DeleteService", row) == "accounts.delete_policy"
    assert authz._guardian_perm("ems:StopService", row) == "accounts.change_policy"  # a write
    assert authz._guardian_perm("ems:DescribeService", row) == "accounts.view_policy"
    assert authz._guardian_perm("ems:NoSuchAction", row) == "accounts.view_policy"

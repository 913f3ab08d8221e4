"""Sub-accounts, collaborators, policies and attachments, the simulator, the audit log."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render

from accounts import authz, selectors, services
from accounts.door import By, page, page_object, require_actor
from accounts.forms import InviteForm, PolicyForm, SimulateForm, SubAccountForm, apply_errors
from accounts.models import Membership, Policy


def _member_delete_action(request, kwargs) -> str:
    kind = (
        Membership.objects.filter(tenant=require_actor(request).tenant, pk=kwargs["pk"])
        .values_list("kind", flat=True)
        .first()
    )
    if kind == Membership.COLLABORATOR:
        return "accounts:DeleteCollaborator"
    return "accounts:DeleteSubAccount"


_MEMBER_POST = By(
    "op",
    {
        "attach": "accounts:AttachPolicy",
        "detach": "accounts:DetachPolicy",
        "delete": "accounts:DeleteSubAccount",
    },
)


def _member_post_action(request, kwargs) -> str:
    if request.POST.get("op") == "delete":
        return _member_delete_action(request, kwargs)
    return _MEMBER_POST.resolve(request, kwargs)


@page(
    "GET",
    "POST",
    actions={"GET": "accounts:ListSubAccounts", "POST": "accounts:CreateSubAccount"},
)
def sub_accounts(request):
    actor = require_actor(request)
    form = SubAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            member = services.sub_account_create(actor=actor, **form.cleaned_data)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(
                request,
                f"Sub-account {member.name} created: it logs in with app "
                f"id {actor.tenant.app_id} and its name.",
            )
            return redirect("accounts:sub-account", pk=member.pk)
    return render(
        request,
        "accounts/sub_accounts.html",
        {
            "form": form,
            "members": selectors.sub_accounts(actor=actor),
            "collaborators": selectors.collaborators(actor=actor),
        },
    )


@page(
    "GET",
    "POST",
    actions={"GET": "accounts:DescribeSubAccount", "POST": _member_post_action},
    object=True,
)
def sub_account(request, pk):
    actor = require_actor(request)
    members = Membership.objects.for_actor(actor, "accounts:DescribeSubAccount").exclude(
        kind=Membership.MAIN
    )
    member = page_object(request, members, pk=pk)
    if request.method == "POST":
        op = request.POST.get("op")
        try:
            if op in {"attach", "detach"}:
                policy_row = get_object_or_404(
                    selectors.policies(actor=actor), pk=request.POST.get("policy") or 0
                )
                fn = services.policy_attach if op == "attach" else services.policy_detach
                fn(actor=actor, member=member, policy_row=policy_row)
                messages.success(request, f"{policy_row.name} {op}ed.")
            elif op == "delete":
                if member.kind == Membership.SUB:
                    services.sub_account_delete(actor=actor, member=member)
                else:
                    services.collaborator_remove(actor=actor, member=member)
                messages.info(request, f"{member.name} removed.")
                return redirect("accounts:sub-accounts")
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        return redirect("accounts:sub-account", pk=member.pk)
    return render(
        request,
        "accounts/sub_account.html",
        {
            "member": member,
            "attachments": selectors.attachments(actor=actor, member=member),
            "policies": selectors.policies(actor=actor),
        },
    )


@page(
    "GET",
    "POST",
    actions={"GET": "accounts:ListCollaborators", "POST": "accounts:InviteCollaborator"},
)
def collaborators(request):
    actor = require_actor(request)
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.collaborator_invite(actor=actor, email=form.cleaned_data["email"])
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.info(request, "If this address belongs to an EMS user, they were invited.")
            return redirect("accounts:collaborators")
    return render(
        request,
        "accounts/collaborators.html",
        {"form": form, "collaborators": selectors.collaborators(actor=actor)},
    )


@page("GET", "POST", public="the invitation token is the authorization, for any logged-in user")
def invitation_accept(request, token):
    if request.method == "POST":
        try:
            member = services.collaborator_accept(user=request.user, token=token)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
            return redirect("accounts:dashboard")
        messages.success(request, f"You now collaborate in {member.tenant}.")
        return redirect("accounts:dashboard")
    return render(request, "accounts/invitation.html", {"token": token})


@page("GET", "POST", actions={"GET": "accounts:ListPolicies", "POST": "accounts:CreatePolicy"})
def policies(request):
    actor = require_actor(request)
    form = PolicyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            row = services.policy_create(actor=actor, **form.cleaned_data)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"Policy {row.name} created.")
            return redirect("accounts:policy", pk=row.pk)
    return render(
        request,
        "accounts/policies.html",
        {"form": form, "policies": selectors.policies(actor=actor)},
    )


@page(
    "GET",
    "POST",
    actions={
        "GET": "accounts:DescribePolicy",
        "POST": By("op", {"delete": "accounts:DeletePolicy"}, default="accounts:UpdatePolicy"),
    },
    object=True,
)
def policy_detail(request, pk):
    actor = require_actor(request)
    row = page_object(request, Policy.objects.for_actor(actor, "accounts:DescribePolicy"), pk=pk)
    initial = {
        "name": row.name,
        "description": row.description,
        "document": json.dumps(row.document, indent=2),
    }
    form = PolicyForm(request.POST or None, initial=initial)
    if request.method == "POST":
        try:
            if request.POST.get("op") == "delete":
                services.policy_delete(actor=actor, policy_row=row)
                messages.info(request, f"Policy {row.name} deleted.")
                return redirect("accounts:policies")
            if form.is_valid():
                services.policy_update(actor=actor, policy_row=row, **form.cleaned_data)
                messages.success(request, "Policy saved.")
                return redirect("accounts:policy", pk=row.pk)
        except ValidationError as exc:
            apply_errors(form, exc)
    return render(request, "accounts/policy.html", {"policy": row, "form": form})


@page("GET", "POST", actions="accounts:SimulatePolicy")
def simulator(request):
    actor = require_actor(request)
    members = Membership.objects.for_actor(actor, "accounts:SimulatePolicy")
    form = SimulateForm(request.POST or None, members=members)
    decision = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        decision = authz.explain(data["member"], data["action"], data["resource"])
    return render(request, "accounts/simulator.html", {"form": form, "decision": decision})


@page("GET", actions="accounts:ListAuditEvents")
def audit(request):
    actor = require_actor(request)
    q = request.GET
    events = selectors.audit_events(
        actor=actor,
        action=q.get("action"),
        outcome=q.get("outcome"),
        actor_id=q.get("actor") if (q.get("actor") or "").isdigit() else None,
    )
    paginator = Paginator(events, 50)
    return render(
        request,
        "accounts/audit.html",
        {
            "page": paginator.get_page(q.get("page")),
            "filters": q,
            "members": Membership.objects.for_actor(actor, "accounts:ListSubAccounts"),
        },
    )

"""Sub-accounts, collaborators, policies and attachments, the simulator, the audit log."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render

from accounts import authz, selectors, services
from accounts.forms import InviteForm, PolicyForm, SimulateForm, SubAccountForm, apply_errors
from accounts.models import Membership, Policy
from accounts.views import page


def _actor_or_404(request):
    if request.actor is None:
        from django.http import Http404

        raise Http404("No account selected.")
    return request.actor


@page("GET", "POST")
def sub_accounts(request):
    actor = _actor_or_404(request)
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


@page("GET", "POST")
def sub_account(request, pk):
    actor = _actor_or_404(request)
    members = Membership.objects.for_actor(actor, "accounts:DescribeSubAccount").exclude(
        kind=Membership.MAIN
    )
    member = get_object_or_404(members, pk=pk)
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


@page("GET", "POST")
def collaborators(request):
    actor = _actor_or_404(request)
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


@page("GET", "POST")
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


@page("GET", "POST")
def policies(request):
    actor = _actor_or_404(request)
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


@page("GET", "POST")
def policy_detail(request, pk):
    actor = _actor_or_404(request)
    row = get_object_or_404(Policy.objects.for_actor(actor, "accounts:DescribePolicy"), pk=pk)
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


@page("GET", "POST")
def simulator(request):
    actor = _actor_or_404(request)
    members = Membership.objects.for_actor(actor, "accounts:SimulatePolicy")
    form = SimulateForm(request.POST or None, members=members)
    decision = None
    if request.method == "POST" and form.is_valid():
        authz.check(
            actor, "accounts:SimulatePolicy", authz.resource_name(actor.tenant, "member", "*")
        )
        data = form.cleaned_data
        decision = authz.explain(data["member"], data["action"], data["resource"])
    return render(request, "accounts/simulator.html", {"form": form, "decision": decision})


@page("GET")
def audit(request):
    actor = _actor_or_404(request)
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

"""Sign-up, login, logout, dashboard, tenant switcher, service role, restricted page, keys."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from accounts import authz, selectors, service_role, services, throttles
from accounts.actor import SESSION_KEY, is_restricted, memberships_of
from accounts.door import By, anonymous, lookup, page, require_actor
from accounts.forms import ApiKeyForm, LoginForm, SignupForm, apply_errors
from accounts.models import SERVICE_ROLE_NAME


@anonymous("GET", "POST", reason="sign-up creates the tenant: there is no actor yet")
def signup(request):
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        throttles.limit(request, "signup")
    if request.method == "POST" and form.is_valid():
        try:
            member = services.signup(**form.cleaned_data)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            auth_login(request, member.user, backend="accounts.backends.EmsBackend")
            request.session[SESSION_KEY] = member.pk
            messages.success(request, f"Welcome! Your app id is {member.tenant.app_id}.")
            return redirect("accounts:service-role")
    return render(request, "accounts/signup.html", {"form": form})


@anonymous("GET", "POST", reason="logging in is how an actor is chosen")
def login(request):
    form = LoginForm(request, request.POST or None)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.method == "POST":
        tried = f"{request.POST.get('app_id', '')}:{request.POST.get('username', '')}"
        throttles.limit(request, "login", account=tried)
    if request.method == "POST" and form.is_valid():
        auth_login(request, form.user)
        if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}):
            next_url = ""
        return redirect(next_url or "accounts:dashboard")
    return render(request, "accounts/login.html", {"form": form, "next": next_url})


@anonymous("POST", reason="logging out ends whatever session there is")
def logout(request):
    auth_logout(request)
    return redirect("home")


@page("GET", public="the landing page of any logged-in user: their own memberships only")
def dashboard(request):
    actor = request.actor
    if actor is None:
        return render(request, "accounts/dashboard.html", {"memberships": []})
    if is_restricted(actor):
        return redirect("accounts:restricted")
    authorized = service_role.is_authorized(actor.tenant)
    if not authorized and actor.kind == actor.MAIN:
        return redirect("accounts:service-role")
    return render(
        request,
        "accounts/dashboard.html",
        {
            "memberships": memberships_of(request.user),
            "authorized": authorized,
            "policies": [name for name, _ in authz.attached_policies(actor)],
        },
    )


@page("POST", public="picks one of the user's own memberships (404 for any other)")
def switch_tenant(request):
    wanted = request.POST.get("membership", "")
    member = get_object_or_404(memberships_of(request.user), pk=wanted if wanted.isdigit() else 0)
    request.session[SESSION_KEY] = member.pk
    messages.info(request, f"Now working in {member.tenant}.")
    return redirect("accounts:dashboard")


@page("GET", public="tells a member with no policy which preset to ask for")
def restricted(request):
    # asked again on every load: once a policy is attached, the member goes on at once
    if not is_restricted(getattr(request, "actor", None)):
        messages.success(request, "Your sub-account has a policy now: welcome in.")
        return redirect("accounts:dashboard")
    return render(request, "accounts/restricted.html", {"preset": "EMSFullAccess"})


@page(
    "GET",
    "POST",
    public="GET: every member is told whether the role is authorized and whom to ask",
    actions={
        "POST": By(
            "op",
            {"revoke": "accounts:RevokeServiceRole"},
            default="accounts:AuthorizeServiceRole",
        ),
    },
)
def service_role_page(request):
    actor = require_actor(request)
    role_resource = authz.resource_name(actor.tenant, "role", SERVICE_ROLE_NAME)
    may_authorize = authz.is_allowed(actor, "accounts:AuthorizeServiceRole", role_resource)
    may_revoke = authz.is_allowed(actor, "accounts:RevokeServiceRole", role_resource)
    if request.method == "POST":
        try:
            if request.POST.get("op") == "revoke":
                services.service_role_revoke(actor=actor)
                messages.info(request, "Service role revoked: new deploys are refused.")
            else:
                services.service_role_authorize(actor=actor)
                messages.success(request, f"{SERVICE_ROLE_NAME} authorized.")
        except PermissionDenied:
            messages.error(
                request,
                "You may not do this: ask your main account (or for the EMSAuthorizeRole policy).",
            )
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        return redirect("accounts:service-role")
    return render(
        request,
        "accounts/service_role.html",
        {
            "current": service_role.current_authorization(actor.tenant),
            "may_authorize": may_authorize,
            "may_revoke": may_revoke,
            "role": SERVICE_ROLE_NAME,
        },
    )


def _api_key_action(request, kwargs) -> str:
    return "ems:DeleteApiKey" if request.POST.get("revoke") else "ems:CreateApiKey"


@page("GET", "POST", actions={"GET": "ems:ListApiKeys", "POST": _api_key_action})
def api_keys(request):
    actor = require_actor(request)
    form = ApiKeyForm(request.POST or None)
    created = None
    try:
        if request.method == "POST" and request.POST.get("revoke"):
            key = lookup(actor, selectors.api_keys(actor=actor), None, pk=request.POST["revoke"])
            services.api_key_revoke(actor=actor, api_key=key)
            messages.info(request, f"Key {key.name} revoked.")
            return redirect("accounts:api-keys")
        if request.method == "POST" and form.is_valid():
            throttles.limit(request, "sensitive", account=throttles.account_of(request))
            _, created = services.api_key_create(actor=actor, name=form.cleaned_data["name"])
    except ValidationError as exc:
        apply_errors(form, exc)
    keys = selectors.api_keys(actor=actor)
    return render(
        request, "accounts/api_keys.html", {"form": form, "keys": keys, "created": created}
    )

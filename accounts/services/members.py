"""Sign-up, sub-accounts and collaborators."""

from __future__ import annotations

import hashlib
import re
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts import audit, authz
from accounts.actor import PlatformActor
from accounts.backends import sub_account_username
from accounts.models import Membership, Tenant, new_app_id
from accounts.services._common import guard, invalid

SUB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")


def _check_password(password: str, user, field: str = "password") -> None:
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({field: list(exc.messages)}) from None


def signup(
    *, username: str, email: str, password: str, tenant_name: str = "", operator=None
) -> Membership:
    """A new tenant (unique random 10-digit app id) and its main account. ``operator``: made by
    an operator in the admin (the audit row names them)."""
    User = get_user_model()
    username = (username or "").strip()
    email = (email or "").strip()
    if not USERNAME_RE.match(username) or "@" in username:
        raise invalid("username", "Use 1-150 letters, digits and . + - _ (no @ or :).")
    if not email or "@" not in email:
        raise invalid("email", "Enter a valid email address.")
    if User.objects.filter(username__iexact=username).exists():
        raise invalid("username", "This username is taken.")
    if User.objects.filter(email__iexact=email).exclude(username__contains=":").exists():
        raise invalid("email", "An account with this email already exists.")
    user = User(username=username, email=email)
    _check_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save()
        for _ in range(20):
            app_id = new_app_id()
            if not Tenant.objects.filter(app_id=app_id).exists():
                break
        tenant = Tenant.objects.create(app_id=app_id, name=tenant_name.strip() or username)
        member = Membership.objects.create(
            tenant=tenant, user=user, kind=Membership.MAIN, name=username
        )
        audit.record(
            actor=PlatformActor(tenant, operator=operator) if operator else member,
            action="accounts:CreateTenant" if operator else "accounts:SignUp",
            resource=authz.resource_name(tenant, "tenant"),
            detail={"main_account": username},
        )
    return member


def sub_account_create(
    *, actor: Membership, name: str, password: str, email: str = ""
) -> Membership:
    guard(actor, "accounts:CreateSubAccount", authz.resource_name(actor.tenant, "member", name))
    name = (name or "").strip()
    if not SUB_NAME_RE.match(name):
        raise invalid("name", "Use 1-64 letters, digits and . - _, starting with a letter/digit.")
    tenant = actor.tenant
    if Membership.objects.filter(tenant=tenant, kind=Membership.SUB, name=name).exists():
        raise invalid("name", f"A sub-account named {name!r} already exists in this account.")
    User = get_user_model()
    user = User(username=sub_account_username(tenant.app_id, name), email=email or "")
    _check_password(password, user)
    try:
        with transaction.atomic():
            user.set_password(password)
            user.save()
            member = Membership.objects.create(
                tenant=tenant, user=user, kind=Membership.SUB, name=name
            )
            audit.record(
                actor=actor, action="accounts:CreateSubAccount", resource=member.resource_name
            )
    except IntegrityError:
        raise invalid("name", f"A sub-account named {name!r} already exists.") from None
    return member


def sub_account_update(
    *,
    actor: Membership,
    member: Membership,
    password: str | None = None,
    is_active: bool | None = None,
) -> Membership:
    guard(actor, "accounts:UpdateSubAccount", member)
    if member.kind != Membership.SUB:
        raise invalid("id", "Only sub-accounts can be changed here.")
    user = member.user
    if password:
        _check_password(password, user)
    with transaction.atomic():
        changed = []
        if password:
            user.set_password(password)
            changed.append("password")
        if is_active is not None:
            user.is_active = bool(is_active)
            changed.append("is_active")
        if changed:
            user.save(update_fields=changed)
        audit.record(
            actor=actor,
            action="accounts:UpdateSubAccount",
            resource=member.resource_name,
            detail={"changed": changed},
        )
    return member


def sub_account_delete(*, actor: Membership, member: Membership) -> None:
    guard(actor, "accounts:DeleteSubAccount", member)
    if member.kind != Membership.SUB:
        raise invalid("id", "Only sub-accounts can be deleted here.")
    with transaction.atomic():
        resource = member.resource_name
        user = member.user
        member.delete()
        user.delete()
        audit.record(actor=actor, action="accounts:DeleteSubAccount", resource=resource)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def collaborator_invite(*, actor: Membership, email: str) -> None:
    """Invite an existing user by email. The caller learns nothing about whether the address
    exists: the same audit row, the same answer; only an existing user gets an invitation."""
    email = (email or "").strip()
    if "@" not in email:
        raise invalid("email", "Enter a valid email address.")
    guard(actor, "accounts:InviteCollaborator", authz.resource_name(actor.tenant, "member", "*"))
    User = get_user_model()
    tenant = actor.tenant
    invitee = (
        User.objects.filter(email__iexact=email, is_active=True)
        .exclude(username__contains=":")
        .first()
    )
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        if invitee is not None and invitee.pk != actor.user_id:
            member = Membership.objects.filter(tenant=tenant, user=invitee).first()
            if member is None:
                Membership.objects.create(
                    tenant=tenant,
                    user=invitee,
                    kind=Membership.COLLABORATOR,
                    name=invitee.get_username(),
                    status=Membership.PENDING,
                    invite_token_hash=_token_hash(token),
                )
            elif member.status == Membership.PENDING:
                member.invite_token_hash = _token_hash(token)
                member.save(update_fields=["invite_token_hash"])
            else:
                invitee = None  # already a member: nothing to send
        audit.record(
            actor=actor,
            action="accounts:InviteCollaborator",
            resource=authz.resource_name(tenant, "member", "invitation"),
            detail={"email": email},
        )
    if invitee is not None and invitee.pk != actor.user_id:
        link = reverse("accounts:invitation-accept", args=[token])
        transaction.on_commit(
            lambda: send_mail(
                f"Invitation to EMS account {tenant.name} ({tenant.app_id})",
                f"{actor.name} invited you to collaborate. Accept (logged in) at: {link}",
                None,
                [invitee.email],
                fail_silently=True,
            )
        )


def collaborator_accept(*, user, token: str) -> Membership:
    member = (
        Membership.objects.filter(
            invite_token_hash=_token_hash(token or ""), status=Membership.PENDING, user=user
        )
        .select_related("tenant")
        .first()
    )
    if member is None:
        raise invalid("token", "This invitation does not exist or is not addressed to you.")
    with transaction.atomic():
        member.status = Membership.ACCEPTED
        member.invite_token_hash = ""
        member.save(update_fields=["status", "invite_token_hash"])
        audit.record(
            actor=member, action="accounts:AcceptInvitation", resource=member.resource_name
        )
    return member


def collaborator_remove(*, actor: Membership, member: Membership) -> None:
    guard(actor, "accounts:DeleteCollaborator", member)
    if member.kind != Membership.COLLABORATOR:
        raise invalid("id", "Only collaborators can be removed here.")
    with transaction.atomic():
        resource = member.resource_name
        member.delete()
        audit.record(actor=actor, action="accounts:DeleteCollaborator", resource=resource)

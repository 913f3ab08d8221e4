"""The Django authentication backend: logins (main account, sub-account) and ``has_perm``.

``user.has_perm("ems:CreateModelConfig")`` asks the engine for the user's active membership
(set by the middleware); ``user.has_perm("ems:DescribeService", service)`` asks for the
membership in the object's tenant, guardian per-object grants included. Permission names
without ``:`` fall through to Django's model permissions.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from accounts import authz, catalogue
from accounts.actor import resolve_actor


def sub_account_username(app_id: str, name: str) -> str:
    return f"{app_id}:{name}"


class EmsBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, app_id=None, **kwargs):
        if username is None or password is None:
            return None
        User = get_user_model()
        if app_id:
            candidates = User.objects.filter(
                username=sub_account_username(str(app_id).strip(), username.strip()),
                memberships__kind="sub",
                memberships__tenant__app_id=str(app_id).strip(),
            )
        elif "@" in username:
            candidates = User.objects.filter(email__iexact=username.strip()).exclude(
                username__contains=":"
            )
        else:
            candidates = User.objects.filter(username=username).exclude(username__contains=":")
        users = list(candidates[:2])
        if len(users) != 1:
            User().set_password(password)  # same work either way: no timing oracle
            return None
        user = users[0]
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def has_perm(self, user_obj, perm, obj=None):
        if ":" not in perm:
            return super().has_perm(user_obj, perm, obj)
        if not user_obj.is_active or user_obj.is_anonymous:
            return False
        actor = getattr(user_obj, "_ems_actor", None)
        obj_tenant = getattr(obj, "tenant_id", None) if obj is not None else None
        if obj_tenant is not None and (actor is None or actor.tenant_id != obj_tenant):
            actor = user_obj.memberships.filter(tenant_id=obj_tenant, status="accepted").first()
        if actor is None and obj is None:
            actor = user_obj._ems_actor = resolve_actor(user_obj)
        if actor is None:
            return False
        if obj is None:
            info = catalogue.get_action(perm)
            obj = authz.resource_name(actor.tenant, info.kind if info else "*", "*")
        return authz.is_allowed(actor, perm, obj)

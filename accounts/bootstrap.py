"""The accounts bootstrap step: preset policies; with ``demo``, a demo tenant and main account."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from accounts import policy
from accounts.models import Membership, Policy
from accounts.presets import PRESETS
from accounts.services import signup

DEMO_USER = "demo"
DEMO_PASSWORD = "ems-demo-tenant"  # noqa: S105 - demo only, DEBUG only
DEMO_EMAIL = "demo@example.com"


def ensure_presets() -> list[str]:
    changed = []
    for name, (description, statements) in PRESETS.items():
        document = policy.validate({"version": "1.0", "statement": statements})
        row, created = Policy.objects.get_or_create(
            tenant=None, name=name, defaults={"document": document, "description": description}
        )
        if not created and (row.document != document or row.description != description):
            row.document, row.description = document, description
            row.save(update_fields=["document", "description", "updated_at"])
            changed.append(name)
        elif created:
            changed.append(name)
    return changed


def run(*, demo: bool, log) -> None:
    changed = ensure_presets()
    log(f"preset policies: {len(PRESETS)} ({', '.join(changed) or 'unchanged'})")
    if not demo:
        return
    if not settings.DEBUG:
        raise CommandError("--demo creates known passwords; it is refused unless DEBUG is on.")
    member = Membership.objects.filter(user__username=DEMO_USER, kind=Membership.MAIN).first()
    if member is None:
        member = signup(
            username=DEMO_USER, email=DEMO_EMAIL, password=DEMO_PASSWORD, tenant_name="Demo"
        )
        log(
            f"created demo tenant {member.tenant.app_id}: main account {DEMO_USER!r} "
            f"(password {DEMO_PASSWORD!r})"
        )
    else:
        log(f"demo tenant {member.tenant.app_id} with main account {DEMO_USER!r} already exists")


def demo_member() -> Membership:
    """The demo tenant's main account (created by this step with ``--demo``)."""
    return Membership.objects.select_related("tenant", "user").get(
        user__username=DEMO_USER, kind=Membership.MAIN
    )

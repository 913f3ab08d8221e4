"""The portal's bootstrap step: the demo operator login (``--demo``, DEBUG only)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

DEMO_OPERATOR = "operator"
DEMO_OPERATOR_PASSWORD = "ems-demo-operator"  # noqa: S105 - demo only, DEBUG only


def run(*, demo: bool, log) -> None:
    if not demo:
        return
    if not settings.DEBUG:
        raise CommandError("--demo creates known passwords; it is refused unless DEBUG is on.")
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=DEMO_OPERATOR, defaults={"is_staff": True, "is_superuser": True}
    )
    if created:
        user.set_password(DEMO_OPERATOR_PASSWORD)
        user.save(update_fields=["password"])
        log(f"created demo operator {DEMO_OPERATOR!r} (password {DEMO_OPERATOR_PASSWORD!r})")
    else:
        log(f"demo operator {DEMO_OPERATOR!r} already exists")

"""Answers other apps ask of serving."""

from __future__ import annotations

from serving.models import Revision


def version_in_use(version) -> str | None:
    """models_repo refuses to delete a config version a live service runs (or may roll back
    to)."""
    names = sorted(
        set(
            Revision.objects.filter(version=version, service__deleted_at__isnull=True).values_list(
                "service__name", flat=True
            )
        )
    )
    if names:
        return f"Version {version.label} is used by the service(s) {', '.join(names)}."
    return None

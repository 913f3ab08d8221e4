"""Serializer fields whose choices come through the scoping choke point: an id of another
tenant's object is refused as "does not exist" (400), never looked up unscoped."""

from __future__ import annotations

from rest_framework import serializers


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """``ScopedPrimaryKeyRelatedField(queryset=Model.objects.all(), action="ems:Describe…")``;
    the queryset is cut with ``for_actor(request.actor, action)`` on every use."""

    def __init__(self, *, action: str, **kwargs):
        self.scope_action = action
        super().__init__(**kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        request = self.context.get("request")
        actor = getattr(request, "actor", None) if request is not None else None
        return queryset.for_actor(actor, self.scope_action)

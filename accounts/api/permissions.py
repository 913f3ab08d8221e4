"""Compatibility names: the permission class and the actor helper live in ``accounts.api.base``
(the API side of the one door, ``accounts.door``)."""

from accounts.api.base import ActionPermission, request_actor, required_action

__all__ = ["ActionPermission", "request_actor", "required_action"]

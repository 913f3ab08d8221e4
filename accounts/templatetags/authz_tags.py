"""``{% can "ems:StopService" service as may_stop %}`` (or a ``"bucket/<name>"`` resource): the
same question the door asks, so a page offers only the links and forms its actor may use."""

from django import template

from accounts import authz

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context, action: str, resource=None) -> bool:
    request = context.get("request")
    actor = getattr(request, "actor", None)
    if actor is None:
        return False
    if resource is None:  # a collection action: the resource the door checks for it
        from accounts import door

        resource = door.collection_resource(actor, action)
    elif isinstance(resource, str) and not resource.startswith("ems:"):  # "bucket/<name>"
        kind, _, ident = resource.partition("/")
        resource = authz.resource_name(actor.tenant, kind, ident or "*")
    return authz.is_allowed(actor, action, resource)

"""Navigation built from what exists: each app lists its sections in ``AppConfig.nav_items``."""

from django.apps import apps
from django.urls import NoReverseMatch, reverse


def navigation(request):
    """Entries are ``(label, url name, predicate)``; an entry whose URL does not exist or whose
    predicate refuses the user is left out, so the menu never shows a section that is not there."""
    items = []
    for config in apps.get_app_configs():
        for label, url_name, predicate in getattr(config, "nav_items", ()):
            try:
                url = reverse(url_name)
            except NoReverseMatch:
                continue
            if predicate is not None and not predicate(request):
                continue
            items.append({"label": label, "url": url, "active": request.path.startswith(url)})
    return {"nav_items": items}

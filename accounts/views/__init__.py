"""Web pages of the accounts app (templates in ``templates/accounts/``)."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_http_methods


def page(*methods: str, login: bool = True):
    """Allow ``methods`` only (and record them for the isolation walk); require a login."""

    def decorate(view):
        wrapped = require_http_methods(list(methods))(view)
        if login:
            wrapped = login_required(wrapped)
        wrapped = wraps(view)(wrapped)
        wrapped.http_methods = tuple(methods)
        return wrapped

    return decorate

"""The EMS Portal Django project: settings, URLs, the Celery app and site-wide pages."""

from portal.celery import app as celery_app

__all__ = ["celery_app"]

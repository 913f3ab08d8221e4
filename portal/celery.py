"""The Celery application. Settings come from Django's settings under the ``CELERY_`` prefix."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_broker_folders(sender, **kwargs):
    """The filesystem broker needs its folders before the first message is written."""
    options = sender.conf.broker_transport_options or {}
    for key in (
        "data_folder_in",
        "data_folder_out",
        "processed_folder",
        "control_folder",
        "claimed_folder",
        "dead_letter_folder",
    ):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)
    backend = sender.conf.result_backend or ""
    if "file://" in backend:
        os.makedirs(backend.split("file://", 1)[1], exist_ok=True)


@worker_ready.connect
def _reconcile_on_start(sender, **kwargs):
    """A worker that starts looks at every service at once (``serving.reconcile_all``): the
    desired state is in the database, so services a killed worker left half-way converge as
    soon as their short leases run out, not when beat's next round or the broker's visibility
    timeout comes. Only a worker that consumes the default queue does (not test workers on
    their own queues)."""
    app = sender.app
    default = app.conf.task_default_queue
    if default not in app.amqp.queues.consume_from:
        return
    try:
        app.send_task("serving.reconcile_all", queue=default)
    except Exception:  # the broker is down: beat's round comes later
        import logging

        logging.getLogger(__name__).exception("cannot queue serving.reconcile_all")

"""The Celery application. Settings come from Django's settings under the ``CELERY_`` prefix."""

import json
import logging
import os
import time
import uuid

from celery import Celery
from celery import Task as BaseTask
from celery.exceptions import InvalidTaskError
from celery.signals import worker_ready
from celery.worker.request import Request

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

log = logging.getLogger("portal.celery")


def set_aside_task_message(message, exc: Exception) -> str | None:
    """Write a task message the worker cannot run into the dead-letter folder; its path."""
    from django.conf import settings

    folder = settings.EMS_DEAD_LETTER_DIR
    headers = dict(message.headers or {})
    body = message.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    record = {
        "reason": f"{type(exc).__name__}: {exc}"[:1000],
        "headers": {k: repr(v)[:500] for k, v in headers.items()},
        "content_type": message.content_type,
        "body": str(body)[:100_000],
    }
    name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.task.json"
    try:
        os.makedirs(folder, exist_ok=True)
        from portal.filebroker import write_atomically

        write_atomically(os.path.join(folder, name), json.dumps(record, indent=1).encode())
    except OSError as write_exc:
        log.error("could not set aside a bad task message: %s", write_exc)
        return None
    return os.path.join(folder, name)


class GuardedRequest(Request):
    """A task message Celery cannot make a request of (a body or headers of the wrong shape)
    raises ``InvalidTaskError``, which the worker logs and rejects, and is set aside in the
    dead-letter folder; any other exception here would stop the worker ("Unrecoverable
    error"), whatever the broker."""

    def __init__(self, message, *args, **kwargs):
        try:
            super().__init__(message, *args, **kwargs)
        except InvalidTaskError as exc:
            set_aside_task_message(message, exc)
            raise
        except Exception as exc:  # any malformation must not reach the worker's event loop
            where = set_aside_task_message(message, exc)
            raise InvalidTaskError(
                f"malformed task message ({type(exc).__name__}: {exc}); set aside as {where}"
            ) from exc


class Task(BaseTask):
    Request = "portal.celery:GuardedRequest"


app = Celery("portal", task_cls="portal.celery:Task")
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

"""Gunicorn's configuration for the web process (``gunicorn -c python:portal.gunicorn_conf``).

Threaded workers with deadlines for slow clients (``portal.webserver``); every number comes
from the environment (documented in ``.env.example``).
"""

from portal.env import Env

_env = Env()

bind = [_env.str("EMS_WEB_BIND", default="127.0.0.1:8000")]
workers = _env.int("EMS_WEB_WORKERS", 2, minimum=1, maximum=64)
threads = _env.int("EMS_WEB_THREADS", 8, minimum=1, maximum=256)
worker_class = "portal.webserver.ThreadWorker"
# A worker whose main loop stops for this long is killed and replaced (requests themselves may
# run longer: with threads the main loop keeps answering).
timeout = _env.int("EMS_WEB_TIMEOUT", 30, minimum=5, maximum=3600)
graceful_timeout = _env.int("EMS_WEB_GRACEFUL_TIMEOUT", 30, minimum=1, maximum=3600)
keepalive = _env.int("EMS_WEB_KEEPALIVE", 5, minimum=0, maximum=300)
# Requests lines and headers: gunicorn's own caps (400 past them).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"

"""Settings of the EMS Portal, read only from environment variables (see ``.env.example``).

With nothing set the portal runs on its embedded default: a SQLite file, a Celery broker in a
folder, object storage in a local folder and runtimes as local processes, all under
``EMS_DATA_DIR``. Production points ``DATABASE_URL`` at PostgreSQL and ``REDIS_URL`` /
``CELERY_BROKER_URL`` at Redis.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from portal.env import Env

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (e.g. a 50-character random string)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS")

DATA_DIR = Path(env.str("EMS_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()

# --- database -------------------------------------------------------------------------------
_sqlite_default = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
_database_url = env.url(
    "DATABASE_URL",
    schemes=("postgres", "postgresql", "pgsql", "sqlite"),
    default=_sqlite_default,
)
DATABASES = {"default": environ.Env.db_url_config(_database_url)}
if _database_url == _sqlite_default:
    # The embedded default keeps its files under EMS_DATA_DIR; SQLite cannot create the folder.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers work beside a writer; IMMEDIATE transactions and a busy timeout turn
    # writer contention into a short wait instead of "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Celery, cache --------------------------------------------------------------------
REDIS_URL = env.url("REDIS_URL", schemes=("redis", "rediss", "unix"))
_broker_default = REDIS_URL or "filesystem://"
CELERY_BROKER_URL = env.url(
    "CELERY_BROKER_URL",
    schemes=("redis", "rediss", "amqp", "pyamqp", "filesystem"),
    default=_broker_default,
)
CELERY_BROKER_DIR = DATA_DIR / "broker"
# Messages a worker cannot read or run are moved here (with a note saying why), whatever the
# broker: the embedded one's unreadable files, any broker's malformed task messages.
EMS_DEAD_LETTER_DIR = CELERY_BROKER_DIR / "dead-letter"
if CELERY_BROKER_URL.startswith("filesystem"):
    # The embedded broker: portal.filebroker writes and claims message files atomically and
    # sets unreadable ones aside in dead-letter/ (kombu's own filesystem transport does not).
    CELERY_BROKER_TRANSPORT = "portal.filebroker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "claimed_folder": str(CELERY_BROKER_DIR / "claimed"),
        "dead_letter_folder": str(EMS_DEAD_LETTER_DIR),
        "store_processed": False,
    }
else:
    # A task not acknowledged within the visibility timeout is handed to another worker; the
    # task time limits below stay well under it so a slow task is never run twice at once.
    # A killed worker's tasks wait that long, unneeded: every task is a reconcile pass, and new
    # workers and beat reconcile every service from the database (docs/serving.md, "Leases").
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND",
    default=REDIS_URL or f"file://{DATA_DIR / 'celery-results'}",
)
if CELERY_RESULT_BACKEND.startswith("file://"):
    # The same atomic writes for results (Celery's file backend writes in place).
    CELERY_RESULT_BACKEND = f"portal.filebroker:FileResultBackend+{CELERY_RESULT_BACKEND}"
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", 1800, minimum=10, maximum=3000)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60 if CELERY_TASK_TIME_LIMIT > 120 else None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TIMEZONE = "UTC"

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "ems",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

# --- HTTPS and security headers (portal.security) --------------------------------------------
# EMS_HTTPS=1: the portal is served over HTTPS (directly or behind a TLS proxy that sets
# X-Forwarded-Proto): redirect HTTP to HTTPS, secure cookies, HSTS.
EMS_HTTPS = env.bool("EMS_HTTPS", default=False)
if EMS_HTTPS:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("EMS_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("EMS_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("EMS_HSTS_PRELOAD", default=True)
    # /healthz stays reachable over plain HTTP for load balancers' probes
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if env.bool("EMS_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The Content-Security-Policy of every page; {nonce} is the request's script nonce
# (templates: <script nonce="{{ request.csp_nonce }}">). Empty: no header.
EMS_CSP = env.str(
    "EMS_CSP",
    default=(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
)

# --- EMS ---------------------------------------------------------------------------------------
EMS_STORAGE_BACKEND = env.choice("EMS_STORAGE_BACKEND", ("local", "s3"), "local")
EMS_STORAGE_ROOT = Path(env.str("EMS_STORAGE_ROOT", default=str(DATA_DIR / "storage"))).resolve()
EMS_S3_ENDPOINT_URL = env.url("EMS_S3_ENDPOINT_URL", schemes=("http", "https"))
EMS_S3_ADDRESSING_STYLE = env.choice("EMS_S3_ADDRESSING_STYLE", ("virtual", "path"), "virtual")
if EMS_STORAGE_BACKEND == "s3" and not EMS_S3_ENDPOINT_URL:
    raise ImproperlyConfigured(
        "EMS_STORAGE_BACKEND=s3 needs EMS_S3_ENDPOINT_URL (e.g. https://cos.ap-beijing.myqcloud.com)."
    )
# Model uploads (models_repo.uploads): the request size limit (over it: 413) and the zip-bomb caps.
EMS_UPLOAD_MAX_BYTES = env.int("EMS_UPLOAD_MAX_BYTES", 2 * 1024**3, minimum=1024)
EMS_UPLOAD_ZIP_MAX_TOTAL_BYTES = env.int(
    "EMS_UPLOAD_ZIP_MAX_TOTAL_BYTES", 4 * 1024**3, minimum=1024
)
EMS_UPLOAD_ZIP_MAX_ENTRIES = env.int("EMS_UPLOAD_ZIP_MAX_ENTRIES", 10000, minimum=1)
EMS_UPLOAD_ZIP_MAX_RATIO = env.int("EMS_UPLOAD_ZIP_MAX_RATIO", 200, minimum=2)
# A folder upload sends one file part and one "paths" field per file.
EMS_UPLOAD_MAX_FILES = env.int("EMS_UPLOAD_MAX_FILES", 2000, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = EMS_UPLOAD_MAX_FILES
DATA_UPLOAD_MAX_NUMBER_FIELDS = EMS_UPLOAD_MAX_FILES + 1000
if env.raw("EMS_RUNTIME_BACKEND") == "kubernetes":
    # Named by the design, not built yet (ROADMAP 5): refuse rather than run on something else.
    raise ImproperlyConfigured(
        "EMS_RUNTIME_BACKEND=kubernetes is not available yet; use docker or process."
    )
EMS_RUNTIME_BACKEND = env.choice("EMS_RUNTIME_BACKEND", ("docker", "process"), "process")
EMS_GATEWAY_URL = env.url(
    "EMS_GATEWAY_URL", schemes=("http", "https"), default="http://127.0.0.1:8080"
)
EMS_GATEWAY_DOMAIN = env.str("EMS_GATEWAY_DOMAIN", default="ems.localhost")
# The route store the control plane publishes to (the gateway reads the same: see
# gateway.routes.store_url_from_env); token rotation grace; how long a stopping instance may
# wait for the gateways to drain it before SIGTERM.
EMS_GATEWAY_ROUTES = env.str(
    "EMS_GATEWAY_ROUTES", default=REDIS_URL or f"file://{DATA_DIR / 'routes.json'}"
)
EMS_TOKEN_GRACE_SECONDS = env.int("EMS_TOKEN_GRACE_SECONDS", 3600, minimum=0, maximum=30 * 86400)
EMS_GATEWAY_DRAIN_TIMEOUT = env.int("EMS_GATEWAY_DRAIN_TIMEOUT", 30, minimum=0, maximum=600)
# Serving (serving/): the nodes' model cache, reconciler limits.
EMS_MODEL_CACHE_DIR = Path(
    env.str("EMS_MODEL_CACHE_DIR", default=str(DATA_DIR / "model-cache"))
).resolve()
EMS_SERVING_MAX_FAILURES = env.int("EMS_SERVING_MAX_FAILURES", 3, minimum=1, maximum=100)
EMS_SERVING_START_TIMEOUT = env.int("EMS_SERVING_START_TIMEOUT", 300, minimum=5, maximum=3600)
EMS_SERVING_STOP_GRACE = env.int("EMS_SERVING_STOP_GRACE", 10, minimum=0, maximum=600)
# A reconcile pass's lease on its service: short, renewed by a heartbeat while the pass lives,
# so a service whose worker was killed is picked up again within this many seconds.
EMS_SERVING_LEASE_SECONDS = env.int("EMS_SERVING_LEASE_SECONDS", 8, minimum=3, maximum=600)
# reconcile_all: how many services that need work it reconciles at once (threads). SQLite takes
# one writer at a time, so the embedded default reconciles one by one unless told otherwise.
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
EMS_SERVING_RECONCILE_THREADS = env.int(
    "EMS_SERVING_RECONCILE_THREADS", 1 if _SQLITE else 8, minimum=1, maximum=64
)
# Health of running instances (serving.health): the runtime's model status probed every
# INTERVAL seconds with TIMEOUT_MS; THRESHOLD failures in a row take an instance out of the routes
# and replace it. An instance the engine reports exited or paused leaves at the first probe.
EMS_HEALTH_PROBE_INTERVAL = env.int("EMS_HEALTH_PROBE_INTERVAL", 1, minimum=1, maximum=300)
EMS_HEALTH_PROBE_TIMEOUT_MS = env.int(
    "EMS_HEALTH_PROBE_TIMEOUT_MS", 1000, minimum=50, maximum=60000
)
EMS_HEALTH_FAILURE_THRESHOLD = env.int("EMS_HEALTH_FAILURE_THRESHOLD", 3, minimum=1, maximum=100)
# Nodes (serving.nodes): a Docker engine that has not answered its ping for this many seconds
# is marked down; its instances leave the routes and are started on other nodes.
EMS_NODE_DOWN_GRACE_SECONDS = env.int("EMS_NODE_DOWN_GRACE_SECONDS", 30, minimum=1, maximum=3600)
# Batch jobs (serving/jobs/, docs/batch-jobs.md): a part's lease (renewed between batches; an
# expired one means its worker died and the sweep re-queues the part), how often the sweep runs,
# the batches per part (at most; fewer when a part would hold more than EMS_JOB_PART_BYTES of
# input), and the batches a worker process keeps in flight to the instances at once.
EMS_JOB_LEASE_SECONDS = env.int("EMS_JOB_LEASE_SECONDS", 60, minimum=3, maximum=3600)
EMS_JOB_SWEEP_SECONDS = env.int("EMS_JOB_SWEEP_SECONDS", 5, minimum=1, maximum=600)
EMS_JOB_PART_BATCHES = env.int("EMS_JOB_PART_BATCHES", 128, minimum=1, maximum=1000)
EMS_JOB_PART_BYTES = env.int("EMS_JOB_PART_BYTES", 32 << 20, minimum=1 << 10, maximum=1 << 30)
EMS_JOB_INFLIGHT = env.int("EMS_JOB_INFLIGHT", 4, minimum=1, maximum=64)
# A part whose run was lost this many times (its worker died, or it ran past the task time
# limit) fails its job rather than being tried for ever.
EMS_JOB_PART_ATTEMPTS = env.int("EMS_JOB_PART_ATTEMPTS", 3, minimum=1, maximum=100)
# Billing (billing/, docs/billing.md): the meter's window, lag and repair horizon; bills, exports.
EMS_METERING_WINDOW_SECONDS = env.int("EMS_METERING_WINDOW_SECONDS", 60, minimum=10, maximum=3600)
if 86400 % EMS_METERING_WINDOW_SECONDS:
    raise ImproperlyConfigured(
        f"EMS_METERING_WINDOW_SECONDS={EMS_METERING_WINDOW_SECONDS} must divide a day "
        "(86400 s: e.g. 30, 60, 300, 600, 3600) so no window crosses a day or a month."
    )
EMS_METERING_LAG_SECONDS = env.int("EMS_METERING_LAG_SECONDS", 30, minimum=0, maximum=3600)
EMS_METERING_REPAIR_SECONDS = env.int(
    "EMS_METERING_REPAIR_SECONDS", 86400, minimum=0, maximum=40 * 86400
)
EMS_BILLING_CURRENCY = env.str("EMS_BILLING_CURRENCY", default="CNY").upper()
if len(EMS_BILLING_CURRENCY) != 3 or not EMS_BILLING_CURRENCY.isalpha():
    raise ImproperlyConfigured(
        f"EMS_BILLING_CURRENCY={EMS_BILLING_CURRENCY!r} is not an ISO 4217 code like CNY or USD."
    )
EMS_BILLING_FINALIZE_DELAY_SECONDS = env.int(
    "EMS_BILLING_FINALIZE_DELAY_SECONDS", 3600, minimum=0, maximum=7 * 86400
)
EMS_BILLING_EXPIRY_GRACE_SECONDS = env.int(
    "EMS_BILLING_EXPIRY_GRACE_SECONDS", 3 * 86400, minimum=0, maximum=90 * 86400
)
EMS_BILLING_EXPIRY_NOTICE_SECONDS = env.int(
    "EMS_BILLING_EXPIRY_NOTICE_SECONDS", 7 * 86400, minimum=0, maximum=90 * 86400
)
EMS_BILLING_EXPORT_LINK_SECONDS = env.int(
    "EMS_BILLING_EXPORT_LINK_SECONDS", 300, minimum=10, maximum=7 * 86400
)


def _secrets_key() -> str:
    value = env.str("EMS_SECRETS_KEY")
    if value is None:
        if not DEBUG:
            raise ImproperlyConfigured(
                "EMS_SECRETS_KEY must be set when DEBUG is off: a Fernet key, made with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            )
        # Development only: a stable key derived from SECRET_KEY.
        return base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    try:
        if len(base64.urlsafe_b64decode(value.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "EMS_SECRETS_KEY is not a Fernet key (32 bytes, url-safe base64)."
        ) from None
    return value


EMS_SECRETS_KEY = _secrets_key()
# Deepest nesting of objects/arrays a JSON request body may have (API, forms); deeper is a 400.
EMS_JSON_MAX_DEPTH = env.int("EMS_JSON_MAX_DEPTH", 64, minimum=4, maximum=200)
EMS_HEALTH_PING_TIMEOUT = env.int("EMS_HEALTH_PING_TIMEOUT", 5, minimum=1, maximum=60)

# --- rate limits (accounts.throttles): <count>/<second|minute|hour|day> ------------------------
EMS_THROTTLE_RATES = {
    "api": env.rate("EMS_THROTTLE_API", "1200/minute"),
    "api_anon": env.rate("EMS_THROTTLE_API_ANON", "120/minute"),
    "login": env.rate("EMS_THROTTLE_LOGIN", "10/minute"),
    "signup": env.rate("EMS_THROTTLE_SIGNUP", "10/hour"),
    "sensitive": env.rate("EMS_THROTTLE_SENSITIVE", "30/minute"),
}
EMS_TRUSTED_PROXIES = env.int("EMS_TRUSTED_PROXIES", 0, minimum=0, maximum=10)


# --- elastic: metrics and autoscaling (docs/serving.md, "Metrics and autoscaling") ----------
EMS_METRICS_INTERVAL = env.int("EMS_METRICS_INTERVAL", 5, minimum=1, maximum=300)
EMS_METRICS_RAW_RETENTION = env.int("EMS_METRICS_RAW_RETENTION", 3600, minimum=300, maximum=86400)
EMS_METRICS_MINUTE_RETENTION = env.int(
    "EMS_METRICS_MINUTE_RETENTION", 30 * 86400, minimum=3600, maximum=400 * 86400
)
EMS_METRICS_POLL_WORKERS = env.int("EMS_METRICS_POLL_WORKERS", 32, minimum=1, maximum=256)
EMS_AUTOSCALE_STABILIZATION_SECONDS = env.int(
    "EMS_AUTOSCALE_STABILIZATION_SECONDS", 300, minimum=0, maximum=3600
)
EMS_AUTOSCALE_IDLE_SECONDS = env.int("EMS_AUTOSCALE_IDLE_SECONDS", 300, minimum=10, maximum=86400)

# --- Django ------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_celery_beat",
    "portal",
    "accounts",
    "models_repo",
    "serving",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.security.SecurityHeadersMiddleware",
    # Last to see a view's exception: a database that cannot be reached is a 503.
    "portal.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.actor.ActorMiddleware",
    "accounts.throttles.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
        },
    },
]

AUTHENTICATION_BACKENDS = [
    "accounts.backends.EmsBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:dashboard"
LOGOUT_REDIRECT_URL = "home"
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ems-portal@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Billing exports (CSV / XLSX) go through django-storages: a local folder by default, the S3
# bucket EMS_BILLING_EXPORT_BUCKET on EMS_S3_ENDPOINT_URL with EMS_BILLING_EXPORT_STORAGE=s3.
EMS_BILLING_EXPORT_STORAGE = env.choice("EMS_BILLING_EXPORT_STORAGE", ("local", "s3"), "local")
EMS_BILLING_EXPORT_BUCKET = env.str("EMS_BILLING_EXPORT_BUCKET", default="")
if EMS_BILLING_EXPORT_STORAGE == "s3":
    if not (EMS_BILLING_EXPORT_BUCKET and EMS_S3_ENDPOINT_URL):
        raise ImproperlyConfigured(
            "EMS_BILLING_EXPORT_STORAGE=s3 needs EMS_BILLING_EXPORT_BUCKET and EMS_S3_ENDPOINT_URL."
        )
    _EXPORTS = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": EMS_BILLING_EXPORT_BUCKET,
            "endpoint_url": EMS_S3_ENDPOINT_URL,
            "addressing_style": EMS_S3_ADDRESSING_STYLE,
            "querystring_auth": True,
            "querystring_expire": EMS_BILLING_EXPORT_LINK_SECONDS,
            "default_acl": "private",
            "file_overwrite": True,
        },
    }
else:
    _EXPORTS = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "billing-exports")},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    "billing_exports": _EXPORTS,
}

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiKeyAuthentication",
        "accounts.api.authentication.ActorSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttles.ApiThrottle"],
    # DRF's parsers, with a JSON nesting limit (portal.jsonlimits): deep bodies are a 400.
    "DEFAULT_PARSER_CLASSES": [
        "portal.jsonlimits.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "accounts.api.exceptions.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "EMS Portal API",
    "DESCRIPTION": "Elastic model service: model configs, services, tokens, usage and bills.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The UI's assets ship with the sidecar package: nothing is fetched from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # deploy, the service and PATCH …/scaling/ all name "scaling_mode": one enum for them
    "ENUM_NAME_OVERRIDES": {
        "ScalingModeEnum": "serving.models.Service.SCALING",
        "ScalingModeRequestEnum": [("manual", "manual"), ("auto", "auto")],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

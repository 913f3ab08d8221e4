"""What the Docker backend needs to talk to an engine on another host: the client's TLS files
(written for the docker SDK into a private folder, 0700 / 0600) and the mapping of an engine
that does not answer (refused, reset, timed out, TLS) to a transient ``BackendError``."""

from __future__ import annotations

import functools
import os
import tempfile

from docker.errors import APIError, DockerException
from docker.tls import TLSConfig
from requests.exceptions import RequestException

from serving.backends.base import BackendError


def tls_files(node: str, tls: dict) -> tuple[str, TLSConfig]:
    """(the folder, the SDK's TLS config) for ``tls`` = {"ca", "cert", "key"} PEM strings."""
    folder = tempfile.mkdtemp(prefix=f"ems-tls-{node}-")
    os.chmod(folder, 0o700)
    paths = {}
    for name in ("ca", "cert", "key"):
        paths[name] = os.path.join(folder, f"{name}.pem")
        fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(tls.get(name) or "")
    config = TLSConfig(client_cert=(paths["cert"], paths["key"]), ca_cert=paths["ca"], verify=True)
    return folder, config


def engine_errors(method):
    """An engine that does not answer (refused, reset, timed out, TLS) is a transient
    BackendError for callers, like the engine's own 5xx answers."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (BackendError, APIError):
            raise
        except (RequestException, DockerException, OSError) as exc:
            raise BackendError(
                f"node {self.node}: the engine does not answer: {exc}", transient=True
            ) from exc

    return wrapper

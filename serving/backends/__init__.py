"""Runtime backends behind one interface (:mod:`serving.backends.base`).

``for_node(node)`` gives the backend of a node (``Node.backend``: ``docker`` or ``process``);
backends are cached per process and node because a docker client holds a connection pool.

``override(factory)`` makes every node's backend ``factory(node)`` until the block ends — for
the scale harness only (``serving.backends.simulated``: the benchmark and the query-count
tests); no setting selects it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from serving.backends.base import (
    Backend,
    BackendError,
    InstanceSpec,
    InstanceStats,
    InstanceStatus,
)

__all__ = [
    "Backend",
    "BackendError",
    "InstanceSpec",
    "InstanceStats",
    "InstanceStatus",
    "for_node",
    "override",
    "reset_cache",
]

_lock = threading.Lock()
_cache: dict[tuple, Backend] = {}
_override: Callable[[object], Backend] | None = None


def _key(node) -> tuple:
    return (
        node.name,
        node.backend,
        node.engine_url,
        node.publish_host,
        node.advertise_host,
        str(node.state_dir()),
        getattr(node, "tls_encrypted", ""),
    )


def for_node(node) -> Backend:
    key = _key(node)
    with _lock:
        backend = _cache.get(key)
        if backend is None:
            backend = _cache[key] = _make(node)
        return backend


def _make(node) -> Backend:
    if _override is not None:
        return _override(node)
    if node.backend == "docker":
        from serving.backends.docker import DockerBackend
        from serving.nodes import tls_of

        try:
            return DockerBackend(
                node=node.name,
                base_url=node.engine_url,
                publish_host=node.publish_host or "127.0.0.1",
                advertise_host=node.advertise_host,
                tls=tls_of(node),
            )
        except Exception as exc:  # the engine does not answer (the client asks its version)
            raise BackendError(
                f"node {node.name}: engine unreachable: {exc}", transient=True
            ) from exc
    if node.backend == "process":
        from serving.backends.process import ProcessBackend

        return ProcessBackend(
            node=node.name, state_dir=node.state_dir(), host=node.publish_host or "127.0.0.1"
        )
    raise BackendError(f"backend {node.backend!r} is not available yet (see ROADMAP)")


def reset_cache() -> None:
    with _lock:
        for backend in _cache.values():
            backend.close()
        _cache.clear()


@contextlib.contextmanager
def override(factory: Callable[[object], Backend]) -> Iterator[None]:
    """Every node's backend is ``factory(node)`` inside the block (the scale harness)."""
    global _override
    reset_cache()
    _override = factory
    try:
        yield
    finally:
        _override = None
        reset_cache()

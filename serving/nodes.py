"""Nodes as an operator manages them: add (capacity read from the engine), refresh, drain,
remove; and the periodic check that marks a node that stopped answering ``down``.

* **TLS**: a remote engine (``tcp://host:2376``) is reached with a client certificate; the CA,
  certificate and key are stored together, encrypted with ``EMS_SECRETS_KEY``
  (``Node.tls_encrypted``), and checked when saved (PEM that parses, a key that matches the
  certificate, a certificate valid now).
* **Drain**: the node takes no new instances; the reconciler moves each of its instances as it
  rolls out a revision — the replacement starts on another node, becomes healthy and is routed,
  then the old one is taken out of the routes, drained at the gateways, and stopped.
* **Down**: :func:`check_nodes` (beat, every ``EMS_HEALTH_PROBE_INTERVAL`` seconds, with the
  probes) pings every Docker engine; one that has not answered for
  ``EMS_NODE_DOWN_GRACE_SECONDS`` is ``down``: its instances leave the routes at once (the
  route is republished without them) and the reconciler replaces them on other nodes without
  touching the dead engine. An engine that answers again is ``up`` (its leftovers are removed
  by the node sweep).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from serving import events
from serving.backends import BackendError
from serving.models import Instance, Node, ResourceGroup, Service, ServiceEvent

log = logging.getLogger(__name__)

NODE = "node"  # the event kind
PING_TIMEOUT = 3


class NodeError(Exception):
    """A node cannot be added or changed; ``message`` says what to fix."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


# --- TLS material --------------------------------------------------------------------------------
def tls_of(node: Node) -> dict | None:
    if not node.tls_encrypted:
        return None
    from gateway.tokens import decrypt

    return json.loads(decrypt(node.tls_encrypted, settings.EMS_SECRETS_KEY))


def check_tls(ca: str, cert: str, key: str) -> None:
    """Raise NodeError naming what is wrong with the PEM the operator pasted."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        ca_certs = x509.load_pem_x509_certificates(ca.encode())
    except ValueError:
        raise NodeError("the CA certificate is not a PEM certificate", "tls_ca") from None
    try:
        client = x509.load_pem_x509_certificate(cert.encode())
    except ValueError:
        raise NodeError("the client certificate is not a PEM certificate", "tls_cert") from None
    try:
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        raise NodeError("the client key is not an unencrypted PEM private key", "tls_key") from None
    if private.public_key().public_numbers() != client.public_key().public_numbers():
        raise NodeError("the client key does not belong to the client certificate", "tls_key")
    now = dt.datetime.now(dt.UTC)
    for what, item in [("client certificate", client)] + [("CA certificate", c) for c in ca_certs]:
        if not (item.not_valid_before_utc <= now <= item.not_valid_after_utc):
            raise NodeError(
                f"the {what} is not valid now (valid {item.not_valid_before_utc:%Y-%m-%d} to "
                f"{item.not_valid_after_utc:%Y-%m-%d})",
                "tls_cert" if item is client else "tls_ca",
            )
    if client.issuer not in {c.subject for c in ca_certs}:
        raise NodeError("the client certificate was not issued by this CA", "tls_cert")


def _encrypt_tls(ca: str, cert: str, key: str) -> str:
    from gateway.tokens import encrypt

    return encrypt(json.dumps({"ca": ca, "cert": cert, "key": key}), settings.EMS_SECRETS_KEY)


# --- the engine ----------------------------------------------------------------------------------
def _engine(node: Node, *, timeout: int = PING_TIMEOUT):
    """A short-lived client with a short timeout (the cached backends wait up to 60 s)."""
    from serving.backends.docker import DockerBackend

    try:
        return DockerBackend(
            node=node.name,
            base_url=node.engine_url,
            publish_host=node.publish_host,
            tls=tls_of(node),
            timeout=timeout,
        )
    except BackendError:
        raise
    except Exception as exc:  # DockerException: refused, TLS handshake, timeout
        raise BackendError(f"engine: {exc}", transient=True) from exc


def _explain(node: Node, exc: Exception) -> str:
    text = str(exc)
    low = text.lower()
    where = node.engine_url or "the local engine"
    if "certificate" in low or "ssl" in low or "tls" in low:
        return (
            f"TLS with {where} failed — check the CA, client certificate and key, and that the "
            f"engine runs with --tlsverify and a server certificate for this address: {text}"
        )
    if "refused" in low or "timed out" in low or "timeout" in low or "no route" in low:
        return f"the engine at {where} is unreachable (is dockerd listening there?): {text}"
    return f"the engine at {where} did not answer: {text}"


def read_capacity(node: Node) -> tuple[int, int]:
    """(millicores, MiB) from the engine's ``docker info`` (NCPU, MemTotal)."""
    try:
        backend = _engine(node, timeout=10)
        try:
            info = backend.engine_info()
        finally:
            backend.close()
    except BackendError as exc:
        raise NodeError(_explain(node, exc), "engine_url") from None
    return int(info.get("NCPU") or 0) * 1000, int(info.get("MemTotal") or 0) // (1024 * 1024)


# --- operator actions ----------------------------------------------------------------------------
def node_add(
    *,
    group: ResourceGroup,
    name: str,
    engine_url: str = "",
    publish_host: str = "127.0.0.1",
    advertise_host: str = "",
    tls_ca: str = "",
    tls_cert: str = "",
    tls_key: str = "",
    capacity_gpus: int = 0,
) -> Node:
    """A Docker node of ``group``; its CPU and memory are read from the engine."""
    if Node.objects.filter(name=name).exists():
        raise NodeError(f"a node named {name} exists", "name")
    if engine_url and not engine_url.startswith(("tcp://", "unix://", "ssh://")):
        raise NodeError("the engine URL starts with tcp://, unix:// or ssh://", "engine_url")
    tls = any((tls_ca, tls_cert, tls_key))
    if engine_url.startswith("tcp://") and not tls:
        raise NodeError(
            "a tcp:// engine needs TLS: paste the CA certificate, client certificate and key",
            "tls_ca",
        )
    if tls:
        if not all((tls_ca, tls_cert, tls_key)):
            raise NodeError(
                "TLS needs all three: CA certificate, client certificate, key", "tls_ca"
            )
        check_tls(tls_ca, tls_cert, tls_key)
    node = Node(
        group=group,
        name=name,
        backend=Node.DOCKER,
        engine_url=engine_url,
        publish_host=publish_host or "127.0.0.1",
        advertise_host=advertise_host,
        tls_encrypted=_encrypt_tls(tls_ca, tls_cert, tls_key) if tls else "",
        capacity_gpus=capacity_gpus,
    )
    cpu, memory = read_capacity(node)
    node.capacity_cpu_millicores, node.capacity_memory_mib = cpu, memory
    node.last_seen_at = timezone.now()
    node.save()
    log.info("node %s added to %s (%sm CPU, %s MiB)", name, group.name, cpu, memory)
    return node


def node_refresh(node: Node) -> Node:
    """Read the capacity again (never below what instances hold now)."""
    cpu, memory = read_capacity(node)
    Node.objects.filter(pk=node.pk).update(
        capacity_cpu_millicores=max(cpu, node.claimed_cpu_millicores),
        capacity_memory_mib=max(memory, node.claimed_memory_mib),
        last_seen_at=timezone.now(),
        message="",
    )
    node.refresh_from_db()
    return node


def _services_on(node: Node) -> list[int]:
    return sorted(
        set(
            Instance.objects.filter(node=node, state__in=Instance.LIVE).values_list(
                "service_id", flat=True
            )
        )
    )


def _kick(service_pks) -> None:
    from serving.tasks import reconcile_service

    for pk in service_pks:
        transaction.on_commit(lambda pk=pk: _queue(reconcile_service, pk))


def _queue(task, pk) -> None:
    try:
        task.delay(pk)
    except Exception:  # the broker is down: beat's reconcile_all moves them later
        log.exception("cannot queue the reconcile of service %s", pk)


def node_drain(node: Node) -> Node:
    """No new instances on the node; its instances are moved (zero failed requests)."""
    with transaction.atomic():
        Node.objects.filter(pk=node.pk).exclude(state=Node.DOWN).update(state=Node.DRAINING)
        node.refresh_from_db()
        for service in Service.objects.filter(pk__in=_services_on(node)):
            events.emit(service, NODE, f"node {node.name} is draining: moving its instances")
        _kick(_services_on(node))
    return node


def node_undrain(node: Node) -> Node:
    Node.objects.filter(pk=node.pk, state=Node.DRAINING).update(state=Node.UP)
    node.refresh_from_db()
    return node


def node_remove(node: Node) -> None:
    """Refused while the node holds instances; a node with history is deactivated (its
    instances' records keep pointing at it), one without is deleted."""
    live = Instance.objects.filter(node=node, state__in=Instance.LIVE).count()
    if live:
        raise NodeError(
            f"node {node.name} still holds {live} instance(s): drain it first, then remove it"
        )
    if Instance.objects.filter(node=node).exists():
        Node.objects.filter(pk=node.pk).update(
            is_active=False, state=Node.DRAINING, tls_encrypted=""
        )
    else:
        node.delete()


# --- the periodic check --------------------------------------------------------------------------
def grace() -> int:
    return settings.EMS_NODE_DOWN_GRACE_SECONDS


def _ping(node: Node) -> str:
    """ "" when the engine answered, else why not."""
    try:
        backend = _engine(node)
        try:
            backend.ping()
        finally:
            backend.close()
    except BackendError as exc:
        return _explain(node, exc)
    return ""


def check_nodes(*, now=None) -> dict[str, str]:
    """Ping every active Docker node's engine; mark the silent ones down after the grace
    period (and back up when they answer). Returns ``{node: state}`` for the ones that moved."""
    nodes = list(Node.objects.filter(is_active=True, backend=Node.DOCKER))
    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        answers = list(pool.map(_ping, nodes))
    now = now or timezone.now()
    moved = {}
    for node, problem in zip(nodes, answers, strict=True):
        if not problem:
            Node.objects.filter(pk=node.pk).update(
                last_seen_at=now, unreachable_since=None, message=""
            )
            if node.state == Node.DOWN and Node.objects.filter(pk=node.pk, state=Node.DOWN).update(
                state=Node.UP
            ):
                log.warning("node %s answers again: up", node.name)
                moved[node.name] = Node.UP
            continue
        since = node.unreachable_since or now
        Node.objects.filter(pk=node.pk).update(unreachable_since=since, message=problem[:2000])
        overdue = node.state != Node.DOWN and (now - since).total_seconds() >= grace()
        if overdue and Node.objects.filter(pk=node.pk).exclude(state=Node.DOWN).update(
            state=Node.DOWN
        ):
            node.state = Node.DOWN
            mark_down(node, problem)
            moved[node.name] = Node.DOWN
    return moved


def mark_down(node: Node, problem: str) -> None:
    """Out of the routes at once, with an event per service; the reconciler replaces them."""
    from serving import publish

    log.warning("node %s is down: %s", node.name, problem)
    reason = f"node {node.name} is down ({problem[:300]})"
    pks = _services_on(node)
    Instance.objects.filter(node=node, state=Instance.RUNNING, unhealthy_reason="").update(
        unhealthy_reason=reason
    )
    for service in Service.objects.filter(pk__in=pks).select_related("tenant"):
        publish.after_pass(service, changed=True)
        events.emit(
            service,
            NODE,
            f"{reason}: its instances are out of the routes and are started elsewhere",
            level=ServiceEvent.WARNING,
        )
    _kick(pks)

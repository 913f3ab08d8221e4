"""The reconcile pass (see the package docstring)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from models_repo.services import FolderChanged
from serving import events, publish, scheduling
from serving.backends import BackendError, for_node
from serving.backends.base import EXITED, LABEL_SERVICE, MISSING, PAUSED
from serving.models import Instance, Node, Service, ServiceEvent, new_instance_id
from serving.reconciler import support
from serving.scheduling import InsufficientResources

log = logging.getLogger(__name__)

BUSY, IDLE, PROGRESSING = "busy", "idle", "progressing"
LOG_TAIL = 20


class LeaseLost(Exception):
    """The pass's lease ran out and another pass may hold it: stop here (every step is
    idempotent; the holder finishes the work)."""


def reconcile(service_pk: int, *, listing=None) -> str:
    """One pass for one service; returns BUSY (another pass holds the lease), PROGRESSING (call
    again soon: instances are starting or stopping) or IDLE. ``listing``: the nodes' instances
    as ``reconcile_all`` listed them once for every service (``serving.reconciler.fleet``)."""
    taken_at = time.monotonic()
    owner = support.take_lease(service_pk)
    if owner is None:
        return BUSY
    try:
        with support.Heartbeat(service_pk, owner, taken_at=taken_at) as heartbeat:
            service = Service.objects.select_related("group", "region", "tenant", "revision").get(
                pk=service_pk
            )
            run = Pass(service, owner, heartbeat, listing=listing)
            result = run.execute()
    except Service.DoesNotExist:
        return IDLE
    except LeaseLost:
        log.warning("reconcile of service %s stopped: its lease ran out", service_pk)
        return BUSY
    finally:
        support.drop_lease(service_pk, owner)
    # After the pass committed: publish the route (a quiet pass checks and repairs it).
    publish.after_pass(run.service, changed=run.changed)
    return result


class Pass:
    def __init__(self, service: Service, owner: str, heartbeat=None, *, listing=None):
        self.service = service
        self.owner = owner
        self.heartbeat = heartbeat
        self.listing = listing
        self.changed = False
        self.now = timezone.now()

    # --- helpers ------------------------------------------------------------------------------
    def keep_lease(self) -> None:
        """Renew the lease before a step; stop the pass when it is no longer ours."""
        heartbeat = self.heartbeat
        if heartbeat is not None and heartbeat.lost:
            raise LeaseLost(self.service.pk)
        if heartbeat is not None and heartbeat.fresh():
            return  # confirmed moments ago: nobody else can hold it yet
        sent_at = time.monotonic()
        if not support.renew_lease(self.service.pk, self.owner):
            raise LeaseLost(self.service.pk)
        if heartbeat is not None:
            heartbeat.confirm(sent_at)

    def instances(self, states) -> list[Instance]:
        return list(
            self.service.instances.filter(state__in=states)
            .select_related("node", "revision__version__runtime", "revision__version__config")
            .order_by("created_at", "pk")
        )

    def set_instance(self, instance: Instance, **changes) -> None:
        Instance.objects.filter(pk=instance.pk).update(**changes)
        for key, value in changes.items():
            setattr(instance, key, value)
        self.changed = True

    def set_service(self, **changes) -> None:
        changes.setdefault("updated_at", timezone.now())
        Service.objects.filter(pk=self.service.pk).update(**changes)
        for key, value in changes.items():
            setattr(self.service, key, value)

    # --- the pass -----------------------------------------------------------------------------
    def execute(self) -> str:
        live = self.instances(Instance.LIVE)
        self.remove_orphans(live)
        stopping = [i for i in live if i.state == Instance.STOPPING]
        self.drain(stopping)  # one wait for all of them, before any SIGTERM
        for instance in stopping:
            self.stop_instance(instance, Instance.STOPPED, "stopped", drained=True)
        service = self.service
        if service.desired != Service.RUN or service.status == Service.FAILED:
            self.stop_all()
        else:
            for instance in self.instances(Instance.ACTIVE):
                self.keep_lease()
                if self.service.status == Service.FAILED:
                    break
                if instance.node.state == Node.DOWN:
                    self.lost(instance)
                elif instance.state == Instance.PENDING and not instance.node.schedulable:
                    self.unschedule(instance)
                elif instance.state == Instance.PENDING:
                    if instance.not_before is None or instance.not_before <= timezone.now():
                        self.launch(instance)
                else:
                    self.observe(instance)
            if self.service.status == Service.FAILED:
                self.stop_all()
            else:
                self.converge()
        return self.update_status()

    def remove_orphans(self, live: list[Instance]) -> None:
        known = {instance.instance_id for instance in live}
        listing, sid = self.listing, self.service.service_id
        group_nodes = listing.group_nodes(self.service.group_id) if listing else None
        if group_nodes is None:
            group_nodes = list(self.service.group.nodes.all())
        nodes = {n.pk: n for n in group_nodes}
        nodes.update({instance.node_id: instance.node for instance in live})
        for node in nodes.values():
            if node.state == Node.DOWN:
                continue  # its engine does not answer; the node sweep cleans up when it does
            try:
                backend = for_node(node)
                listed = listing.of_service(node, sid) if listing else None
                statuses = backend.list({LABEL_SERVICE: sid}) if listed is None else listed
            except BackendError as exc:
                log.warning("listing node %s failed: %s", node.name, exc.message)
                continue
            for status in statuses:
                if status.instance_id not in known:
                    if listed is not None and backend.inspect(status.instance_id).state == MISSING:
                        continue  # listed before this pass, gone since (stopped by a pass)
                    backend.stop(status.instance_id, grace=0)
                    events.emit(
                        self.service,
                        events.ORPHAN,
                        f"removed {status.instance_id}: not a live instance",
                        instance=status.instance_id,
                    )

    def launch(self, instance: Instance) -> None:
        node = instance.node
        try:
            backend = for_node(node)
            if backend.inspect(instance.instance_id).state != MISSING:
                backend.stop(instance.instance_id, grace=0)  # a launch that died half-way
        except BackendError as exc:
            self.retry_later(instance, exc.message)
            return
        version = instance.revision.version
        try:
            path, fetched = support.fetch_model(node, version)
        except Exception as exc:  # storage errors and a changed folder
            if isinstance(exc, FolderChanged):
                self.fail(f"cannot fetch the model: {exc.message}")
                return
            self.retry_later(instance, f"cannot fetch the model: {exc}")
            return
        if fetched:
            events.emit(
                self.service,
                events.MODEL_FETCHED,
                f"model {version} copied into the cache of {node.name}",
                instance=instance,
            )
        self.keep_lease()
        try:
            status = backend.start(support.spec_for(instance, node), str(path))
        except BackendError as exc:
            if exc.transient:
                self.retry_later(instance, exc.message)
            else:
                self.fail(f"cannot start an instance: {exc.message}")
            return
        with transaction.atomic():  # the pass's writes of one step commit together
            self.set_instance(
                instance,
                state=Instance.STARTING,
                backend_id=status.backend_id,
                address=status.address,
                started_at=status.started_at or timezone.now(),
                last_message="",
            )
            if self.service.status == Service.WAITING:
                self.set_service(status=Service.DEPLOYING)
            events.emit(
                self.service,
                events.STARTED,
                f"started on {node.name} at {status.address}",
                instance=instance,
            )

    def retry_later(self, instance: Instance, message: str) -> None:
        self.set_instance(
            instance, last_message=message[:4000], not_before=timezone.now() + support.backoff(2)
        )
        events.emit(
            self.service, events.ERROR, message, level=ServiceEvent.WARNING, instance=instance
        )

    def observe(self, instance: Instance) -> None:
        if instance.state == Instance.RUNNING and instance.unhealthy_reason:
            # serving.health took it out of the routes: a frozen or wedged runtime, or an
            # engine that does not answer
            self.crashed(instance, f"{instance.unhealthy_reason}; replaced")
            return
        try:
            backend = for_node(instance.node)
            status = backend.inspect(instance.instance_id)
        except BackendError as exc:  # its engine does not answer: the node check decides
            self.set_instance(instance, last_message=exc.message[:4000])
            return
        if status.state in (EXITED, MISSING, PAUSED):
            reason = status.message or "the instance disappeared"
            if status.state == PAUSED:
                reason = f"instance {instance.instance_id} {reason}; replaced"
            self.crashed(instance, reason)
            return
        if instance.address != status.address:
            self.set_instance(instance, address=status.address)
        if instance.state == Instance.STARTING:
            if backend.health(status):
                with transaction.atomic():
                    self.set_instance(instance, state=Instance.RUNNING, ready_at=timezone.now())
                    self.set_service(failures=0)
                    events.emit(self.service, events.HEALTHY, "model AVAILABLE", instance=instance)
            elif (timezone.now() - instance.started_at).total_seconds() > (
                settings.EMS_SERVING_START_TIMEOUT
            ):
                self.crashed(
                    instance, f"not AVAILABLE within {settings.EMS_SERVING_START_TIMEOUT} s"
                )

    def lost(self, instance: Instance, why: str = "") -> None:
        """Its node is down (or its engine does not answer): recorded as failed without
        asking the engine (the node sweep removes the container if the host comes back); not
        the service's fault, so it is not counted and is replaced at once, with no backoff."""
        why = why or f"node {instance.node.name} is down"
        self.set_instance(
            instance,
            state=Instance.FAILED,
            stopped_at=timezone.now() if instance.started_at else None,
            last_message=why[:8000],
        )
        scheduling.release(instance)
        events.emit(
            self.service,
            events.CRASHED,
            f"lost with node {instance.node.name}: {why}; starting a replacement elsewhere",
            level=ServiceEvent.WARNING,
            instance=instance,
        )

    def unschedule(self, instance: Instance) -> None:
        """A pending instance on a node that takes none now (draining): placed again."""
        self.set_instance(instance, state=Instance.STOPPED)
        scheduling.release(instance)
        events.emit(
            self.service,
            events.SCHEDULED,
            f"not started on {instance.node.name} ({instance.node.state}): placed again",
            instance=instance,
        )

    def crashed(self, instance: Instance, reason: str) -> None:
        try:
            backend = for_node(instance.node)
            tail = backend.logs(instance.instance_id, tail=LOG_TAIL).strip()
            final = backend.stop(instance.instance_id, grace=0)
        except BackendError as exc:  # the engine does not answer: the host, not the service
            self.lost(instance, f"{reason} (its engine does not answer: {exc.message[:300]})")
            return
        stopped_at = (final.finished_at if final else None) or timezone.now()
        message = f"{reason}" + (f"\n{tail}" if tail else "")
        self.set_instance(
            instance, state=Instance.FAILED, stopped_at=stopped_at, last_message=message[:8000]
        )
        scheduling.release(instance)
        Service.objects.filter(pk=self.service.pk).update(failures=F("failures") + 1)
        self.service.failures = Service.objects.values_list("failures", flat=True).get(
            pk=self.service.pk
        )
        events.emit(
            self.service, events.CRASHED, message, level=ServiceEvent.ERROR, instance=instance
        )
        if self.service.failures >= support.max_failures():
            self.fail(f"instance failed {self.service.failures} times in a row: {message}")

    def fail(self, message: str) -> None:
        self.set_service(status=Service.FAILED, message=message[:4000])
        events.emit(self.service, events.ERROR, message, level=ServiceEvent.ERROR)

    def drain(self, instances: list[Instance]) -> None:
        """Out of the route first, and wait for the gateways to finish what they sent them
        (``serving.publish.drain``); SIGTERM comes after."""
        ids = [i.instance_id for i in instances if i.address]
        if ids:
            self.keep_lease()
            publish.drain(self.service, ids)
            self.keep_lease()

    def stop_all(self) -> None:
        active = self.instances(Instance.ACTIVE)
        for instance in active:
            if instance.state == Instance.RUNNING:
                self.set_instance(instance, state=Instance.STOPPING)
        self.drain(active)
        for instance in active:
            self.stop_instance(instance, Instance.STOPPED, "stopped", drained=True)

    def stop_instance(
        self, instance: Instance, final_state: str, verb: str, *, drained: bool = False
    ) -> None:
        self.keep_lease()
        if instance.state == Instance.RUNNING:
            self.set_instance(instance, state=Instance.STOPPING)
        if not drained:
            self.drain([instance])
        if instance.node.state == Node.DOWN:
            last = None  # nothing to ask a dead engine; the node sweep removes it later
        else:
            backend = for_node(instance.node)
            last = backend.stop(instance.instance_id, grace=settings.EMS_SERVING_STOP_GRACE)
        stopped_at = (last.finished_at if last else None) or (
            timezone.now() if instance.started_at else None
        )
        with transaction.atomic():
            self.set_instance(instance, state=final_state, stopped_at=stopped_at)
            scheduling.release(instance)
            events.emit(self.service, events.STOPPED, f"instance {verb}", instance=instance)

    # --- rollout and scale --------------------------------------------------------------------
    def new_instance(self) -> Instance | None:
        service, revision = self.service, self.service.revision
        try:
            node = scheduling.claim(service.group, revision.size)
        except InsufficientResources as exc:
            if service.message != exc.message:
                self.set_service(message=exc.message)
                if service.status == Service.UPDATING:  # one at a time: expected, not a fault
                    text = f"waiting for room to start the next instance: {exc.message}"
                    events.emit(service, events.SCHEDULED, text, level=ServiceEvent.INFO)
                else:
                    events.emit(service, events.ERROR, exc.message, level=ServiceEvent.WARNING)
            return None
        last_failed = service.instances.filter(state=Instance.FAILED).order_by("-pk").first()
        restarts = last_failed.restarts + 1 if (last_failed and service.failures) else 0
        not_before = (
            timezone.now() + support.backoff(service.failures) if service.failures else None
        )
        instance = Instance.objects.create(
            tenant_id=service.tenant_id,
            service=service,
            revision=revision,
            node=node,
            instance_id=new_instance_id(service.service_id),
            cpu_millicores=revision.cpu_millicores,
            memory_mib=revision.memory_mib,
            gpus=revision.gpus,
            restarts=restarts,
            not_before=not_before,
        )
        kind = events.REPLACED if restarts else events.SCHEDULED
        events.emit(service, kind, f"scheduled on {node.name}", instance=instance)
        self.changed = True
        return instance

    def converge(self) -> None:
        service = self.service
        active = self.instances(Instance.ACTIVE)
        # instances of an older revision, or on a node that is draining (or gone inactive),
        # are replaced the same way: the new one healthy and routed first, then the old stops
        current = [i for i in active if i.revision_id == service.revision_id and i.node.schedulable]
        old = [i for i in active if i not in current]
        in_progress = any(i.state != Instance.RUNNING for i in current)
        running = [i for i in current if i.state == Instance.RUNNING]

        def worst_first(items):  # not-running first, then newest
            return sorted(items, key=lambda i: (i.state == Instance.RUNNING, -i.pk))

        if len(current) < service.replicas:
            if old:
                if not in_progress and self.new_instance() is None:
                    victim = worst_first(old)[0]
                    self.stop_instance(victim, Instance.STOPPED, "replaced (one at a time)")
                    old.remove(victim)
                    note = "no spare capacity for an extra instance: replacing one at a time"
                    if self.new_instance() is not None:
                        self.set_service(message=note)
                        events.emit(service, events.UPDATING, note, level=ServiceEvent.WARNING)
            else:
                for _ in range(service.replicas - len(current)):
                    if self.new_instance() is None:
                        break
        elif len(current) > service.replicas:
            for extra in worst_first(current)[: len(current) - service.replicas]:
                self.stop_instance(extra, Instance.STOPPED, "removed (scaled in)")
        if old:
            excess = len(running) + len(old) - service.replicas
            if len(running) >= service.replicas:
                excess = len(old)
            for victim in worst_first(old)[: max(0, min(excess, len(running)))]:
                verb = (
                    "replaced by the new revision"
                    if victim.revision_id != service.revision_id
                    else f"moved off node {victim.node.name} ({victim.node.state})"
                )
                self.stop_instance(victim, Instance.STOPPED, verb)

    # --- status -------------------------------------------------------------------------------
    def update_status(self) -> str:
        service = self.service
        live = self.instances(Instance.LIVE)
        before = service.status
        status, result = support.derive_status(service, live)
        if status != before:
            changes = {"status": status}
            if status in (Service.NORMAL, Service.STOPPED):
                changes["message"] = ""
            with transaction.atomic():
                self.set_service(**changes)
                events.emit(service, events.STATUS, f"{before} → {status}")
            self.changed = True
        return result

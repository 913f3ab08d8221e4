"""Every operation that changes a service: deploy, stop, resume, scale, update, rollback, delete.

Each one checks the actor's policy (``accounts.authz.check``), validates, writes its rows and its
audit row in one transaction, and queues a reconcile pass with ``transaction.on_commit``. Capacity
is claimed here, synchronously, so a full group is an immediate, clear error
(``InsufficientResources``), never a silent wait. The reconciler does the slow part (containers).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import authz
from accounts.audit import record
from models_repo.services import FolderChanged, check_version_unchanged
from serving import events, scheduling, selectors
from serving import scaling as scaling_policy
from serving.access import token_issue
from serving.models import Instance, ResourceGroup, Revision, Service, new_instance_id
from serving.scaling import MAX_REPLICAS, TRIGGER_METRICS, Scaling
from serving.scheduling import QUOTA_TYPES, InsufficientResources
from serving.tasks import reconcile_service

__all__ = [
    "MAX_REPLICAS",
    "TRIGGER_METRICS",
    "InstanceSize",
    "InsufficientResources",
    "Scaling",
    "service_autoscale",
    "service_delete",
    "service_deploy",
    "service_resume",
    "service_rollback",
    "service_scale",
    "service_set_scaling",
    "service_stop",
    "service_stop_by_system",
    "service_update",
]


@dataclass(frozen=True)
class InstanceSize:
    """Dedicated groups: custom CPU / memory / GPUs. Public groups: a quota type and count."""

    cpu_millicores: int = 0
    memory_mib: int = 0
    gpus: int = 0
    quota_type: str = ""
    quota_count: int = 0


def _enqueue(service: Service) -> None:
    service_pk = service.pk
    transaction.on_commit(lambda: reconcile_service.delay(service_pk))


def _resource(actor, service: Service | None = None, region: str = "*") -> str:
    ident = service.service_id if service else "*"
    region = service.region.name if service else region
    return authz.resource_name(actor.tenant, "service", ident, region=region)


def _size(group: ResourceGroup, size: InstanceSize, runtime) -> tuple[dict, tuple[int, int, int]]:
    errors = {}
    if group.is_public:
        if size.quota_type not in QUOTA_TYPES:
            errors["quota_type"] = "Pick CPU quota or GPU quota on a public resource group."
        if not 1 <= size.quota_count <= 64:
            errors["quota_count"] = "The quota count is 1 to 64."
        if errors:
            raise ValidationError(errors)
        triple = scheduling.quota_size(size.quota_type, size.quota_count)
        fields = {"quota_type": size.quota_type, "quota_count": size.quota_count}
    else:
        if not scheduling.MIN_CPU <= size.cpu_millicores <= scheduling.MAX_CPU:
            errors["cpu_millicores"] = "CPU is 100 to 256000 millicores (0.1 to 256 cores)."
        if not scheduling.MIN_MEMORY <= size.memory_mib <= scheduling.MAX_MEMORY:
            errors["memory_mib"] = "Memory is 128 MiB to 1 TiB."
        if not 0 <= size.gpus <= 16:
            errors["gpus"] = "GPUs are 0 to 16."
        if errors:
            raise ValidationError(errors)
        triple = (size.cpu_millicores, size.memory_mib, size.gpus)
        fields = {"quota_type": "", "quota_count": 0}
    if getattr(runtime, "needs_gpu", False) and triple[2] == 0:
        raise ValidationError(
            {"gpus": f"The {runtime} runtime needs a GPU: pick GPU quota or at least 1 GPU."}
        )
    fields.update(cpu_millicores=triple[0], memory_mib=triple[1], gpus=triple[2])
    return fields, triple


def _check_version(actor, version) -> None:
    if version.tenant_id != actor.tenant_id:
        raise ValidationError({"version": "No such config version."})
    try:
        check_version_unchanged(version)
    except FolderChanged as exc:
        raise ValidationError({"version": exc.message}) from None


def _add_instances(service: Service, revision: Revision, count: int) -> list[Instance]:
    nodes = scheduling.claim_many(service.group, revision.size, count)
    return [
        Instance.objects.create(
            tenant_id=service.tenant_id,
            service=service,
            revision=revision,
            node=node,
            instance_id=new_instance_id(service.service_id),
            cpu_millicores=revision.cpu_millicores,
            memory_mib=revision.memory_mib,
            gpus=revision.gpus,
        )
        for node in nodes
    ]


def _billing_check(*, actor, group, quota_count: int, instances: int, service=None) -> None:
    """billing: refuse starting instances past a billing limit (an expired dedicated-group
    purchase, a used-up budget with stop at 100%, a sub-account's quota limit)."""
    from billing.limits import check_start

    check_start(
        actor=actor, group=group, quota_count=quota_count, instances=instances, service=service
    )


def _new_revision(service, *, version, fields, reason, actor) -> Revision:
    number = service.revisions.order_by("-number").values_list("number", flat=True).first() or 0
    return Revision.objects.create(
        service=service,
        number=number + 1,
        version=version,
        reason=reason,
        created_by=actor,
        **fields,
    )


def _set(service: Service, **changes) -> None:
    changes["updated_at"] = timezone.now()
    Service.objects.filter(pk=service.pk).update(**changes)
    for key, value in changes.items():
        setattr(service, key, value)


SERVICE_ID_ATTEMPTS = 5


class ServiceIdUnavailable(Exception):
    """Every random service id tried was taken (or the insert kept failing): nothing was
    created, and trying again is safe. The API answers 503 with ``Retry-After``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def service_deploy(
    *,
    actor,
    version,
    group: ResourceGroup,
    name: str,
    size: InstanceSize,
    scaling: Scaling | None = None,
    auth_enabled: bool = False,
) -> Service:
    config = version.config
    authz.check(actor, "ems:CreateService", _resource(actor, region=config.region.name))
    name = (name or "").strip()
    if not name or len(name) > 40:
        raise ValidationError({"name": "The service name is 1 to 40 characters."})
    if (
        not ResourceGroup.objects.for_actor(actor, "ems:DescribeResourceGroups")
        .filter(pk=group.pk, is_active=True)
        .exists()
    ):
        raise ValidationError({"group": "No such resource group."})
    if group.region_id != config.region_id:
        raise ValidationError(
            {
                "group": (
                    f"The resource group {group.name} is in {group.region.name}; the config "
                    f"{config.name} is in {config.region.name}. "
                    "Pick a group in the config's region."
                )
            }
        )
    fields, triple = _size(group, size, version.runtime)
    scale_fields = scaling_policy.validate(scaling or Scaling())
    scheduling.check_fits_group(group, triple)
    _check_version(actor, version)
    with transaction.atomic():
        if Service.objects.live().online().filter(tenant=actor.tenant, name=name).exists():
            raise ValidationError({"name": f"A service named {name} already exists."})
        for _ in range(SERVICE_ID_ATTEMPTS):
            try:
                with transaction.atomic():
                    service = Service.objects.create(
                        tenant=actor.tenant,
                        name=name,
                        region=config.region,
                        group=group,
                        config=config,
                        auth_enabled=auth_enabled,
                        created_by=actor,
                        **scale_fields,
                    )
                break
            except IntegrityError:  # an id collision (or a name race): try a new id
                if Service.objects.live().online().filter(tenant=actor.tenant, name=name).exists():
                    raise ValidationError(
                        {"name": f"A service named {name} already exists."}
                    ) from None
        else:  # every attempt collided: nothing was created
            raise ServiceIdUnavailable(
                f"No free service id was found in {SERVICE_ID_ATTEMPTS} attempts; nothing was "
                "deployed. Try again."
            )
        _billing_check(
            actor=actor, group=group, quota_count=fields["quota_count"], instances=service.replicas
        )
        revision = _new_revision(
            service, version=version, fields=fields, reason="deploy", actor=actor
        )
        _set(service, revision=revision)
        if auth_enabled:
            token_issue(service=service, actor=actor)
        instances = _add_instances(service, revision, service.replicas)
        events.emit(
            service,
            events.SCHEDULED,
            (
                f"deploying {version} with {len(instances)} instance(s) of "
                f"{scheduling.fmt_size(triple)} on {group.name}"
            ),
        )
        record(
            actor=actor,
            action="ems:CreateService",
            resource=service.resource_name,
            detail={"version": str(version), "group": group.name, "replicas": service.replicas},
        )
        _enqueue(service)
    return service


def service_stop(*, actor, service: Service) -> Service:
    authz.check(actor, "ems:StopService", service)
    return _stop(actor=actor, service=service)


def service_stop_by_system(*, service: Service, reason: str) -> Service | None:
    """billing: stop a service as the platform (a budget's stop at 100%, an expired purchase);
    audited with no actor ("system") and the reason. None when it was not running."""
    try:
        return _stop(actor=None, service=service, reason=reason)
    except ValidationError:
        return None


def _stop(*, actor, service: Service, reason: str = "") -> Service:
    if service.kind == Service.BATCH:  # a job's instances: the job fails with the reason
        from serving.jobs.services import job_stop_by_system

        if not job_stop_by_system(service=service, reason=reason or "stopped"):
            raise ValidationError("The job has already ended.")
        return service
    with transaction.atomic():
        if not Service.objects.filter(pk=service.pk, desired=Service.RUN).update(
            desired=Service.STOP,
            saved_replicas=service.replicas,
            status=Service.STOPPING,
            message="",
            updated_at=timezone.now(),
        ):
            raise ValidationError("The service is not running.")
        service.refresh_from_db()
        service.instances.filter(state__in=Instance.ACTIVE).update(state=Instance.STOPPING)
        events.emit(
            service,
            events.STOPPED,
            f"stop requested ({service.saved_replicas} "
            f"replica{'' if service.saved_replicas == 1 else 's'} saved)"
            + (f": {reason}" if reason else ""),
            level="warning" if reason else "info",
        )
        record(
            actor=actor,
            action="ems:StopService",
            resource=service.resource_name,
            detail={"reason": reason} if reason else None,
            tenant=service.tenant,
        )
        _enqueue(service)
    return service


def service_resume(*, actor, service: Service) -> Service:
    authz.check(actor, "ems:ResumeService", service)
    with transaction.atomic():
        replicas = max(service.saved_replicas, 1)
        if not Service.objects.filter(pk=service.pk, desired=Service.STOP).update(
            desired=Service.RUN,
            replicas=replicas,
            status=Service.RESUMING,
            failures=0,
            message="",
            updated_at=timezone.now(),
        ):
            raise ValidationError("Only a stopped service can be resumed.")
        service.refresh_from_db()
        _billing_check(
            actor=actor,
            group=service.group,
            quota_count=service.revision.quota_count,
            instances=replicas,
            service=service,
        )
        _add_instances(service, service.revision, replicas)
        events.emit(service, events.SCALED, f"resuming with {replicas} instance(s)")
        record(
            actor=actor,
            action="ems:ResumeService",
            resource=service.resource_name,
            detail={"replicas": replicas},
        )
        _enqueue(service)
    return service


def _scale_rows(service: Service, replicas: int, *, actor=None) -> None:
    """Claim and add the instances a higher count needs (the reconciler stops the extra ones
    of a lower count, draining them first); a Failed service starts again. A person's scale
    (``actor``) is checked against billing's limits first; the autoscaler's count was already
    capped by ``serving.limits.allowed_replicas``."""
    current = service.instances.filter(state__in=Instance.ACTIVE, revision=service.revision)
    extra = replicas - current.count()
    if extra > 0 and service.status != Service.FAILED:
        if actor is not None:
            _billing_check(
                actor=actor,
                group=service.group,
                quota_count=service.revision.quota_count,
                instances=extra,
                service=service,
            )
        _add_instances(service, service.revision, extra)
    changes = {"replicas": replicas}
    if service.status == Service.FAILED:
        changes.update(status=Service.DEPLOYING, failures=0, message="")
    _set(service, **changes)


def service_scale(*, actor, service: Service, replicas: int) -> Service:
    authz.check(actor, "ems:ScaleService", service)
    if not 1 <= int(replicas) <= MAX_REPLICAS:
        raise ValidationError({"replicas": f"The instance count is 1 to {MAX_REPLICAS}."})
    with transaction.atomic():
        service = Service.objects.get(pk=service.pk)
        if service.desired != Service.RUN:
            raise ValidationError("Resume the service before scaling it.")
        if service.scaling_mode == Service.AUTO:
            auto = service.autoscale
            raise ValidationError(
                {
                    "replicas": (
                        f"The service scales automatically between {auto.get('min')} and "
                        f"{auto.get('max')} instances. Change its scaling policy "
                        "(PATCH /api/v1/services/{id}/scaling/, or the Scaling form) — e.g. "
                        "switch it to manual scaling — to set a count."
                    )
                }
            )
        _scale_rows(service, int(replicas), actor=actor)
        events.emit(service, events.SCALED, f"scaled to {replicas} instance(s)")
        record(
            actor=actor,
            action="ems:ScaleService",
            resource=service.resource_name,
            detail={"replicas": int(replicas)},
        )
        _enqueue(service)
    return service


def service_autoscale(
    *,
    service: Service,
    replicas: int,
    message: str,
    detail: dict,
    kind: str = events.SCALED,
    expected: int | None = None,
) -> Service:
    """The platform's path for the autoscaler (and a wake-up): no person's policy applies, the
    audit row names the system as actor. Only for a running automatic service; the count is
    clamped to 0..MAX_REPLICAS. With ``expected``, nothing happens unless the service still has
    that count (the row is locked): a decision made on a count that changed meanwhile (a
    wake-up, a policy change) is dropped, not applied over it."""
    replicas = max(0, min(int(replicas), MAX_REPLICAS))
    with transaction.atomic():
        service = (
            Service.objects.select_for_update(of=("self",))
            .select_related("revision", "group", "tenant")
            .get(pk=service.pk)
        )
        if service.scaling_mode != Service.AUTO or service.desired != Service.RUN:
            raise ValidationError("Only a running automatic service is scaled automatically.")
        if expected is not None and service.replicas != expected:
            return service
        before = service.replicas
        _scale_rows(service, replicas)
        if replicas == 0:
            _set(service, message="sleeping at zero instances: the next request wakes it")
        elif before == 0:
            _set(service, message="")
        events.emit(service, kind, message)
        record(
            actor=None,
            tenant=service.tenant,
            action="ems:ScaleService",
            resource=service.resource_name,
            detail={"by": "autoscaler", "from": before, "replicas": replicas, **detail},
        )
        _enqueue(service)
    return service


def service_set_scaling(*, actor, service: Service, scaling: Scaling) -> Service:
    """Change the scaling policy after deploy (manual ↔ auto, range, triggers). An automatic
    service's count is clamped into the new range at once (a sleeping one stays at 0 while
    the new minimum is 0); a manual one goes to ``scaling.replicas``."""
    authz.check(actor, "ems:ScaleService", service)
    fields = scaling_policy.validate(scaling)
    with transaction.atomic():
        service = Service.objects.select_related("revision", "group").get(pk=service.pk)
        if service.desired != Service.RUN:
            raise ValidationError("Resume the service before changing its scaling.")
        if fields["scaling_mode"] == Service.AUTO:
            auto = fields["autoscale"]
            low = auto["min"] if service.replicas == 0 else max(auto["min"], 1)
            fields["replicas"] = min(max(service.replicas, low), auto["max"])
        _set(service, scaling_mode=fields["scaling_mode"], autoscale=fields["autoscale"])
        _scale_rows(service, fields["replicas"])
        if fields["scaling_mode"] == Service.AUTO:
            auto = fields["autoscale"]
            triggers = ", ".join(f"{t['metric']} {t['target']}" for t in auto["triggers"])
            note = f"automatic scaling {auto['min']}..{auto['max']} on {triggers}"
        else:
            note = f"manual scaling, {fields['replicas']} instance(s)"
        events.emit(service, events.SCALED, f"scaling policy changed: {note}")
        record(
            actor=actor,
            action="ems:ScaleService",
            resource=service.resource_name,
            detail={
                "scaling_mode": fields["scaling_mode"],
                "replicas": fields["replicas"],
                "autoscale": fields["autoscale"],
            },
        )
        _enqueue(service)
    return service


def _roll(
    *,
    actor,
    service: Service,
    version,
    size: InstanceSize | None,
    reason: str,
    action: str,
    base: Revision | None = None,
) -> Service:
    with transaction.atomic():
        service = Service.objects.select_related("group", "revision").get(pk=service.pk)
        if service.desired == Service.DELETE:
            raise ValidationError("The service is being deleted.")
        base = base or service.revision
        if size is None:
            fields = {
                "cpu_millicores": base.cpu_millicores,
                "memory_mib": base.memory_mib,
                "gpus": base.gpus,
                "quota_type": base.quota_type,
                "quota_count": base.quota_count,
            }
            triple = base.size
        else:
            fields, triple = _size(service.group, size, version.runtime)
        scheduling.check_fits_group(service.group, triple)
        revision = _new_revision(
            service, version=version, fields=fields, reason=reason, actor=actor
        )
        running = service.desired == Service.RUN
        _set(
            service,
            revision=revision,
            failures=0,
            message="",
            status=Service.UPDATING if running else service.status,
        )
        events.emit(service, events.UPDATING, f"{reason} to {version} (revision {revision.number})")
        record(
            actor=actor,
            action=action,
            resource=service.resource_name,
            detail={"version": str(version), "revision": revision.number},
        )
        _enqueue(service)
    return service


def service_update(
    *, actor, service: Service, version, size: InstanceSize | None = None
) -> Service:
    authz.check(actor, "ems:UpdateService", service)
    if version.config_id != service.config_id:
        raise ValidationError({"version": "Pick a version of the service's own config."})
    _check_version(actor, version)
    return _roll(
        actor=actor,
        service=service,
        version=version,
        size=size,
        reason="update",
        action="ems:UpdateService",
    )


def service_rollback(*, actor, service: Service) -> Service:
    authz.check(actor, "ems:RollbackService", service)
    previous = selectors.rollback_target(service)
    if previous is None:
        raise ValidationError("There is no earlier revision to roll back to.")
    return _roll(
        actor=actor,
        service=service,
        version=previous.version,
        size=None,
        reason="rollback",
        action="ems:RollbackService",
        base=previous,
    )


def service_delete(*, actor, service: Service) -> None:
    authz.check(actor, "ems:DeleteService", service)
    with transaction.atomic():
        if not Service.objects.filter(pk=service.pk, deleted_at__isnull=True).update(
            desired=Service.DELETE,
            deleted_at=timezone.now(),
            status=Service.STOPPING,
            updated_at=timezone.now(),
        ):
            raise ValidationError("The service is already deleted.")
        service.instances.filter(state__in=Instance.ACTIVE).update(state=Instance.STOPPING)
        events.emit(service, events.STOPPED, "delete requested")
        record(actor=actor, action="ems:DeleteService", resource=service.resource_name)
        _enqueue(service)


def resource_group_delete(*, actor, group: ResourceGroup) -> None:
    """An operator deletes a resource group: refused while services that are not deleted use
    it. ``actor``: a ``PlatformActor`` (in the group's tenant for a dedicated group)."""
    from django.db.models import ProtectedError

    live = list(Service.objects.live().filter(group=group).values_list("service_id", flat=True))
    if live:
        raise ValidationError(
            {
                "group": (
                    f"The resource group {group.name} still runs services "
                    f"({', '.join(live[:5])}{' …' if len(live) > 5 else ''}): "
                    "delete or move them first."
                )
            }
        )
    with transaction.atomic():
        if group.tenant_id is not None:
            record(
                actor=actor,
                action="ems:DeleteResourceGroup",
                resource=authz.resource_name(group.tenant, "resource-group", group.name),
                tenant=group.tenant,
            )
        try:
            group.nodes.all().delete()
            group.delete()
        except ProtectedError:
            raise ValidationError(
                {"group": f"The resource group {group.name} is still referenced by past services."}
            ) from None

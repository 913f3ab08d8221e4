"""REST API of the serving app: resource groups and services (deploy, stop, resume, scale,
update, rollback, delete; events, instances, logs). Validate, call a service, serialize."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from accounts import authz, throttles
from accounts.api.base import ScopedViewSet
from models_repo.models import ModelConfigVersion
from serving import access, selectors, services
from serving.api_elastic import ElasticActions, TriggerSerializer
from serving.models import Instance, ResourceGroup, Revision, Service, ServiceEvent
from serving.scheduling import QUOTA_TYPES, InsufficientResources


class CapacityConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "insufficient_resources"


class DeployUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_id_unavailable"
    wait = 1  # DRF's handler sends it as Retry-After


# --- serializers ----------------------------------------------------------------------------
class ResourceGroupSerializer(serializers.ModelSerializer):
    region = serializers.SlugRelatedField(slug_field="name", read_only=True)
    capacity = serializers.SerializerMethodField()

    class Meta:
        model = ResourceGroup
        fields = ["id", "name", "kind", "region", "description", "capacity"]

    def get_capacity(self, group) -> dict[str, int]:
        return group.capacity()


class RevisionSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="version.label", read_only=True)
    version_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Revision
        fields = [
            "number",
            "version",
            "version_id",
            "cpu_millicores",
            "memory_mib",
            "gpus",
            "quota_type",
            "quota_count",
            "reason",
            "created_at",
        ]


class InstanceSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name", read_only=True)
    revision = serializers.IntegerField(source="revision.number", read_only=True)

    class Meta:
        model = Instance
        fields = [
            "instance_id",
            "revision",
            "node",
            "backend_id",
            "address",
            "state",
            "restarts",
            "last_message",
            "cpu_millicores",
            "memory_mib",
            "gpus",
            "created_at",
            "started_at",
            "ready_at",
            "stopped_at",
        ]


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServiceEvent
        fields = ["created_at", "kind", "level", "instance_id", "message"]


class ServiceSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.name", read_only=True)
    group = serializers.IntegerField(source="group_id", read_only=True)
    config = serializers.IntegerField(source="config_id", read_only=True)
    revision = RevisionSerializer(read_only=True)
    runtime = serializers.CharField(source="revision.version.runtime.name", read_only=True)
    instances_ready = serializers.SerializerMethodField()

    class Meta:
        model = Service
        fields = [
            "service_id",
            "name",
            "region",
            "group",
            "config",
            "revision",
            "runtime",
            "scaling_mode",
            "replicas",
            "saved_replicas",
            "autoscale",
            "auth_enabled",
            "status",
            "message",
            "instances_ready",
            "created_at",
            "updated_at",
        ]

    def get_instances_ready(self, service) -> int:
        counted = getattr(service, "instances_ready_count", None)  # a list page counts at once
        if counted is not None:
            return counted
        return service.instances.filter(state=Instance.RUNNING).count()


class SizeFields(serializers.Serializer):
    cpu_millicores = serializers.IntegerField(required=False, default=0, min_value=0)
    memory_mib = serializers.IntegerField(required=False, default=0, min_value=0)
    gpus = serializers.IntegerField(required=False, default=0, min_value=0)
    quota_type = serializers.ChoiceField(
        choices=list(QUOTA_TYPES), required=False, allow_blank=True, default=""
    )
    quota_count = serializers.IntegerField(required=False, default=0, min_value=0)

    def size(self) -> services.InstanceSize:
        data = self.validated_data
        return services.InstanceSize(
            **{
                k: data[k]
                for k in ("cpu_millicores", "memory_mib", "gpus", "quota_type", "quota_count")
            }
        )


class DeploySerializer(SizeFields):
    name = serializers.CharField(max_length=40)
    version = serializers.IntegerField(help_text="Id of the config version to serve.")
    resource_group = serializers.IntegerField()
    scaling_mode = serializers.ChoiceField(choices=[Service.MANUAL, Service.AUTO], default="manual")
    replicas = serializers.IntegerField(default=1, min_value=1)
    min_replicas = serializers.IntegerField(default=1, min_value=0)
    max_replicas = serializers.IntegerField(default=1, min_value=1)
    start_replicas = serializers.IntegerField(default=1, min_value=1)
    triggers = TriggerSerializer(many=True, required=False, default=list)
    auth_enabled = serializers.BooleanField(default=False)


class EstimateRequestSerializer(SizeFields):
    """billing: the deploy body (name and version are not needed for a price)."""

    resource_group = serializers.IntegerField()
    scaling_mode = serializers.ChoiceField(choices=[Service.MANUAL, Service.AUTO], default="manual")
    replicas = serializers.IntegerField(default=1, min_value=1)
    min_replicas = serializers.IntegerField(default=1, min_value=1)
    max_replicas = serializers.IntegerField(default=1, min_value=1)
    start_replicas = serializers.IntegerField(default=1, min_value=1)


class EstimateSerializer(serializers.Serializer):
    per_hour = serializers.DecimalField(max_digits=20, decimal_places=6)
    per_hour_max = serializers.DecimalField(
        max_digits=20, decimal_places=6, help_text="At the automatic range's maximum."
    )
    unit_price_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6)
    currency = serializers.CharField()
    replicas = serializers.IntegerField()
    note = serializers.CharField()


class ScaleSerializer(serializers.Serializer):
    replicas = serializers.IntegerField(min_value=1)


class UpdateSerializer(SizeFields):
    version = serializers.IntegerField(help_text="Id of another version of the same config.")
    resize = serializers.BooleanField(default=False, help_text="Apply the size fields too.")


class LogsSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    lines = serializers.ListField(child=serializers.CharField())


class TokenInfoSerializer(serializers.Serializer):
    sha256_prefix = serializers.CharField(help_text="First 8 hex digits of the token's SHA-256.")
    created_at = serializers.DateTimeField()
    not_after = serializers.DateTimeField(allow_null=True, help_text="End of its grace period.")


class InvokeSerializer(serializers.Serializer):
    service_id = serializers.CharField()
    status = serializers.CharField()
    auth_enabled = serializers.BooleanField()
    address = serializers.CharField(help_text="EMS_GATEWAY_URL/<service id>")
    host_address = serializers.CharField(help_text="<service id>.<EMS_GATEWAY_DOMAIN>")
    predict_url = serializers.CharField()
    token = serializers.CharField(
        allow_null=True,
        help_text="Only with ems:DescribeServiceToken (each answer is audited); else null.",
    )
    token_visible = serializers.BooleanField()
    tokens = TokenInfoSerializer(many=True, help_text="Live tokens (hash prefixes only).")
    curl = serializers.CharField(help_text="The call with TOKEN (or the token, when shown).")


class RotateSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=30 * 86400,
        help_text="How long the old token keeps working (default EMS_TOKEN_GRACE_SECONDS).",
    )


class AuthSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


def invoke_payload(actor, service) -> dict:
    """Addresses, live tokens, and the token itself when the actor may see it (audited)."""
    visible = authz.is_allowed(actor, "ems:DescribeServiceToken", service)
    token = access.service_token_reveal(actor=actor, service=service) if visible else None
    live = [t for t in service.tokens.filter(revoked_at__isnull=True) if t.is_live()]
    return {
        "service_id": service.service_id,
        "status": service.status,
        "auth_enabled": service.auth_enabled,
        **access.addresses(service),
        "token": token,
        "token_visible": visible,
        "tokens": [
            {"sha256_prefix": t.sha256[:8], "created_at": t.created_at, "not_after": t.not_after}
            for t in live
        ],
        "curl": access.curl_line(service, token),
    }


class ServicePages(PageNumberPagination):
    """The settings' page size; the page's keys first, then its rows (10,000 services)."""

    django_paginator_class = selectors.KeysFirstPaginator


# --- viewsets -------------------------------------------------------------------------------
@extend_schema(tags=["serving"])
class ResourceGroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Public resource groups and the tenant's dedicated ones (operators create them)."""

    serializer_class = ResourceGroupSerializer
    queryset = ResourceGroup.objects.none()
    required_actions = {
        "list": "ems:DescribeResourceGroups",
        "retrieve": "ems:DescribeResourceGroups",
    }

    def scoped(self, actor):
        return selectors.resource_groups(actor=actor)


def _version(actor, pk: int) -> ModelConfigVersion:
    version = (
        ModelConfigVersion.objects.for_actor(actor, "ems:DescribeModelConfigVersions")
        .select_related("config__region", "runtime")
        .filter(pk=pk)
        .first()
    )
    if version is None:
        raise DjangoValidationError({"version": "No such config version."})
    return version


def _call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except InsufficientResources as exc:
        raise CapacityConflict(exc.message) from None
    except services.ServiceIdUnavailable as exc:
        raise DeployUnavailable(exc.message) from None


@extend_schema(tags=["serving"])
class ServiceViewSet(
    ElasticActions,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    ScopedViewSet,
):
    """Online inference services. ``service_id`` (e.g. ``ems-7f3k2p9q``) names one."""

    serializer_class = ServiceSerializer
    queryset = Service.objects.none()
    pagination_class = ServicePages
    lookup_field = "service_id"
    lookup_value_regex = "ems-[a-z0-9]{8}"
    required_actions = {
        "list": "ems:DescribeServices",
        "retrieve": "ems:DescribeService",
        "create": "ems:CreateService",
        "destroy": "ems:DeleteService",
        "stop": "ems:StopService",
        "resume": "ems:ResumeService",
        "scale": "ems:ScaleService",
        "update_version": "ems:UpdateService",
        "rollback": "ems:RollbackService",
        "events": "ems:DescribeServiceEvents",
        "instances": "ems:DescribeServiceInstances",
        "logs": "ems:DescribeServiceLogs",
        "invoke": "ems:DescribeService",
        "token_rotate": "ems:RotateServiceToken",
        "token_revoke": "ems:RevokeServiceToken",
        "auth": "ems:UpdateService",
        "scaling": "ems:ScaleService",
        "metrics": "ems:DescribeService",
        "estimate": "ems:DescribePrices",  # billing
    }

    def scoped(self, actor):
        return selectors.services(actor=actor, action="ems:DescribeService")

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None and self.action == "list":
            selectors.count_ready(page)  # one query for the page, not one per row
        return page

    def _done(self, service, code=status.HTTP_200_OK):
        service = selectors.services(actor=self.actor(), action="ems:DescribeService").get(
            pk=service.pk
        )
        return Response(ServiceSerializer(service).data, status=code)

    @extend_schema(request=DeploySerializer, responses={201: ServiceSerializer})
    def create(self, request, *args, **kwargs):
        form = DeploySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data, actor = form.validated_data, self.actor()
        group = selectors.resource_groups(actor=actor).filter(pk=data["resource_group"]).first()
        if group is None:
            raise DjangoValidationError({"resource_group": "No such resource group."})
        scaling = services.Scaling(
            mode=data["scaling_mode"],
            replicas=data["replicas"],
            min=data["min_replicas"],
            max=data["max_replicas"],
            start=data["start_replicas"],
            triggers=data["triggers"],
        )
        service = _call(
            services.service_deploy,
            actor=actor,
            version=_version(actor, data["version"]),
            group=group,
            name=data["name"],
            size=form.size(),
            scaling=scaling,
            auth_enabled=data["auth_enabled"],
        )
        return self._done(service, status.HTTP_201_CREATED)

    @extend_schema(request=EstimateRequestSerializer, responses=EstimateSerializer)
    @action(detail=False, methods=["post"])
    def estimate(self, request, *args, **kwargs):
        """billing: the cost per hour of a deploy body, before starting it."""
        from billing.limits import estimate

        form = EstimateRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data, actor = form.validated_data, self.actor()
        group = selectors.resource_groups(actor=actor).filter(pk=data["resource_group"]).first()
        if group is None:
            raise DjangoValidationError({"resource_group": "No such resource group."})
        if group.is_public and data["quota_type"] not in QUOTA_TYPES:
            raise DjangoValidationError(
                {"quota_type": "Pick CPU quota or GPU quota on a public resource group."}
            )
        auto = data["scaling_mode"] == Service.AUTO
        body = estimate(
            group=group,
            quota_type=data["quota_type"],
            quota_count=max(data["quota_count"], 1),
            replicas=data["start_replicas"] if auto else data["replicas"],
            max_replicas=data["max_replicas"] if auto else None,
        )
        return Response(EstimateSerializer(body).data)

    def perform_destroy(self, instance):
        services.service_delete(actor=self.actor(), service=instance)

    @extend_schema(request=None, responses=ServiceSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, *args, **kwargs):
        return self._done(services.service_stop(actor=self.actor(), service=self.get_object()))

    @extend_schema(request=None, responses=ServiceSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, *args, **kwargs):
        service = _call(services.service_resume, actor=self.actor(), service=self.get_object())
        return self._done(service)

    @extend_schema(request=ScaleSerializer, responses=ServiceSerializer)
    @action(detail=True, methods=["post"])
    def scale(self, request, *args, **kwargs):
        form = ScaleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        service = _call(
            services.service_scale,
            actor=self.actor(),
            service=self.get_object(),
            replicas=form.validated_data["replicas"],
        )
        return self._done(service)

    @extend_schema(request=UpdateSerializer, responses=ServiceSerializer)
    @action(detail=True, methods=["post"], url_path="update", url_name="update")
    def update_version(self, request, *args, **kwargs):
        service = self.get_object()
        form = UpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        actor = self.actor()
        size = form.size() if form.validated_data["resize"] else None
        service = _call(
            services.service_update,
            actor=actor,
            service=service,
            version=_version(actor, form.validated_data["version"]),
            size=size,
        )
        return self._done(service)

    @extend_schema(request=None, responses=ServiceSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, *args, **kwargs):
        service = _call(services.service_rollback, actor=self.actor(), service=self.get_object())
        return self._done(service)

    @extend_schema(responses=EventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def events(self, request, *args, **kwargs):
        rows = self.get_object().events.order_by("-created_at", "-id")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(EventSerializer(page, many=True).data)

    @extend_schema(
        responses=InstanceSerializer(many=True),
        parameters=[OpenApiParameter("all", bool, description="Include stopped instances.")],
    )
    @action(detail=True, methods=["get"])
    def instances(self, request, *args, **kwargs):
        live_only = request.query_params.get("all") not in ("1", "true", "yes")
        rows = selectors.instances(service=self.get_object(), live_only=live_only)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(InstanceSerializer(page, many=True).data)

    @extend_schema(
        responses=LogsSerializer(many=True),
        parameters=[OpenApiParameter("tail", int, description="Lines per instance (max 1000).")],
    )
    @action(detail=True, methods=["get"], pagination_class=None)  # one entry per instance
    def logs(self, request, *args, **kwargs):
        try:
            tail = max(1, min(int(request.query_params.get("tail", 100)), 1000))
        except ValueError:
            tail = 100
        return Response(selectors.logs(service=self.get_object(), tail=tail))

    def _invoke(self, service):
        # the answer holds the token in clear for those who may see it: rate-limited
        throttles.limit(self.request, "sensitive", account=throttles.account_of(self.request))
        service = selectors.services(actor=self.actor(), action="ems:DescribeService").get(
            pk=service.pk
        )
        return Response(InvokeSerializer(invoke_payload(self.actor(), service)).data)

    @extend_schema(responses=InvokeSerializer)
    @action(detail=True, methods=["get"])
    def invoke(self, request, *args, **kwargs):
        """How to call the service: its gateway addresses, the curl line and (with
        ems:DescribeServiceToken, audited) its token."""
        return self._invoke(self.get_object())

    @extend_schema(request=RotateSerializer, responses=InvokeSerializer)
    @action(detail=True, methods=["post"], url_path="tokens/rotate", url_name="token-rotate")
    def token_rotate(self, request, *args, **kwargs):
        """A new token; the old one keeps working for the grace period."""
        service = self.get_object()
        form = RotateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        access.service_token_rotate(
            actor=self.actor(),
            service=service,
            grace_seconds=form.validated_data.get("grace_seconds"),
        )
        return self._invoke(service)

    @extend_schema(request=None, responses=InvokeSerializer)
    @action(detail=True, methods=["post"], url_path="tokens/revoke", url_name="token-revoke")
    def token_revoke(self, request, *args, **kwargs):
        """Every token stops working (once the gateways apply it); a new one is issued."""
        service = self.get_object()
        access.service_token_revoke(actor=self.actor(), service=service)
        return self._invoke(service)

    @extend_schema(request=AuthSerializer, responses=InvokeSerializer)
    @action(detail=True, methods=["post"])
    def auth(self, request, *args, **kwargs):
        """Switch the token check on (a token is issued) or off."""
        service = self.get_object()
        form = AuthSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        access.service_set_auth(
            actor=self.actor(), service=service, enabled=form.validated_data["enabled"]
        )
        return self._invoke(service)


def register(router) -> None:
    from serving.jobs.api import register as register_jobs

    router.register("resource-groups", ResourceGroupViewSet, basename="resource-group")
    router.register("services", ServiceViewSet, basename="service")
    register_jobs(router)

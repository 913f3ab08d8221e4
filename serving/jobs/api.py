"""REST API of batch jobs: ``/api/v1/jobs/`` — list, create, retrieve, ``cancel/``, ``events/``,
``files/``, ``instances/`` and ``estimate/``. Validate, call a service, serialize."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from accounts.api.base import ScopedViewSet
from serving import selectors as serving_selectors
from serving.api import CapacityConflict, InstanceSerializer, SizeFields, _version
from serving.jobs import selectors, services
from serving.jobs.models import Job, JobEvent, JobFile
from serving.scheduling import QUOTA_TYPES


class JobIdUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "job_id_unavailable"
    wait = 1


class JobSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.name", read_only=True)
    resource_group = serializers.IntegerField(source="group_id", read_only=True)
    config = serializers.IntegerField(source="config_id", read_only=True)
    version = serializers.IntegerField(source="version_id", read_only=True)
    version_label = serializers.CharField(source="version.label", read_only=True)
    input = serializers.CharField(source="input_url", read_only=True)
    output = serializers.CharField(source="output_url", read_only=True)
    size = serializers.SerializerMethodField()
    percent = serializers.SerializerMethodField()
    rate = serializers.SerializerMethodField(help_text="Lines per second since the start.")
    eta_seconds = serializers.SerializerMethodField(help_text="Estimated seconds left.")

    class Meta:
        model = Job
        fields = [
            "job_id",
            "name",
            "region",
            "resource_group",
            "config",
            "version",
            "version_label",
            "size",
            "workers",
            "input",
            "output",
            "batch_size",
            "signature_name",
            "max_failed",
            "status",
            "message",
            "total",
            "done",
            "failed",
            "percent",
            "rate",
            "eta_seconds",
            "errors",
            "created_at",
            "started_at",
            "ended_at",
        ]

    def get_size(self, job) -> dict:
        revision = job.service.revision if job.service_id else None
        if revision is None:
            return {}
        return {
            "cpu_millicores": revision.cpu_millicores,
            "memory_mib": revision.memory_mib,
            "gpus": revision.gpus,
            "quota_type": revision.quota_type,
            "quota_count": revision.quota_count,
        }

    def get_percent(self, job) -> float:
        return job.progress()["percent"]

    def get_rate(self, job) -> float | None:
        return job.progress()["rate"]

    def get_eta_seconds(self, job) -> float | None:
        return job.progress()["eta_seconds"]


class JobCreateSerializer(SizeFields):
    name = serializers.CharField(max_length=40)
    version = serializers.IntegerField(help_text="Id of the config version to run.")
    resource_group = serializers.IntegerField()
    workers = serializers.IntegerField(default=1, min_value=1, help_text="Instances to run.")
    input = serializers.CharField(
        max_length=1000, help_text="cos:// address of a .jsonl / .json file or of a folder (/)."
    )
    output = serializers.CharField(max_length=1000, help_text="cos:// address of a folder.")
    batch_size = serializers.IntegerField(default=64, min_value=1)
    signature_name = serializers.CharField(max_length=100, required=False, default="")
    max_failed = serializers.IntegerField(
        default=0, min_value=0, help_text="Failed lines tolerated; one more fails the job."
    )


class JobEstimateRequestSerializer(SizeFields):
    version = serializers.IntegerField()
    resource_group = serializers.IntegerField()
    workers = serializers.IntegerField(default=1, min_value=1)
    items = serializers.IntegerField(required=False, min_value=0, help_text="Input lines.")


class JobEstimateSerializer(serializers.Serializer):
    per_hour = serializers.DecimalField(max_digits=20, decimal_places=6)
    unit_price_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6)
    currency = serializers.CharField()
    replicas = serializers.IntegerField(help_text="Workers.")
    note = serializers.CharField()
    items = serializers.IntegerField(allow_null=True)
    rate_per_instance = serializers.FloatField(
        allow_null=True, help_text="Lines per second per instance measured on earlier jobs."
    )
    seconds = serializers.FloatField(allow_null=True)
    total = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["created_at", "kind", "level", "message"]


class JobFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobFile
        fields = ["index", "input_key", "output_key", "format", "lines", "state", "assembled_at"]


def _group(actor, pk: int):
    group = serving_selectors.resource_groups(actor=actor).filter(pk=pk).first()
    if group is None:
        raise DjangoValidationError({"resource_group": "No such resource group."})
    return group


@extend_schema(tags=["jobs"])
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Batch jobs: a config version over object-store input (``job_id``, e.g.
    ``job-7f3k2p9q``, names one)."""

    serializer_class = JobSerializer
    queryset = Job.objects.none()
    lookup_field = "job_id"
    lookup_value_regex = "job-[a-z0-9]{8}"
    required_actions = {
        "list": "ems:DescribeJobs",
        "retrieve": "ems:DescribeJob",
        "create": "ems:CreateJob",
        "cancel": "ems:CancelJob",
        "events": "ems:DescribeJob",
        "files": "ems:DescribeJob",
        "instances": "ems:DescribeJob",
        "estimate": "ems:DescribePrices",  # billing
    }

    def scoped(self, actor):
        return selectors.jobs(actor=actor, action="ems:DescribeJob")

    def _done(self, job, code=status.HTTP_200_OK):
        job = selectors.jobs(actor=self.actor(), action="ems:DescribeJob").get(pk=job.pk)
        return Response(JobSerializer(job).data, status=code)

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer})
    def create(self, request, *args, **kwargs):
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data, actor = form.validated_data, self.actor()
        try:
            job = services.job_create(
                actor=actor,
                version=_version(actor, data["version"]),
                group=_group(actor, data["resource_group"]),
                name=data["name"],
                size=form.size(),
                input_url=data["input"],
                output_url=data["output"],
                workers=data["workers"],
                batch_size=data["batch_size"],
                signature_name=data["signature_name"],
                max_failed=data["max_failed"],
            )
        except services.InsufficientResources as exc:
            raise CapacityConflict(exc.message) from None
        except services.JobIdUnavailable as exc:
            raise JobIdUnavailable(exc.message) from None
        return self._done(job, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        """Stop the job: its instances stop; what it wrote stays (docs/batch-jobs.md)."""
        return self._done(services.job_cancel(actor=self.actor(), job=self.get_object()))

    @extend_schema(responses=JobEventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def events(self, request, *args, **kwargs):
        rows = self.get_object().events.order_by("-created_at", "-id")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(JobEventSerializer(page, many=True).data)

    @extend_schema(responses=JobFileSerializer(many=True))
    @action(detail=True, methods=["get"])
    def files(self, request, *args, **kwargs):
        """The input files and their output files (``output_key`` in the output's bucket)."""
        rows = selectors.files(job=self.get_object())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(JobFileSerializer(page, many=True).data)

    @extend_schema(responses=InstanceSerializer(many=True))
    @action(detail=True, methods=["get"])
    def instances(self, request, *args, **kwargs):
        rows = selectors.instances(job=self.get_object())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(InstanceSerializer(page, many=True).data)

    @extend_schema(request=JobEstimateRequestSerializer, responses=JobEstimateSerializer)
    @action(detail=False, methods=["post"])
    def estimate(self, request, *args, **kwargs):
        """billing: the cost per hour of a job body, and its total when ``items`` is given and
        earlier jobs of the config measured a rate."""
        form = JobEstimateRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data, actor = form.validated_data, self.actor()
        group = _group(actor, data["resource_group"])
        if group.is_public and data["quota_type"] not in QUOTA_TYPES:
            raise DjangoValidationError(
                {"quota_type": "Pick CPU quota or GPU quota on a public resource group."}
            )
        body = services.job_estimate(
            actor=actor,
            version=_version(actor, data["version"]),
            group=group,
            size=form.size(),
            workers=data["workers"],
            items=data.get("items"),
        )
        return Response(JobEstimateSerializer(body).data)


def register(router) -> None:
    router.register("jobs", JobViewSet, basename="job")

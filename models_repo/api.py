"""The model repository's REST API: validate, call a service or selector, serialize.

Versions are never updated: there is no PUT/PATCH anywhere on them.
"""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from accounts.api.base import ScopedViewSet, required_action
from models_repo import selectors, services
from models_repo.downloads import object_response
from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment
from models_repo.storage import AccessRefused, StorageError, TransientStorageError
from models_repo.storage import NotFound as StorageNotFound
from models_repo.uploads import UploadedFile, UploadRefused


class StorageUnavailable(APIException):
    status_code = 503
    default_detail = "The object store does not answer; try again shortly."
    default_code = "storage_unavailable"


class StorageErrorsMixin:
    """Another tenant's or a missing bucket is a 404; an outage 503; uploads say their status."""

    def handle_exception(self, exc):
        if isinstance(exc, AccessRefused | StorageNotFound):
            exc = NotFound("No such bucket or object in this account.")
        elif isinstance(exc, TransientStorageError):
            exc = StorageUnavailable(str(exc))
        elif isinstance(exc, UploadRefused):
            return Response({"detail": exc.message}, status=exc.status)
        elif isinstance(exc, StorageError):
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return super().handle_exception(exc)


# --- serializers ---------------------------------------------------------------------------------
class RegionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Region
        fields = ["name", "display_name"]


class RuntimeSerializer(serializers.ModelSerializer):
    is_public = serializers.BooleanField(read_only=True)

    class Meta:
        model = RuntimeEnvironment
        fields = [
            "id",
            "name",
            "display_name",
            "runtime",
            "model_format",
            "image",
            "needs_gpu",
            "health_check",
            "description",
            "is_public",
        ]
        read_only_fields = ["id", "runtime", "is_public"]
        extra_kwargs = {"display_name": {"required": False}}
        validators = []  # uniqueness is the service's question (public names included)


class VersionSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="label", read_only=True)
    runtime_name = serializers.CharField(source="runtime.name", read_only=True)
    config = serializers.IntegerField(source="config_id", read_only=True)

    class Meta:
        model = ModelConfigVersion
        fields = [
            "id",
            "config",
            "version",
            "number",
            "runtime",
            "runtime_name",
            "address",
            "manifest",
            "manifest_digest",
            "total_size",
            "validation_status",
            "validation_messages",
            "created_at",
        ]
        read_only_fields = fields


class FolderSourceSerializer(serializers.Serializer):
    """The model folder: a typed ``address``, or a picked (``bucket``, ``prefix``) — also the
    way to use a folder just uploaded through ``buckets/{bucket}/upload/``."""

    runtime = serializers.PrimaryKeyRelatedField(queryset=RuntimeEnvironment.objects.none())
    address = serializers.CharField(required=False, allow_blank=True, max_length=1100)
    bucket = serializers.CharField(required=False, allow_blank=True, max_length=63)
    prefix = serializers.CharField(required=False, allow_blank=True, max_length=1024)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        actor = self.context.get("actor")
        if actor is not None:
            self.fields["runtime"].queryset = selectors.runtimes(actor=actor)

    def validate(self, attrs):
        if not attrs.get("address") and not attrs.get("bucket"):
            raise serializers.ValidationError(
                {"address": "Give the model folder: an address, or a bucket and prefix."}
            )
        return attrs


class ConfigCreateSerializer(FolderSourceSerializer):
    name = serializers.CharField(max_length=20)
    region = serializers.SlugRelatedField(slug_field="name", queryset=Region.objects.none())
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].queryset = selectors.regions()


class ConfigSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.name", read_only=True)
    versions = VersionSerializer(many=True, read_only=True)

    class Meta:
        model = ModelConfig
        fields = ["id", "name", "region", "description", "created_at", "versions"]
        read_only_fields = fields


class BucketSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    region = serializers.CharField(read_only=True, allow_null=True)


class BucketCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63, help_text="'models' becomes models-<app_id>.")
    region = serializers.SlugRelatedField(slug_field="name", queryset=Region.objects.none())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].queryset = selectors.regions()


class ObjectSerializer(serializers.Serializer):
    key = serializers.CharField()
    size = serializers.IntegerField()
    etag = serializers.CharField()
    modified = serializers.DateTimeField(allow_null=True)


class ObjectPageSerializer(serializers.Serializer):
    bucket = serializers.CharField()
    prefix = serializers.CharField(allow_blank=True)
    folders = serializers.ListField(child=serializers.CharField())
    objects = ObjectSerializer(many=True)
    next_token = serializers.CharField(allow_null=True)


class UploadSerializer(serializers.Serializer):
    prefix = serializers.CharField(max_length=1024, help_text="Folder to create, e.g. models/m/")
    files = serializers.ListField(child=serializers.FileField(), required=False)
    paths = serializers.ListField(
        child=serializers.CharField(max_length=1024),
        required=False,
        help_text="Each file's path relative to the folder, in the order of files.",
    )
    zip = serializers.FileField(required=False, help_text="Or one zip of the folder.")


class UploadResultSerializer(serializers.Serializer):
    bucket = serializers.CharField()
    prefix = serializers.CharField()
    address = serializers.CharField()
    files = ObjectSerializer(many=True)


# --- viewsets -------------------------------------------------------------------------------------
@extend_schema(tags=["model repository"])
class RegionViewSet(mixins.ListModelMixin, ScopedViewSet):
    """Regions (operators manage them in the admin)."""

    serializer_class = RegionSerializer
    queryset = Region.objects.none()
    pagination_class = None
    required_actions = {"list": "ems:DescribeRegions"}

    def scoped(self, actor):
        return selectors.regions()


@extend_schema(tags=["model repository"])
class RuntimeViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, ScopedViewSet
):
    """The five public runtimes and the tenant's custom runtimes (create: custom only)."""

    serializer_class = RuntimeSerializer
    queryset = RuntimeEnvironment.objects.none()
    required_actions = {
        "list": "ems:DescribeRuntimes",
        "retrieve": "ems:DescribeRuntimes",
        "create": "ems:CreateRuntime",
        "destroy": "ems:DeleteRuntime",
    }

    def scoped(self, actor):
        return selectors.runtimes(actor=actor)

    def create(self, request, *args, **kwargs):
        data = RuntimeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = {k: v for k, v in data.validated_data.items() if k != "is_public"}
        runtime = services.runtime_create(actor=self.actor(), **fields)
        return Response(RuntimeSerializer(runtime).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.runtime_delete(actor=self.actor(), runtime=instance)


@extend_schema(tags=["model repository"])
class ModelConfigViewSet(
    StorageErrorsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    ScopedViewSet,
):
    """Model service configs with their versions. Versions are created, never updated."""

    serializer_class = ConfigSerializer
    queryset = ModelConfig.objects.none()
    required_actions = {
        "list": "ems:DescribeModelConfigs",
        "retrieve": "ems:DescribeModelConfig",
        "create": "ems:CreateModelConfig",
        "destroy": "ems:DeleteModelConfig",
        "versions": {
            "GET": "ems:DescribeModelConfigVersions",
            "POST": "ems:CreateModelConfigVersion",
        },
        "version_detail": {
            "GET": "ems:DescribeModelConfigVersions",
            "DELETE": "ems:DeleteModelConfigVersion",
        },
    }

    def scoped(self, actor):
        # Rows are scoped with the read action: a reader who may not write gets 403, not 404.
        return selectors.model_configs(actor=actor, action="ems:DescribeModelConfig")

    @extend_schema(request=ConfigCreateSerializer, responses={201: ConfigSerializer})
    def create(self, request, *args, **kwargs):
        data = ConfigCreateSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        config = services.model_config_create(actor=self.actor(), **data.validated_data)
        config = get_object_or_404(self.get_queryset(), pk=config.pk)
        return Response(ConfigSerializer(config).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.model_config_delete(actor=self.actor(), config=instance)

    @extend_schema(responses=VersionSerializer(many=True), methods=["GET"])
    @extend_schema(
        request=FolderSourceSerializer, responses={201: VersionSerializer}, methods=["POST"]
    )
    # a config's versions are listed whole (not paginated): the schema says so too
    @action(detail=True, methods=["get", "post"], url_path="versions", pagination_class=None)
    def versions(self, request, pk=None, **kwargs):
        config = self.get_object()
        if request.method == "GET":
            rows = selectors.versions(actor=self.actor(), config=config)
            return Response(VersionSerializer(rows, many=True).data)
        data = FolderSourceSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        version = services.model_config_version_create(
            actor=self.actor(), config=config, **data.validated_data
        )
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={200: VersionSerializer, 204: None},
        parameters=[OpenApiParameter("number", OpenApiTypes.INT, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["get", "delete"], url_path=r"versions/(?P<number>[0-9]+)")
    def version_detail(self, request, pk=None, number=None, **kwargs):
        config = self.get_object()
        version = get_object_or_404(
            selectors.versions(actor=self.actor(), config=config), number=int(number)
        )
        if request.method == "DELETE":
            services.model_config_version_delete(actor=self.actor(), version=version)
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(VersionSerializer(version).data)


@extend_schema(tags=["model repository"])
class BucketViewSet(StorageErrorsMixin, ScopedViewSet):
    """The tenant's buckets (``<name>-<app_id>``): list, create, browse a folder, upload."""

    serializer_class = BucketSerializer
    pagination_class = None  # a tenant's buckets are listed whole: the schema says a plain list
    lookup_field = "bucket"
    lookup_value_regex = "[a-z0-9][a-z0-9-]{1,62}"
    required_actions = {
        "list": "storage:ListBuckets",
        "create": "storage:CreateBucket",
        "objects": "storage:ListObjects",
        "upload": "storage:PutObject",
        "download": "storage:GetObject",
    }

    def get_queryset(self):  # buckets are not rows; schema generation only
        return Region.objects.none()

    def get_object(self):
        """The tenant's bucket named in the URL, checked for the action (403), then asked of the
        store: another tenant's or a missing bucket is a 404 (``StorageErrorsMixin``)."""
        cached = getattr(self, "_door_object", None)
        if cached is None:
            cached = self._door_object = selectors.bucket_info(
                actor=self.actor(), bucket=self.kwargs["bucket"], action=required_action(self)
            )
        return cached

    @extend_schema(responses=BucketSerializer(many=True))
    def list(self, request, *args, **kwargs):
        rows = selectors.buckets(actor=self.actor())
        return Response(BucketSerializer(rows, many=True).data)

    @extend_schema(request=BucketCreateSerializer, responses={201: BucketSerializer})
    def create(self, request, *args, **kwargs):
        data = BucketCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        info = services.bucket_create(actor=self.actor(), **data.validated_data)
        return Response(BucketSerializer(info).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses=ObjectPageSerializer,
        parameters=[
            OpenApiParameter("prefix", OpenApiTypes.STR, description="Folder, e.g. models/"),
            OpenApiParameter("token", OpenApiTypes.STR, description="next_token of a page"),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
    )
    @action(detail=True, methods=["get"])
    def objects(self, request, bucket=None, **kwargs):
        prefix = request.query_params.get("prefix", "")
        try:
            page_size = int(request.query_params.get("page_size", 200))
        except ValueError:
            page_size = 200
        page = selectors.bucket_objects(
            actor=self.actor(),
            bucket=bucket,
            prefix=prefix,
            token=request.query_params.get("token"),
            page_size=page_size,
        )
        body = {
            "bucket": bucket,
            "prefix": prefix,
            "folders": page.folders,
            "objects": page.objects,
            "next_token": page.next_token,
        }
        return Response(ObjectPageSerializer(body).data)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer}, responses={201: UploadResultSerializer}
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser])
    def upload(self, request, bucket=None, **kwargs):
        # Another tenant's bucket was a 404 (ScopedViewSet.initial) before a byte of the body.
        too_big = upload_too_big(request)
        if too_big:
            return Response({"detail": too_big}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        data = UploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = run_upload(self.actor(), bucket, data.validated_data)
        return Response(UploadResultSerializer(result).data, status=status.HTTP_201_CREATED)

    def perform_content_negotiation(self, request, force=False):
        # a download answers with the file's own type, whatever the client's Accept says
        return super().perform_content_negotiation(request, force or self.action == "download")

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter(
                "key", OpenApiTypes.STR, required=True, description="The file, e.g. out/a.jsonl"
            )
        ],
    )
    @action(detail=True, methods=["get"])
    def download(self, request, bucket=None, **kwargs):
        """Streams one file as an attachment (Content-Length, Content-Type from its name)."""
        info, stream = selectors.object_for_download(
            actor=self.actor(), bucket=bucket, key=request.query_params.get("key", "")
        )
        return object_response(info, stream)


def upload_too_big(request) -> str | None:
    """Checked on the declared length before the body is read: no byte is parsed when over."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    # Multipart framing adds a little; allow 1 MiB of it beyond the files' limit.
    if length > settings.EMS_UPLOAD_MAX_BYTES + (1 << 20):
        return f"The upload is {length} bytes; the limit is {settings.EMS_UPLOAD_MAX_BYTES}."
    return None


def run_upload(actor, bucket: str, data: dict) -> dict:
    """Shared by the API and the upload page: a zip, or files with their relative paths."""
    prefix = data.get("prefix", "")
    if data.get("zip"):
        archive = data["zip"]
        return services.zip_upload(
            actor=actor, bucket=bucket, prefix=prefix, stream=archive, size=archive.size
        )
    files = data.get("files") or []
    paths = data.get("paths") or [f.name for f in files]
    if len(paths) != len(files):
        raise UploadRefused(f"{len(files)} files were sent with {len(paths)} paths.")
    uploaded = [UploadedFile(p, f, f.size) for p, f in zip(paths, files, strict=True)]
    return services.files_upload(actor=actor, bucket=bucket, prefix=prefix, files=uploaded)


def register(router) -> None:
    router.register("regions", RegionViewSet, basename="region")
    router.register("runtimes", RuntimeViewSet, basename="runtime")
    router.register("model-configs", ModelConfigViewSet, basename="model-config")
    router.register("buckets", BucketViewSet, basename="bucket")

"""REST API of the billing app (amounts are decimal strings): prices, usage, bills and their
exports, the budget (with sub-account quota limits), and a dedicated group's purchases."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response

from accounts.api.views import ScopedViewSet
from billing import bills, exports, selectors, services
from billing.models import Bill, Budget, Price, Purchase, UsageRecord


class PriceSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.name", read_only=True)
    quota_type = serializers.CharField(read_only=True, help_text="cpu or gpu")
    unit_price_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6)

    class Meta:
        model = Price
        fields = ["region", "quota_type", "unit_price_per_hour", "currency", "effective_from"]


class UsageSerializer(serializers.ModelSerializer):
    service_id = serializers.CharField(source="service.service_id")
    instance_id = serializers.CharField(source="instance.instance_id")
    unit_price_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6)
    amount = serializers.DecimalField(max_digits=20, decimal_places=10)

    class Meta:
        model = UsageRecord
        # the API's usage rows are the export's documented columns, plus the price segments
        fields = [*exports.USAGE_COLUMNS, "segments"]


class BillLineSerializer(serializers.Serializer):
    kind = serializers.CharField()
    service_id = serializers.CharField(allow_null=True)
    purchase_id = serializers.IntegerField(allow_null=True)
    description = serializers.CharField()
    seconds = serializers.IntegerField()
    amount = serializers.DecimalField(max_digits=20, decimal_places=10)


class BillSerializer(serializers.Serializer):
    month = serializers.CharField()
    status = serializers.CharField(help_text="open (month to date) or final")
    currency = serializers.CharField()
    total = serializers.DecimalField(max_digits=16, decimal_places=2)
    lines = BillLineSerializer(many=True, required=False)


class ExportSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="Short-lived download link (for a browser session).")
    api_url = serializers.CharField(
        allow_null=True,
        help_text="The same file over the API, with an API key (`bills/exports/{token}/`); "
        "null where `url` is a presigned object-storage link that needs no login.",
    )
    expires_at = serializers.DateTimeField()
    format = serializers.CharField()
    kind = serializers.CharField()


class QuotaLimitSerializer(serializers.Serializer):
    member = serializers.IntegerField(help_text="Id of a sub-account (membership).")
    max_quota_count = serializers.IntegerField(min_value=0)


# GET budget/ answers one object (the list route of a singleton): never an array or a page
@extend_schema_serializer(many=False)
class BudgetSerializer(serializers.Serializer):
    monthly_amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)
    currency = serializers.CharField(read_only=True)
    thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100), required=False
    )
    stop_at_limit = serializers.BooleanField(default=False)
    # empty means "no email": not "format: email" in the schema, checked when given
    email = serializers.CharField(required=False, allow_blank=True, default="", max_length=254)
    quota_limits = QuotaLimitSerializer(many=True, required=False)
    month_to_date = serializers.DecimalField(max_digits=16, decimal_places=2, read_only=True)

    def validate_email(self, value: str) -> str:
        if value:  # a validator on the field would make the schema say "format: email"
            EmailValidator()(value)
        return value


class PurchaseSerializer(serializers.ModelSerializer):
    group = serializers.IntegerField(source="group_id", read_only=True)
    price = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Purchase
        fields = [
            "id",
            "group",
            "nodes",
            "cores_per_node",
            "memory_gib_per_node",
            "gpus_per_node",
            "months",
            "price",
            "currency",
            "starts_at",
            "ends_at",
            "auto_renew",
            "renewal_of",
            "status",
        ]
        read_only_fields = [f for f in fields if f != "auto_renew"]

    def get_status(self, purchase) -> str:
        from django.utils import timezone

        now = timezone.now()
        if purchase.starts_at > now:
            return "upcoming"
        if purchase.ends_at > now:
            return "active"
        return "renewed" if hasattr(purchase, "renewal") else "expired"


class AutoRenewSerializer(serializers.Serializer):
    auto_renew = serializers.BooleanField()


class RenewSerializer(serializers.Serializer):
    months = serializers.IntegerField(min_value=1, max_value=36)


class PriceViewSet(mixins.ListModelMixin, ScopedViewSet):
    """The price list: unit price per quota unit and hour, per region, from a moment on."""

    serializer_class = PriceSerializer
    queryset = Price.objects.none()
    required_actions = {"list": "ems:DescribePrices"}

    def scoped(self, actor):
        rows = Price.objects.select_related("region").order_by(
            "region__name", "quota_type", "-effective_from"
        )
        region = self.request.query_params.get("region")
        return rows.filter(region__name=region) if region else rows


class UsageViewSet(mixins.ListModelMixin, ScopedViewSet):
    """Usage rows: one per instance and meter window."""

    serializer_class = UsageSerializer
    queryset = UsageRecord.objects.none()
    required_actions = {"list": "billing:DescribeUsage"}

    def scoped(self, actor):
        params = self.request.query_params
        month = bills.parse_month(params["month"]) if params.get("month") else None
        return selectors.usage(actor=actor, month=month, service_id=params.get("service"))

    @extend_schema(
        parameters=[
            OpenApiParameter("month", str, description="YYYY-MM"),
            OpenApiParameter("service", str, description="A service id (ems-…)."),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


def _amount(value) -> str:
    return str(value.quantize(Decimal("1e-10")))


def _bill_body(view, with_lines=True) -> dict:
    """The bill as JSON-ready data (amounts as decimal strings); built by hand rather than
    through nested serializers, which cost more than the queries for 1,000 lines."""
    body = {
        "month": f"{view.month:%Y-%m}",
        "status": view.status,
        "currency": view.currency,
        "total": str(view.total),
    }
    if with_lines:
        body["lines"] = [
            {
                "kind": line["kind"],
                "service_id": line["service_id"],
                "purchase_id": line["purchase_id"],
                "description": line["description"],
                "seconds": line["seconds"],
                "amount": _amount(line["amount"]),
            }
            for line in view.lines
        ]
    return body


class JsonAnswers(BaseContentNegotiation):
    """``?format=`` names the export's file format here, not a DRF renderer: always JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class BillViewSet(ScopedViewSet):
    """Monthly bills: the open month to date and final ones; ``{YYYY-MM}`` names one."""

    content_negotiation_class = JsonAnswers
    pagination_class = None  # one row per month: the list is never long

    serializer_class = BillSerializer
    queryset = Bill.objects.none()
    lookup_field = "month"
    lookup_value_regex = r"[0-9]{4}-[0-9]{2}"
    required_actions = {
        "list": "billing:DescribeBills",
        "retrieve": "billing:DescribeBills",
        "export": "billing:ExportBill",
        "export_file": "billing:ExportBill",
    }

    def scoped(self, actor):
        return Bill.objects.for_actor(actor, "billing:DescribeBills")

    def get_object(self):
        """A month is not a row (the open month has no Bill yet): the door's object check is
        the action on this tenant's ``bill/<YYYY-MM>``, before the handler runs."""
        return self._view()

    def _view(self):
        from accounts import authz

        actor = self.actor()
        month = bills.parse_month(self.kwargs["month"])
        action = self.required_actions[self.action]
        authz.check(actor, action, authz.resource_name(actor.tenant, "bill", f"{month:%Y-%m}"))
        return actor, month

    @extend_schema(responses=BillSerializer(many=True))
    def list(self, request, *args, **kwargs):
        actor = self.actor()
        views = [bills.bill_view(actor.tenant_id, m) for m in selectors.bill_months(actor=actor)]
        return Response([_bill_body(v, False) for v in views])

    @extend_schema(responses=BillSerializer)
    def retrieve(self, request, *args, **kwargs):
        actor, month = self._view()
        return Response(_bill_body(bills.bill_view(actor.tenant_id, month)))

    @extend_schema(
        responses=ExportSerializer,
        parameters=[
            OpenApiParameter("format", str, description="csv or xlsx"),
            OpenApiParameter("kind", str, description="csv only: bill (default) or usage"),
        ],
    )
    @action(detail=True, methods=["get"])
    def export(self, request, *args, **kwargs):
        actor, month = self._view()
        params = request.query_params
        body = exports.export(
            tenant=actor.tenant,
            month=month,
            fmt=params.get("format", "csv"),
            kind=params.get("kind", "bill"),
        )
        local = "/billing/exports/" in body["url"]
        body["api_url"] = None
        if local:
            token = body["url"].rstrip("/").rsplit("/", 1)[-1]
            body["api_url"] = request.build_absolute_uri(
                reverse("bill-export-file", kwargs={"token": token})
            )
        body["url"] = request.build_absolute_uri(body["url"])
        return Response(ExportSerializer(body).data)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=False, methods=["get"], url_path=r"exports/(?P<token>[^/]+)")
    def export_file(self, request, token=None):
        """The file of an export's signed link, for API-key clients (the CLI): the link's own
        lifetime and tenant apply."""
        path, handle = exports.open_for(self.actor().tenant, token)
        return FileResponse(handle, as_attachment=True, filename=path.rsplit("/", 1)[-1])


class BudgetViewSet(ScopedViewSet):
    """The tenant's monthly budget and sub-account quota limits: GET reads, POST sets."""

    serializer_class = BudgetSerializer
    queryset = Budget.objects.none()
    required_actions = {"list": "billing:DescribeBudgets", "create": "billing:PutBudget"}

    def scoped(self, actor):
        return Budget.objects.for_actor(actor, "billing:DescribeBudgets")

    def _body(self, actor):
        budget = selectors.budget(actor=actor)
        limits = [
            {"member": q.member_id, "max_quota_count": q.max_quota_count}
            for q in selectors.quota_limits(actor=actor)
        ]
        spent = bills.round_cent(bills.month_to_date(actor.tenant_id))
        if budget is None:
            return {
                "monthly_amount": "0.00",
                "currency": "",
                "thresholds": [],
                "stop_at_limit": False,
                "email": "",
                "quota_limits": limits,
                "month_to_date": spent,
            }
        return {
            "monthly_amount": budget.monthly_amount,
            "currency": budget.currency,
            "thresholds": budget.thresholds,
            "stop_at_limit": budget.stop_at_limit,
            "email": budget.email,
            "quota_limits": limits,
            "month_to_date": spent,
        }

    @extend_schema(responses=BudgetSerializer)
    def list(self, request, *args, **kwargs):
        return Response(BudgetSerializer(self._body(self.actor())).data)

    @extend_schema(request=BudgetSerializer, responses=BudgetSerializer)
    def create(self, request, *args, **kwargs):
        form = BudgetSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data, actor = form.validated_data, self.actor()
        services.budget_set(
            actor=actor,
            monthly_amount=data["monthly_amount"],
            thresholds=data.get("thresholds"),
            stop_at_limit=data["stop_at_limit"],
            email=data.get("email", ""),
            quota_limits=[dict(x) for x in data["quota_limits"]]
            if "quota_limits" in data
            else None,
        )
        return Response(BudgetSerializer(self._body(actor)).data)


class PurchaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """A dedicated group's purchases. POST renews (the next period, same spec and monthly
    price); PATCH a purchase sets ``auto_renew``."""

    serializer_class = PurchaseSerializer
    queryset = Purchase.objects.none()
    required_actions = {
        "list": "billing:DescribePurchases",
        "retrieve": "billing:DescribePurchases",
        "create": "billing:RenewPurchase",
        "partial_update": "billing:RenewPurchase",
    }

    def group(self, actor):
        from serving import selectors as serving_selectors

        rows = serving_selectors.resource_groups(actor=actor).filter(kind="dedicated")
        return get_object_or_404(rows, pk=self.kwargs["group_pk"])

    def scoped(self, actor):
        try:
            return selectors.purchases(actor=actor, group=self.group(actor))
        except (ValueError, DjangoValidationError):
            raise Http404 from None

    @extend_schema(request=RenewSerializer, responses={201: PurchaseSerializer})
    def create(self, request, *args, **kwargs):
        actor = self.actor()
        group = self.group(actor)
        form = RenewSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        purchase = services.purchase_renew(
            actor=actor, group=group, months=form.validated_data["months"]
        )
        return Response(PurchaseSerializer(purchase).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AutoRenewSerializer, responses=PurchaseSerializer)
    def partial_update(self, request, *args, **kwargs):
        purchase = self.get_object()
        form = AutoRenewSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        purchase = services.purchase_set_auto_renew(
            actor=self.actor(), purchase=purchase, auto_renew=form.validated_data["auto_renew"]
        )
        return Response(PurchaseSerializer(purchase).data)


def register(router) -> None:
    router.register("prices", PriceViewSet, basename="price")
    router.register("usage", UsageViewSet, basename="usage")
    router.register("bills", BillViewSet, basename="bill")
    router.register("budget", BudgetViewSet, basename="budget")
    router.register(
        r"resource-groups/(?P<group_pk>[0-9]+)/purchases", PurchaseViewSet, basename="purchase"
    )

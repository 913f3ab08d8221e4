"""The operator admin of billing: prices (added through ``price_set``, never edited), purchases
(through ``purchase_create``), bills (read-only; adjustments and exports as actions), usage."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect

from billing import exports, services
from billing.models import Bill, BillingEvent, BillLine, Budget, Price, Purchase, UsageRecord


class PriceForm(forms.ModelForm):
    class Meta:
        model = Price
        fields = ["region", "quota_type", "unit_price_per_hour", "currency", "effective_from"]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    form = PriceForm
    list_display = ["region", "quota_type", "unit_price_per_hour", "currency", "effective_from"]
    list_filter = ["region", "quota_type"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # a change is a new row with a later effective_from

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            row = services.price_set(
                operator=request.user,
                region=data["region"],
                quota_type=data["quota_type"],
                unit_price_per_hour=data["unit_price_per_hour"],
                currency=data["currency"],
                effective_from=data["effective_from"],
            )
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from None
        obj.pk = row.pk

    def log_addition(self, request, obj, message):
        return None  # price_set wrote the admin log entry


class PurchaseForm(forms.ModelForm):
    class Meta:
        model = Purchase
        fields = [
            "group",
            "nodes",
            "cores_per_node",
            "memory_gib_per_node",
            "gpus_per_node",
            "months",
            "price",
            "starts_at",
            "auto_renew",
        ]


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin):
    form = PurchaseForm
    list_display = ["group", "tenant", "months", "price", "starts_at", "ends_at", "auto_renew"]
    list_filter = ["auto_renew"]
    search_fields = ["group__name", "tenant__app_id"]

    def has_change_permission(self, request, obj=None):
        return obj is None

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        row = services.purchase_create(
            operator=request.user,
            group=data["group"],
            months=data["months"],
            price=data["price"],
            starts_at=data["starts_at"],
            cores_per_node=data["cores_per_node"],
            memory_gib_per_node=data["memory_gib_per_node"],
            gpus_per_node=data["gpus_per_node"],
            nodes=data["nodes"],
            auto_renew=data["auto_renew"],
        )
        obj.pk = row.pk


class BillLineInline(admin.TabularInline):
    model = BillLine
    extra = 0
    can_delete = False
    fields = ["kind", "service", "purchase", "description", "seconds", "amount", "created_by"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class AdjustForm(forms.Form):
    amount = forms.DecimalField(max_digits=14, decimal_places=2)
    description = forms.CharField(max_length=300)


@admin.register(Bill)
class BillAdmin(admin.ModelAdmin):
    list_display = ["tenant", "month", "currency", "finalized_at"]
    list_filter = ["month"]
    search_fields = ["tenant__app_id", "tenant__name"]
    inlines = [BillLineInline]
    actions = ["export_csv", "export_xlsx"]
    readonly_fields = ["tenant", "month", "currency", "finalized_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _export(self, request, queryset, fmt):
        for bill in queryset.select_related("tenant")[:20]:
            link = exports.export(tenant=bill.tenant, month=bill.month, fmt=fmt)
            messages.info(request, f"{bill}: {request.build_absolute_uri(link['url'])}")

    @admin.action(description="Export as CSV (short-lived links)")
    def export_csv(self, request, queryset):
        self._export(request, queryset, "csv")

    @admin.action(description="Export as XLSX (short-lived links)")
    def export_xlsx(self, request, queryset):
        self._export(request, queryset, "xlsx")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        form = AdjustForm(request.POST or None, prefix="adjust")
        if request.method == "POST" and "adjust-amount" in request.POST and form.is_valid():
            bill = self.get_object(request, object_id)
            try:
                services.bill_adjust(
                    operator=request.user,
                    bill=bill,
                    amount=form.cleaned_data["amount"],
                    description=form.cleaned_data["description"],
                )
                messages.success(request, "Adjustment line added.")
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            return redirect(request.path)
        extra_context = {**(extra_context or {}), "adjust_form": form}
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["instance", "window_start", "seconds", "quota_type", "quota_count", "amount"]
    list_filter = ["quota_type"]
    search_fields = ["instance__instance_id", "service__service_id"]
    date_hierarchy = "window_start"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["tenant", "monthly_amount", "currency", "stop_at_limit", "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(BillingEvent)
class BillingEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "kind", "level", "message"]
    list_filter = ["kind", "level"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

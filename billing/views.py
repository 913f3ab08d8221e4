"""Billing pages: the month's bill (to date or final) with a per-service breakdown, the daily
cost chart (a table with inline bars), purchases and their notices, the budget form, events,
and the export links (short-lived)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts import authz
from accounts.door import page
from billing import bills, exports, selectors, services
from billing.forms import BudgetForm
from billing.models import Purchase


def _actor(request, action: str, ident: str = "*", kind: str = "bill"):
    actor = getattr(request, "actor", None)
    if actor is None:
        raise PermissionDenied("You have no active membership in an account.")
    authz.check(actor, action, authz.resource_name(actor.tenant, kind, ident))
    return actor


def _month(request, text=None):
    text = text or request.GET.get("month")
    if not text:
        return bills.month_start(bills.timezone.now()).date()
    try:
        return bills.parse_month(text)
    except ValidationError:
        raise Http404("No such month.") from None


@page("GET", actions="billing:DescribeBills")
def overview(request):
    actor = _actor(request, "billing:DescribeBills")
    month = _month(request)
    view = bills.bill_view(actor.tenant_id, month)
    daily = bills.daily_costs(actor.tenant_id, month)
    peak = max((amount for _, amount in daily), default=Decimal(0)) or Decimal(1)
    chart = [
        {"day": day, "amount": bills.round_cent(amount), "percent": int(amount * 100 / peak)}
        for day, amount in daily
    ]
    budget = (
        selectors.budget(actor=actor)
        if authz.is_allowed(
            actor, "billing:DescribeBudgets", authz.resource_name(actor.tenant, "budget")
        )
        else None
    )
    used = None
    if budget is not None and budget.monthly_amount > 0:
        current = bills.month_start(bills.timezone.now()).date()
        spent = (
            sum((x["amount"] for x in view.lines), Decimal(0))
            if month == current
            else bills.month_to_date(actor.tenant_id)
        )
        used = int(spent * 100 / budget.monthly_amount)
    # one reverse for all lines: a thousand {% url %} tags cost more than the rest of the page
    href = reverse("serving:service-detail", args=["ems-00000000"]).replace("ems-00000000", "{}")
    lines = [
        {
            **line,
            "href": href.format(line["service_id"]) if line["service_id"] else "",
            "amount_text": str(line["amount"].quantize(Decimal("0.0001"))),
        }
        for line in view.lines
    ]
    purchases = (
        Purchase.objects.for_actor(actor, "billing:DescribePurchases")
        .select_related("group")
        .order_by("-ends_at")[:20]
    )
    context = {
        "month": month,
        "bill": view,
        "lines": lines,
        "months": selectors.bill_months(actor=actor),
        "chart": chart,
        "budget": budget,
        "budget_used": used,
        "budget_form": BudgetForm(instance=budget),
        "purchases": purchases,
        "events": selectors.events(actor=actor),
    }
    return render(request, "billing/overview.html", context)


@page("GET", actions="billing:ExportBill")
def export(request, month: str, fmt: str):
    month = _month(request, month)
    actor = _actor(request, "billing:ExportBill", f"{month:%Y-%m}")
    try:
        link = exports.export(
            tenant=actor.tenant, month=month, fmt=fmt, kind=request.GET.get("kind", "bill")
        )
    except ValidationError:
        raise Http404("No such export format.") from None
    return redirect(link["url"])


@page("GET", actions="billing:ExportBill")
def export_download(request, token: str):
    actor = _actor(request, "billing:ExportBill")
    path, handle = exports.open_for(actor.tenant, token)
    return FileResponse(handle, as_attachment=True, filename=path.rsplit("/", 1)[-1])


@page("POST", actions="billing:PutBudget")
def budget_update(request):
    actor = _actor(request, "billing:PutBudget", kind="budget")
    form = BudgetForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.budget_set(
                actor=actor,
                monthly_amount=data["monthly_amount"],
                thresholds=data["thresholds"],
                stop_at_limit=data["stop_at_limit"],
                email=data["email"],
            )
            messages.success(request, "Budget saved.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
    return redirect("billing:overview")


overview.http_methods = ("GET",)
export.http_methods = ("GET",)
export_download.http_methods = ("GET",)
budget_update.http_methods = ("POST",)

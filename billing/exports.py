"""Exports of a month: the bill and its usage rows as CSV or XLSX (openpyxl), written through
the ``billing_exports`` storage (django-storages: a local folder by default, an S3 bucket in
production) and handed out as a short-lived link (``EMS_BILLING_EXPORT_LINK_SECONDS``): a
presigned URL on S3, a signed portal URL for the local folder.

Columns (docs/billing.md):

- bill: ``month, kind, service_id, purchase_id, description, seconds, amount, currency``; the
  last row has kind ``total`` and the bill's total (rounded to the cent); every other amount is
  exact (up to 10 decimals) and the lines sum to the total before rounding.
- usage: ``service_id, instance_id, window_start, window_end, seconds, quota_type,
  quota_count, unit_price_per_hour, amount, currency`` (times in ISO 8601 UTC).
"""

from __future__ import annotations

import csv
import io
import secrets
import tempfile
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import storages
from django.urls import reverse
from django.utils import timezone

from billing import bills
from billing.models import UsageRecord

BILL_COLUMNS = [
    "month",
    "kind",
    "service_id",
    "purchase_id",
    "description",
    "seconds",
    "amount",
    "currency",
]
USAGE_COLUMNS = [
    "service_id",
    "instance_id",
    "window_start",
    "window_end",
    "seconds",
    "quota_type",
    "quota_count",
    "unit_price_per_hour",
    "amount",
    "currency",
]
FORMATS = ("csv", "xlsx")
KINDS = ("bill", "usage")
SALT = "billing.export"


def _plain(amount) -> str:
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def bill_rows(tenant_id, month) -> list[list]:
    view = bills.bill_view(tenant_id, month)
    label = f"{month:%Y-%m}"
    rows = [
        [
            label,
            line["kind"],
            line["service_id"] or "",
            line["purchase_id"] or "",
            line["description"],
            line["seconds"],
            _plain(line["amount"]),
            view.currency,
        ]
        for line in view.lines
    ]
    rows.append([label, "total", "", "", f"{view.status} bill", "", str(view.total), view.currency])
    return rows


def usage_rows(tenant_id, month):
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = bills.next_month(start)
    rows = (
        UsageRecord.objects.filter(
            tenant_id=tenant_id, window_start__gte=start, window_start__lt=end
        )
        .order_by("window_start", "instance_id")
        .values_list(
            "service__service_id",
            "instance__instance_id",
            "window_start",
            "window_end",
            "seconds",
            "quota_type",
            "quota_count",
            "unit_price_per_hour",
            "amount",
            "currency",
        )
    )
    for sid, iid, ws, we, seconds, qt, qc, price, amount, currency in rows.iterator(2000):
        yield [sid, iid, ws.isoformat(), we.isoformat(), seconds, qt, qc, _plain(price),
               _plain(amount), currency]  # fmt: skip


def write_csv(out, columns, rows) -> None:
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(row)


def write_xlsx(path, tenant_id, month) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for title, columns, rows in (
        ("Bill", BILL_COLUMNS, bill_rows(tenant_id, month)),
        ("Usage", USAGE_COLUMNS, usage_rows(tenant_id, month)),
    ):
        sheet = book.create_sheet(title)
        sheet.append(columns)
        for row in rows:
            sheet.append(row)  # amounts stay text: a float cell would lose the exact decimals
    book.save(path)


def export(*, tenant, month, fmt: str, kind: str = "bill") -> dict:
    """Write the export file and return ``{"url", "expires_at", "format", "kind", "path"}``."""
    if fmt not in FORMATS:
        raise ValidationError({"format": f"The format is csv or xlsx, not {fmt!r}."})
    if kind not in KINDS:
        raise ValidationError({"kind": f"The kind is bill or usage, not {kind!r}."})
    storage = storages["billing_exports"]
    name = f"{kind}-{month:%Y-%m}" if fmt == "csv" else f"bill-usage-{month:%Y-%m}"
    path = f"tenant-{tenant.app_id}/{month:%Y-%m}/{name}-{secrets.token_hex(8)}.{fmt}"
    with tempfile.NamedTemporaryFile(suffix=f".{fmt}") as tmp:
        if fmt == "csv":
            text = io.TextIOWrapper(tmp, encoding="utf-8", newline="")
            rows = bill_rows(tenant.pk, month) if kind == "bill" else usage_rows(tenant.pk, month)
            write_csv(text, BILL_COLUMNS if kind == "bill" else USAGE_COLUMNS, rows)
            text.flush()
            text.detach()
        else:
            write_xlsx(tmp.name, tenant.pk, month)
        tmp.seek(0)
        saved = storage.save(path, File(tmp, name=path))
    seconds = settings.EMS_BILLING_EXPORT_LINK_SECONDS
    return {
        "url": link(saved),
        "expires_at": timezone.now() + timedelta(seconds=seconds),
        "format": fmt,
        "kind": kind if fmt == "csv" else "bill+usage",
        "path": saved,
    }


def link(path: str) -> str:
    if settings.EMS_BILLING_EXPORT_STORAGE == "s3":
        return storages["billing_exports"].url(path)  # presigned, querystring_expire
    token = signing.dumps(path, salt=SALT)  # url-safe; carries its time for max_age
    return reverse("billing:export-download", args=[token])


def open_for(tenant, token: str):
    """``(path, handle)`` of a signed local link that belongs to ``tenant``; ``Http404`` for a
    forged, stale or another tenant's one (the same answer for all three)."""
    from django.http import Http404

    gone = "This export link is unknown or has expired; export again."
    try:
        path, handle = open_signed(token)
    except (signing.BadSignature, FileNotFoundError):
        raise Http404(gone) from None
    if not path.startswith(f"tenant-{tenant.app_id}/"):
        handle.close()
        raise Http404(gone)
    return path, handle


def open_signed(token: str):
    """The file behind a signed local link; raises ``signing.BadSignature`` (or
    ``SignatureExpired``) for a forged or stale one."""
    path = signing.loads(token, salt=SALT, max_age=settings.EMS_BILLING_EXPORT_LINK_SECONDS)
    return path, storages["billing_exports"].open(path, "rb")

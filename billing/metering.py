"""The meter: closes fixed windows behind a watermark and writes one usage row per
(instance, window).

**Billed span** (the one rule every page and export follows): an instance on a public group is
billed from its ``started_at`` to its ``stopped_at`` (the backend's own records: it holds its
quota for that whole time, whether or not its model is loaded yet), both truncated to the whole
second; an instance that never started accrues nothing; a running one accrues up to the end of
the window being closed. Dedicated groups accrue nothing (their purchase is the bill line).

**Exactly once.** ``close_window`` claims the window by moving the watermark with a conditional
UPDATE (``watermark = window_start`` → ``window_end``) *in the same transaction* that writes the
window's rows and the daily sums: a worker killed half-way rolls everything back (the next run
closes the window again: no gap), and of two runs racing on PostgreSQL the second's UPDATE waits
for the first's commit, then matches nothing (no double). The rows are written with an upsert
on their unique key (instance, window_start).

**Late facts.** Windows close ``EMS_METERING_LAG_SECONDS`` behind the clock so the reconciler has
recorded starts and stops. Beyond that, ``repair`` (every run) fixes rows billed past a stop that
was recorded later (compare-and-swap per row, daily sums moved by the difference) and backfills
instances whose start was recorded after its window closed — within
``EMS_METERING_REPAIR_SECONDS`` and never in a month whose bill is final.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.models import MeterState, Price, UsageDaily, UsageRecord

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AMOUNT_PLACES = Decimal("1e-10")
HOUR = Decimal(3600)
BATCH = 1000
METER = "usage"
ROW_FIELDS = [
    "tenant_id",
    "service_id",
    "window_end",
    "seconds",
    "quota_type",
    "quota_count",
    "unit_price_per_hour",
    "price_seconds",
    "amount",
    "currency",
    "segments",
    "billed_until",
    "recorded_at",
]


def window_length() -> int:
    return settings.EMS_METERING_WINDOW_SECONDS


def whole_second(moment: datetime | None) -> datetime | None:
    return moment.replace(microsecond=0) if moment is not None else None


def floor_window(moment: datetime, length: int | None = None) -> datetime:
    length = length or window_length()
    delta = moment - EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return EPOCH + timedelta(seconds=seconds - seconds % length)


def to_amount(price_seconds: Decimal) -> Decimal:
    return (price_seconds / HOUR).quantize(AMOUNT_PLACES, rounding=ROUND_HALF_UP)


class PriceBook:
    """Every price row, by (region, quota type), ascending by ``effective_from`` (a handful of
    rows: one query per run). Time before a pair's first price is priced at 0."""

    def __init__(self, rows=None):
        if rows is None:
            rows = Price.objects.order_by("effective_from").values_list(
                "region_id", "quota_type", "effective_from", "unit_price_per_hour", "currency"
            )
        self.lines: dict[tuple, list] = defaultdict(list)
        for region_id, quota_type, effective_from, price, currency in rows:
            self.lines[(region_id, quota_type)].append((effective_from, price, currency))
        self.starts = {key: [row[0] for row in value] for key, value in self.lines.items()}

    def segments(self, region_id, quota_type, start: datetime, end: datetime) -> list[tuple]:
        """``[(from, to, unit price, currency)]`` covering ``[start, end)``."""
        rows = self.lines.get((region_id, quota_type), [])
        starts = self.starts.get((region_id, quota_type), [])
        index = max(bisect_right(starts, start) - 1, 0)
        out = []
        if not rows or rows[0][0] > start:
            first = rows[0][0] if rows else end
            out.append((start, min(first, end), Decimal(0), settings.EMS_BILLING_CURRENCY))
        for position in range(index, len(rows)):
            effective_from, price, currency = rows[position]
            following = rows[position + 1][0] if position + 1 < len(rows) else end
            seg_start, seg_end = max(start, effective_from), min(end, following)
            if seg_start < seg_end:
                out.append((seg_start, seg_end, price, currency))
            if following >= end:
                break
        return out


def compute(row: dict, window_start: datetime, window_end: datetime, book: PriceBook):
    """The usage row of one instance (a dict of its billing facts) in one window, or None."""
    started = whole_second(row["started_at"])
    stopped = whole_second(row["stopped_at"])
    if started is None:
        return None
    start = max(window_start, started)
    end = window_end if stopped is None else min(window_end, stopped)
    if end <= start:
        return None
    count = row["quota_count"]
    segments = book.segments(row["region_id"], row["quota_type"], start, end)
    price_seconds = Decimal(0)
    parts = []
    for seg_start, seg_end, price, _currency in segments:
        seconds = int((seg_end - seg_start).total_seconds())
        price_seconds += price * count * seconds
        parts.append(
            {
                "from": seg_start.isoformat(),
                "to": seg_end.isoformat(),
                "unit_price_per_hour": str(price),
                "seconds": seconds,
            }
        )
    return {
        "tenant_id": row["tenant_id"],
        "instance_id": row["pk"],
        "service_id": row["service_id"],
        "window_start": window_start,
        "window_end": window_end,
        "seconds": int((end - start).total_seconds()),
        "quota_type": row["quota_type"],
        "quota_count": count,
        "unit_price_per_hour": segments[0][2],
        "price_seconds": price_seconds,
        "amount": to_amount(price_seconds),
        "currency": segments[0][3],
        "segments": parts if len(parts) > 1 else [],
        "billed_until": end,
    }


def _instances():
    from serving.models import Instance

    return Instance.objects.filter(revision__quota_count__gt=0, started_at__isnull=False)


INSTANCE_VALUES = (
    "pk",
    "tenant_id",
    "service_id",
    "started_at",
    "stopped_at",
    "quota_type",
    "quota_count",
    "region_id",
)


def _values(queryset):
    return queryset.annotate(
        quota_type=F("revision__quota_type"),
        quota_count=F("revision__quota_count"),
        region_id=F("service__region_id"),
    ).values(*INSTANCE_VALUES)


def _add_daily(deltas: dict) -> None:
    """Move the daily sums by ``{(tenant, service, day): [seconds, amount]}`` with one upsert
    (``INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x``; PostgreSQL and SQLite)."""
    items = [(k, v) for k, v in deltas.items() if v[0] or v[1]]
    table = UsageDaily._meta.db_table
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
        params = []
        for (tenant_id, service_id, day), (seconds, amount) in chunk:
            params += [tenant_id, service_id, day, seconds, amount]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, service_id, day, seconds, amount) "  # noqa: S608
                f"VALUES {values} ON CONFLICT (service_id, day) DO UPDATE SET "
                f"seconds = {table}.seconds + excluded.seconds, "
                f"amount = {table}.amount + excluded.amount",
                params,
            )


def _delta(deltas, row, sign=1) -> None:
    key = (row["tenant_id"], row["service_id"], row["window_start"].date())
    entry = deltas.setdefault(key, [0, Decimal(0)])
    entry[0] += sign * row["seconds"]
    entry[1] += sign * row["amount"]


def _state(now: datetime) -> MeterState:
    state = MeterState.objects.filter(name=METER).first()
    if state is not None:
        return state
    first = _instances().order_by("started_at").values_list("started_at", flat=True).first()
    start = floor_window(min(first, now) if first else now)
    try:
        with transaction.atomic():
            return MeterState.objects.create(name=METER, watermark=start)
    except IntegrityError:  # another run created it first
        return MeterState.objects.get(name=METER)


def close_window(window_start: datetime, book: PriceBook | None = None) -> int | None:
    """Close one window: claim it, write its rows and daily sums. None when it was already
    closed (or is not next); else the number of rows written. Queries: the claim, the
    instances, the rows already there (none, normally), then two statements per 1,000 rows."""
    length = window_length()
    window_end = window_start + timedelta(seconds=length)
    book = book or PriceBook()
    now = timezone.now()
    with transaction.atomic():
        claimed = MeterState.objects.filter(name=METER, watermark=window_start).update(
            watermark=window_end, updated_at=now
        )
        if not claimed:
            return None
        facts = _values(
            _instances().filter(
                Q(stopped_at__isnull=True) | Q(stopped_at__gt=window_start),
                started_at__lt=window_end,
            )
        )
        rows = [r for r in (compute(f, window_start, window_end, book) for f in facts) if r]
        deltas: dict = {}
        for old in UsageRecord.objects.filter(window_start=window_start).values(
            "tenant_id", "service_id", "window_start", "seconds", "amount"
        ):
            _delta(deltas, old, -1)  # defensive: an upsert must not count a row twice
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            deltas_chunk: dict = {}
            for row in chunk:
                _delta(deltas_chunk, row)
            _upsert(chunk, now)
            for key, (seconds, amount) in deltas_chunk.items():
                entry = deltas.setdefault(key, [0, Decimal(0)])
                entry[0] += seconds
                entry[1] += amount
        _add_daily(deltas)
    return len(rows)


UPSERT_COLUMNS = [
    ("tenant_id", "bigint"),
    ("instance_id", "bigint"),
    ("service_id", "bigint"),
    ("window_start", "timestamptz"),
    ("window_end", "timestamptz"),
    ("seconds", "integer"),
    ("quota_type", "text"),
    ("quota_count", "integer"),
    ("unit_price_per_hour", "numeric"),
    ("price_seconds", "numeric"),
    ("amount", "numeric"),
    ("currency", "text"),
    ("segments", "jsonb"),
    ("billed_until", "timestamptz"),
    ("recorded_at", "timestamptz"),
]


def _upsert(rows: list[dict], now) -> None:
    """Insert-or-update rows on (instance, window_start) in one statement. On PostgreSQL the
    columns travel as 15 arrays (``unnest``), which keeps a 1,000-row batch one cheap query;
    elsewhere Django's ``bulk_create(update_conflicts=True)``."""
    if connection.vendor != "postgresql":
        UsageRecord.objects.bulk_create(
            [UsageRecord(**row, recorded_at=now) for row in rows],
            update_conflicts=True,
            unique_fields=["instance", "window_start"],
            update_fields=ROW_FIELDS,
        )
        return
    import json

    table = UsageRecord._meta.db_table
    names = [name for name, _ in UPSERT_COLUMNS]
    arrays = [[] for _ in names]
    for row in rows:
        values = {**row, "recorded_at": now, "segments": json.dumps(row["segments"])}
        for index, name in enumerate(names):
            arrays[index].append(values[name])
    unnest = ", ".join(f"%s::{kind}[]" for _, kind in UPSERT_COLUMNS)
    updates = ", ".join(
        f"{name} = excluded.{name}" for name in names if name not in ("instance_id", "window_start")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({unnest}) "  # noqa: S608
            f"ON CONFLICT (instance_id, window_start) DO UPDATE SET {updates}",
            arrays,
        )


def correction_floor(now: datetime) -> datetime:
    """Rows before this are never changed by repairs: their month's bills may be final."""
    from billing.bills import month_start

    current = month_start(now)
    previous = month_start(current - timedelta(days=1))
    delay = timedelta(seconds=settings.EMS_BILLING_FINALIZE_DELAY_SECONDS)
    return previous if now < current + delay else current


def _rewrite(old: dict, new: dict | None, deltas: dict, now) -> bool:
    """Compare-and-swap one row from ``old`` to ``new`` (None: delete it)."""
    match = UsageRecord.objects.filter(
        pk=old["pk"], seconds=old["seconds"], price_seconds=old["price_seconds"]
    )
    if new is None:
        done = match.delete()[0] == 1
    else:
        fields = {k: new[k] for k in ROW_FIELDS if k in new}
        done = match.update(**fields, recorded_at=now) == 1
    if done:
        _delta(deltas, old, -1)
        if new is not None:
            _delta(deltas, new)
    return done


def repair(now: datetime | None = None, book: PriceBook | None = None) -> int:
    """Fix rows billed past a stop recorded late, and backfill starts recorded late."""
    now = now or timezone.now()
    book = book or PriceBook()
    state = MeterState.objects.filter(name=METER).first()
    if state is None:
        return 0
    watermark = state.watermark
    floor = max(
        correction_floor(now),
        now - timedelta(seconds=settings.EMS_METERING_REPAIR_SECONDS),
    )
    fixed = 0
    # 1. rows that run past their instance's (later recorded) stop
    stopped = _instances().filter(stopped_at__gte=floor, stopped_at__lt=watermark)
    wrong = (
        UsageRecord.objects.filter(
            instance__in=stopped.values("pk"),
            window_start__gte=floor,
            billed_until__gt=F("instance__stopped_at"),
        )
        .annotate(
            started_at=F("instance__started_at"),
            stopped_at=F("instance__stopped_at"),
            region_id=F("service__region_id"),
            pk_=F("instance_id"),
        )
        .values(
            "pk",
            "pk_",
            "tenant_id",
            "service_id",
            "window_start",
            "window_end",
            "seconds",
            "price_seconds",
            "amount",
            "quota_type",
            "quota_count",
            "started_at",
            "stopped_at",
            "region_id",
        )
    )
    with transaction.atomic():
        deltas: dict = {}
        for old in wrong:
            facts = {**old, "pk": old["pk_"]}
            new = compute(facts, old["window_start"], old["window_end"], book)
            fixed += _rewrite(old, new, deltas, now)
        _add_daily(deltas)
    # 2. instances whose start was recorded after the windows it falls in were closed
    from django.db.models import Exists, OuterRef

    first_row = UsageRecord.objects.filter(
        instance=OuterRef("pk"), window_start__lte=OuterRef("started_at")
    )
    missed = _values(
        _instances()
        .filter(started_at__gte=floor, started_at__lt=watermark)
        .filter(Q(stopped_at__isnull=True) | Q(stopped_at__gt=F("started_at")))
        .exclude(Exists(first_row))
    )
    length = timedelta(seconds=window_length())
    for facts in missed:
        try:
            with transaction.atomic():
                have = set(
                    UsageRecord.objects.filter(instance_id=facts["pk"]).values_list(
                        "window_start", flat=True
                    )
                )
                deltas = {}
                rows = []
                window = floor_window(facts["started_at"])
                while window < watermark:
                    row = compute(facts, window, window + length, book)
                    if row is not None and window not in have:
                        rows.append(UsageRecord(**row, recorded_at=now))
                        _delta(deltas, row)
                    window += length
                UsageRecord.objects.bulk_create(rows, batch_size=BATCH)
                _add_daily(deltas)
                fixed += len(rows)
        except IntegrityError:  # a concurrent repair wrote them first
            continue
    return fixed


def run(now: datetime | None = None, *, max_windows: int = 1440) -> dict:
    """One meter pass: close every window that ended ``EMS_METERING_LAG_SECONDS`` ago (at most
    ``max_windows``), then repair. Safe to run concurrently and to re-run."""
    now = now or timezone.now()
    state = _state(now)
    length = timedelta(seconds=window_length())
    until = now - timedelta(seconds=settings.EMS_METERING_LAG_SECONDS)
    book = PriceBook()
    closed = rows = 0
    watermark = state.watermark
    while watermark + length <= until and closed < max_windows:
        written = close_window(watermark, book)
        if written is None:  # another run closed it: continue from the stored watermark
            watermark = MeterState.objects.get(name=METER).watermark
            continue
        closed += 1
        rows += written
        watermark += length
    repaired = repair(now, book)
    return {"windows": closed, "rows": rows, "repaired": repaired, "watermark": watermark}

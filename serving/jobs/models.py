"""Batch jobs: a config version run over object-store input, predictions written back.

A job owns a backing ``Service`` row of kind ``batch`` (same id as the job): its instances are
started, watched, swept and metered by the same reconciler, backends and meter as an online
service's, but it is never published to the gateway. The work is split into ``JobPart`` rows
(one input file × a line range); a worker claims a part with a conditional UPDATE and a lease,
writes the part's output object, and marks it done with another conditional UPDATE. When every
part of an input file is done the file's output is assembled (``serving.jobs.runner``).
"""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.scoping import TenantOwnedModel, TenantOwnedQuerySet
from serving.models import _ID_ALPHABET


def new_job_id() -> str:
    """A platform-unique job id such as ``job-7f3k2p9q`` (also its backing service's id)."""
    return "job-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class JobQuerySet(TenantOwnedQuerySet):
    pass


class Job(TenantOwnedModel):
    """One batch job. Counters (``done``, ``failed``) only move by ``F()`` updates when a part
    is marked done, exactly once per part (the conditional UPDATE of its status)."""

    WAITING, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
        "Waiting",
        "Running",
        "Succeeded",
        "Failed",
        "Cancelled",
    )
    STATUSES = [(s, s) for s in (WAITING, RUNNING, SUCCEEDED, FAILED, CANCELLED)]
    ENDED = (SUCCEEDED, FAILED, CANCELLED)

    job_id = models.CharField(max_length=16, unique=True, default=new_job_id, editable=False)
    name = models.CharField(max_length=40)
    region = models.ForeignKey("models_repo.Region", on_delete=models.PROTECT, related_name="+")
    group = models.ForeignKey(
        "serving.ResourceGroup", on_delete=models.PROTECT, related_name="jobs"
    )
    config = models.ForeignKey(
        "models_repo.ModelConfig", on_delete=models.PROTECT, related_name="jobs"
    )
    version = models.ForeignKey(
        "models_repo.ModelConfigVersion", on_delete=models.PROTECT, related_name="jobs"
    )
    service = models.OneToOneField(
        "serving.Service",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="job",
        help_text="The backing service (kind batch) whose instances run the job.",
    )
    workers = models.PositiveSmallIntegerField(default=1)
    input_url = models.CharField(max_length=1000, help_text="cos:// file or folder of input.")
    output_url = models.CharField(max_length=1000, help_text="cos:// folder of the output.")
    batch_size = models.PositiveIntegerField(default=64)
    signature_name = models.CharField(max_length=100, blank=True, default="")
    max_failed = models.PositiveIntegerField(
        default=0, help_text="Failed lines tolerated; one more fails the job."
    )
    status = models.CharField(max_length=10, choices=STATUSES, default=WAITING)
    message = models.CharField(max_length=4000, blank=True, default="")
    total = models.PositiveBigIntegerField(default=0, help_text="Input lines (items).")
    done = models.PositiveBigIntegerField(default=0, help_text="Lines written (incl. failed).")
    failed = models.PositiveBigIntegerField(default=0, help_text="Lines written as errors.")
    errors = models.JSONField(
        default=list, blank=True, help_text="A sample of failed lines: file, line, error."
    )
    created_by = models.ForeignKey(
        "accounts.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = JobQuerySet.as_manager()
    resource_kind = "job"

    class Meta:
        ordering = ["tenant_id", "-created_at"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.job_id})"

    @property
    def resource_ident(self) -> str:
        return self.job_id

    @property
    def resource_region(self) -> str:
        return self.region.name

    @property
    def is_ended(self) -> bool:
        return self.status in self.ENDED

    def progress(self, now=None) -> dict:
        """done/total, the rate (lines per second since the start) and the time left."""
        now = now or timezone.now()
        rate = None
        eta = None
        if self.started_at and self.done:
            elapsed = ((self.ended_at or now) - self.started_at).total_seconds()
            if elapsed > 0:
                rate = self.done / elapsed
                if not self.is_ended and rate > 0:
                    eta = max(0.0, (self.total - self.done) / rate)
        percent = round(100.0 * self.done / self.total, 1) if self.total else 0.0
        return {
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "percent": percent,
            "rate": round(rate, 2) if rate is not None else None,
            "eta_seconds": round(eta, 1) if eta is not None else None,
        }


class JobFile(models.Model):
    """One input file of a job and its one output file (line-aligned with it)."""

    JSONL, JSON = "jsonl", "json"
    FORMATS = [(JSONL, "JSON Lines"), (JSON, "JSON array")]
    PENDING, ASSEMBLING, ASSEMBLED, CANCELLED = "pending", "assembling", "assembled", "cancelled"
    STATES = [(s, s) for s in (PENDING, ASSEMBLING, ASSEMBLED, CANCELLED)]

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="files")
    index = models.PositiveIntegerField()
    input_key = models.CharField(max_length=1000)
    output_key = models.CharField(max_length=1000)
    format = models.CharField(max_length=5, choices=FORMATS, default=JSONL)
    lines = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=10, choices=STATES, default=PENDING)
    # assembling is claimed with a lease too: an assembler killed mid-way is taken over
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    assembled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="job_file_index"),
        ]

    def __str__(self) -> str:
        return f"{self.job.job_id} file {self.index} ({self.input_key})"


class JobPart(models.Model):
    """A line range ``[start, end)`` of one input file (for a .jsonl file also its byte range
    ``[byte_start, byte_end)``): the unit a worker claims. ``lease_until``
    is set on claim; an expired lease on a running part means its worker died, and the sweep
    puts it back to pending. The output object of a part is written whole, then the part is
    marked done with ``UPDATE … WHERE status='running' AND lease_owner=me``, so a part is
    counted once even when two workers ran it."""

    PENDING, RUNNING, DONE, CANCELLED = "pending", "running", "done", "cancelled"
    STATES = [(s, s) for s in (PENDING, RUNNING, DONE, CANCELLED)]

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="parts")
    file = models.ForeignKey(JobFile, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField(help_text="Order of the part in its file.")
    start = models.PositiveIntegerField(help_text="First line (0-based).")
    end = models.PositiveIntegerField(help_text="One past the last line.")
    # .jsonl parts: where the part's lines lie in the file, found while planning counts the
    # lines, so a worker reads only its own bytes (a ranged read) instead of the file's head
    byte_start = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    byte_end = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=10, choices=STATES, default=PENDING)
    lease_owner = models.CharField(max_length=40, blank=True, default="", editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    queued_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Last sent to the broker."
    )
    attempts = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "file_id", "index"]
        indexes = [models.Index(fields=["job", "status"])]
        constraints = [
            models.UniqueConstraint(fields=["file", "index"], name="job_part_index"),
            models.CheckConstraint(condition=Q(end__gte=models.F("start")), name="job_part_range"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} part {self.file_id}/{self.index} [{self.start},{self.end})"

    @property
    def lines(self) -> int:
        return self.end - self.start


class JobEvent(models.Model):
    """The timeline of a job: created, started, file assembled, part retried, ended."""

    INFO, WARNING, ERROR = "info", "warning", "error"
    LEVELS = [(INFO, "info"), (WARNING, "warning"), (ERROR, "error")]

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20)
    level = models.CharField(max_length=8, choices=LEVELS, default=INFO)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["job_id", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind}: {self.message[:60]}"

"""The operator admin of batch jobs: read-only rows (progress, files, parts, events) and two
actions through the same services as the API — cancel, and dispatch now (the sweep's work)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from accounts.actor import PlatformActor
from serving.jobs import services
from serving.jobs.models import Job, JobEvent, JobFile, JobPart


class JobFileInline(admin.TabularInline):
    model = JobFile
    extra = 0
    can_delete = False
    fields = ["index", "input_key", "output_key", "format", "lines", "state", "assembled_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "level", "message"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "job_id",
        "name",
        "tenant",
        "status",
        "progress_summary",
        "failed",
        "workers",
        "group",
        "created_at",
    ]
    list_filter = ["status", "region"]
    search_fields = ["job_id", "name", "tenant__app_id", "tenant__name"]
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobFileInline, JobEventInline]
    actions = ["cancel_jobs", "dispatch_now"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a job's rows are its record (and its backing service's usage)

    @admin.display(description="progress")
    def progress_summary(self, job) -> str:
        p = job.progress()
        rate = f", {p['rate']}/s" if p["rate"] else ""
        return f"{p['done']}/{p['total']} ({p['percent']}%){rate}"

    @admin.action(description="Cancel the selected jobs (their instances stop)")
    def cancel_jobs(self, request, queryset):
        cancelled = 0
        for job in queryset.select_related("tenant", "region"):
            try:
                services.job_cancel(actor=PlatformActor(job.tenant, operator=request.user), job=job)
                cancelled += 1
            except ValidationError as exc:
                messages.warning(request, f"{job.job_id}: {' '.join(exc.messages)}")
        messages.info(request, f"Cancelled {cancelled} job(s).")

    @admin.action(description="Dispatch now (re-queue expired parts, assemble, end)")
    def dispatch_now(self, request, queryset):
        from serving.jobs.tasks import job_dispatch

        for pk in queryset.values_list("pk", flat=True):
            job_dispatch.delay(pk)
        messages.info(request, f"Queued {queryset.count()} dispatch(es).")


@admin.register(JobPart)
class JobPartAdmin(admin.ModelAdmin):
    list_display = ["job", "file", "index", "start", "end", "status", "attempts", "lease_until"]
    list_filter = ["status"]
    search_fields = ["job__job_id"]
    readonly_fields = [f.name for f in JobPart._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

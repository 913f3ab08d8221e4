"""What the isolation walk needs for the batch-job pages (the victim's job is made by
``isolation_jobs.py``, the API's module)."""

from __future__ import annotations


def register(reg) -> None:
    def victim_job(ctx):
        return {"job_id": ctx.v["job"].job_id}

    reg.case("jobs:job-list", "GET", expect={200})
    reg.case("jobs:job-detail", "GET", kwargs=victim_job, expect={404})
    reg.case("jobs:job-cancel", "POST", kwargs=victim_job, expect={404})
    # the victim's version, group and input in the form: refused as choices not the outsider's
    reg.case(
        "jobs:job-create",
        ("GET", "POST"),
        expect={200, 400},
        body=lambda ctx: {
            "name": "walk",
            "version": ctx.v["version"].pk,
            "resource_group": ctx.v["group"].pk,
            "cpu_cores": "0.5",
            "memory_mib": 512,
            "workers": 1,
            "source": "address",
            "address": ctx.v["job_input"],
            "batch_size": 64,
            "max_failed": 0,
        },
    )

"""What the isolation walk needs for the batch-job pages: a job of the victim's of its own (the
API's module, ``isolation_jobs.py``, makes another)."""

from __future__ import annotations


def _setup(ctx):
    from serving import services
    from serving.jobs import services as jobs
    from tests.serving.isolation_serving import _group
    from tests.serving.jobs_flow import seed_inputs

    size = services.InstanceSize(cpu_millicores=500, memory_mib=512)
    group = _group(ctx.victim.tenant, "victimpagegroup")
    source, target, _ = seed_inputs(ctx.victim.tenant, bucket="victimpagejobs")
    job = jobs.job_create(
        actor=ctx.victim.membership,
        version=ctx.v["version"],
        group=group,
        name="victimpagejob",
        size=size,
        input_url=source,
        output_url=target,
    )
    bucket = f"victimpagejobs-{ctx.victim.tenant.app_id}"
    ctx.v.update(page_job=job, page_job_group=group, page_job_bucket=bucket)
    ctx.markers |= {"victimpagejob", "victimpagegroup", "victimpagejobs", job.job_id}


def register(reg) -> None:
    reg.setup(_setup)

    def victim_job(ctx):
        return {"job_id": ctx.v["page_job"].job_id}

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
            "resource_group": ctx.v["page_job_group"].pk,
            "cpu_cores": "0.5",
            "memory_mib": 512,
            "workers": 1,
            # picked, as a typed address would be echoed in its own field (what the outsider typed)
            "source": "pick",
            "bucket": ctx.v["page_job_bucket"],
            "prefix": "in/",
            "batch_size": 64,
            "max_failed": 0,
        },
    )

"""What the isolation walk needs for the batch-job URLs (see ``tests/isolation.py``)."""

from __future__ import annotations


def _setup(ctx):
    from serving import services
    from serving.jobs import services as jobs
    from tests.serving.isolation_serving import _group
    from tests.serving.jobs_flow import seed_inputs

    size = services.InstanceSize(cpu_millicores=500, memory_mib=512)
    group = _group(ctx.victim.tenant, "victimjobgroup")
    source, target, _ = seed_inputs(ctx.victim.tenant, bucket="victimjobs")
    job = jobs.job_create(
        actor=ctx.victim.membership,
        version=ctx.v["version"],
        group=group,
        name="victimjob",
        size=size,
        input_url=source,
        output_url=target,
    )
    from serving.jobs.runner import plan

    plan(job)  # its parts (the walk does not run the dispatcher)
    ctx.v.update(job=job, job_input=source)
    ctx.markers |= {"victimjob", job.job_id}


def register(reg) -> None:
    reg.setup(_setup)
    reg.objects("serving.job", lambda ctx: ctx.v["job"])
    reg.objects("serving.jobpart", lambda ctx: ctx.v["job"].parts.first())
    reg.objects("job", lambda ctx: ctx.v["job"])

    def victim_job(ctx):
        return {"job_id": ctx.v["job"].job_id}

    reg.case("job-detail", "GET", kwargs=victim_job, expect={404})
    for name in ("job-events", "job-files", "job-instances"):
        reg.case(name, "GET", kwargs=victim_job, expect={404})
    reg.case("job-cancel", "POST", kwargs=victim_job, expect={404})
    # the walk keeps the outsider authorized, so the refusal is the victim's version: 400
    reg.case(
        "job-list",
        "POST",
        expect={400},
        body=lambda ctx: {
            "name": "walk",
            "version": ctx.v["version"].pk,
            "resource_group": ctx.v["group"].pk,
            "cpu_millicores": 500,
            "memory_mib": 512,
            "input": ctx.v["job_input"],
            "output": ctx.v["job_input"] + "out/",
        },
    )
    reg.case(
        "job-estimate",
        "POST",
        expect={400},
        body=lambda ctx: {
            "version": ctx.v["version"].pk,
            "resource_group": ctx.v["group"].pk,
            "cpu_millicores": 500,
            "memory_mib": 512,
        },
    )

"""What the isolation walk needs for the serving URLs (see ``tests/isolation.py``)."""

from __future__ import annotations


def _group(tenant, name):
    from models_repo.models import Region
    from serving.models import Node, ResourceGroup

    group = ResourceGroup.objects.create(
        tenant=tenant,
        name=name,
        kind=ResourceGroup.DEDICATED,
        region=Region.objects.get(name="ap-beijing"),
    )
    Node.objects.create(
        group=group,
        name=f"{name}-node",
        backend=Node.PROCESS,
        capacity_cpu_millicores=8000,
        capacity_memory_mib=16384,
    )
    return group


def _setup(ctx):
    from serving import services

    size = services.InstanceSize(cpu_millicores=500, memory_mib=512)
    group = _group(ctx.victim.tenant, "victimgroup")
    service = services.service_deploy(
        actor=ctx.victim.membership,
        version=ctx.v["version"],
        group=group,
        name="victimservice",
        size=size,
        auth_enabled=True,
    )
    ctx.v.update(group=group, service=service)
    from django.conf import settings

    from gateway.tokens import decrypt
    from serving.access import current_token

    token = current_token(service)
    ctx.markers |= {"victimgroup", "victimservice", service.service_id, token.sha256}
    ctx.markers.add(decrypt(token.secret, settings.EMS_SECRETS_KEY))
    own_group = _group(ctx.outsider.tenant, "outsidergroup")
    own = services.service_deploy(
        actor=ctx.outsider.membership,
        version=ctx.o["config"].versions.get(),
        group=own_group,
        name="outsiderservice",
        size=size,
    )
    ctx.o.update(group=own_group, service=own)


def register(reg) -> None:
    reg.setup(_setup)
    reg.objects("serving.resourcegroup", lambda ctx: ctx.v["group"])
    reg.objects("serving.service", lambda ctx: ctx.v["service"])
    reg.objects("serving.instance", lambda ctx: ctx.v["service"].instances.first())
    reg.objects("resource-group", lambda ctx: ctx.v["group"])

    def victim_service(ctx):
        return {"service_id": ctx.v["service"].service_id}

    # API: services are named by their service id
    reg.case("service-detail", ("GET", "DELETE"), kwargs=victim_service, expect={404})
    for name in ("service-events", "service-instances", "service-logs"):
        reg.case(name, "GET", kwargs=victim_service, expect={404})
    for name in ("service-stop", "service-resume", "service-rollback"):
        reg.case(name, "POST", kwargs=victim_service, expect={404})
    reg.case("service-invoke", "GET", kwargs=victim_service, expect={404})
    reg.case("service-metrics", "GET", kwargs=victim_service, expect={404})
    reg.case(
        "service-scaling",
        "PATCH",
        kwargs=victim_service,
        expect={404},
        body=lambda ctx: {"scaling_mode": "manual", "replicas": 2},
    )
    for name in ("service-token-rotate", "service-token-revoke"):
        reg.case(name, "POST", kwargs=victim_service, expect={404}, body=lambda ctx: {})
    reg.case(
        "service-auth",
        "POST",
        kwargs=victim_service,
        expect={404},
        body=lambda ctx: {"enabled": True},
    )
    reg.case(
        "service-scale",
        "POST",
        kwargs=victim_service,
        expect={404},
        body=lambda ctx: {"replicas": 2},
    )
    reg.case(
        "service-update",
        "POST",
        kwargs=victim_service,
        expect={404},
        body=lambda ctx: {"version": ctx.v["version"].pk},
    )
    # the walk keeps the outsider authorized, so the refusal is the victim's version: 400
    reg.case(
        "service-list",
        "POST",
        expect={400},
        body=lambda ctx: {
            "name": "walk",
            "version": ctx.v["version"].pk,
            "resource_group": ctx.v["group"].pk,
            "cpu_millicores": 500,
            "memory_mib": 512,
        },
    )

    # web pages
    reg.case("serving:service-list", "GET")
    reg.case(
        "serving:service-create",
        ("GET", "POST"),
        expect={200, 400},
        body=lambda ctx: {
            "service_type": "online",
            "name": "walk",
            "region": "ap-beijing",
            "version": ctx.v["version"].pk,
            "resource_group": ctx.v["group"].pk,
            "cpu_cores": "0.5",
            "memory_mib": 512,
            "scaling_mode": "manual",
            "replicas": 1,
        },
    )
    reg.case("serving:service-detail", "GET", kwargs=victim_service, expect={404})
    reg.case("serving:service-invoke", "GET", kwargs=victim_service, expect={404})
    reg.case(
        "serving:service-invoke-token",
        "POST",
        kwargs=victim_service,
        expect={404},
        body=lambda ctx: {},
    )
    reg.case(
        "serving:service-invoke-console",
        "POST",
        kwargs=victim_service,
        expect={404},
        body=lambda ctx: {"op": "predict", "body": '{"instances": []}'},
    )
    reg.case(
        "serving:service-action",
        "POST",
        expect={404},
        kwargs=lambda ctx: {"service_id": ctx.v["service"].service_id, "action": "stop"},
        body=lambda ctx: {},
    )

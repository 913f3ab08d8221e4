"""What the isolation walk needs for the models_repo URLs (see ``tests/isolation.py``)."""

from __future__ import annotations

import io

from tests.models_repo.conftest import MODELS
from tests.testdata import require_testdata


def _seed(member, bucket_name: str):
    from models_repo.addresses import build_cos_address
    from models_repo.storage import get_storage, make_backend

    tenant = member.tenant
    store = get_storage(tenant, guard=lambda t: None, backend=make_backend())
    bucket = f"{bucket_name}-{tenant.app_id}"
    store.create_bucket(bucket, region="ap-beijing")
    require_testdata()
    source = MODELS["pmml-lr"][1]
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        store.write(bucket, f"m/{file.name}", io.BytesIO(file.read_bytes()))
    return bucket, build_cos_address(bucket, "m/", region="ap-beijing")


def _setup(ctx):
    from models_repo import bootstrap, services
    from models_repo.models import Region, RuntimeEnvironment

    bootstrap.run(demo=False, log=lambda line: None)
    region = Region.objects.get(name="ap-beijing")
    pmml = RuntimeEnvironment.objects.get(tenant__isnull=True, name="pmml")
    victim, outsider = ctx.victim.membership, ctx.outsider.membership
    bucket, address = _seed(victim, "victimbucket")
    runtime = services.runtime_create(actor=victim, name="victimruntime", image="victim/image")
    config = services.model_config_create(
        actor=victim, name="victimconfig", region=region, runtime=pmml, address=address
    )
    ctx.v.update(
        bucket=bucket,
        address=address,
        runtime=runtime,
        config=config,
        version=config.versions.get(),
        region=region,
    )
    ctx.markers |= {"victimbucket", "victimruntime", "victimconfig", "victim/image"}
    own_bucket, own_address = _seed(outsider, "outsiderbucket")
    own_config = services.model_config_create(
        actor=outsider, name="outsiderconfig", region=region, runtime=pmml, address=own_address
    )
    ctx.o.update(bucket=own_bucket, address=own_address, config=own_config)


def register(reg) -> None:
    reg.setup(_setup)
    for key, name in [
        ("models_repo.region", "region"),
        ("models_repo.runtimeenvironment", "runtime"),
        ("models_repo.modelconfig", "config"),
        ("models_repo.modelconfigversion", "version"),
        ("runtime", "runtime"),
        ("model-config", "config"),
    ]:
        reg.objects(key, lambda ctx, name=name: ctx.v[name])
    reg.own("model-config", lambda ctx: ctx.o["config"])

    def victim_bucket(ctx):
        return {"bucket": ctx.v["bucket"]}

    def victim_version(ctx):
        return {"pk": ctx.v["config"].pk, "number": ctx.v["version"].number}

    # API: buckets are named, not numbered
    reg.case("bucket-objects", "GET", kwargs=victim_bucket, query="prefix=m/", expect={404})
    reg.case(
        "bucket-upload",
        "POST",
        kwargs=victim_bucket,
        body=lambda ctx: {"prefix": "walk/"},
        expect={404},
    )
    reg.case(
        "bucket-download",
        "GET",
        kwargs=victim_bucket,
        query="key=m/LogisticRegressionIris.pmml",
        expect={404},
    )
    reg.case("bucket-list", "POST", body=lambda ctx: {"name": "walk", "region": "ap-beijing"})
    reg.case("model-config-version-detail", ("GET", "DELETE"), kwargs=victim_version, expect={404})
    # The outsider's own config, the victim's runtime and folder in the body: refused.
    reg.case(
        "model-config-versions",
        "POST",
        own_url=True,
        expect={400, 404},
        body=lambda ctx: {
            "runtime": ctx.v["runtime"].pk,
            "bucket": ctx.v["bucket"],
            "prefix": "m/",
        },
    )
    reg.case(
        "model-config-list",
        "POST",
        expect={400},
        body=lambda ctx: {
            "name": "walk",
            "region": "ap-beijing",
            "runtime": ctx.v["runtime"].pk,
            "bucket": ctx.v["bucket"],
            "prefix": "m/",
        },
    )
    reg.case("runtime-list", "POST", body=lambda ctx: {"name": "walk", "image": "walk/image"})

    # web pages
    reg.case("models_repo:config-list", ("GET", "POST"), body=lambda ctx: {})
    reg.case(
        "models_repo:config-create",
        ("GET", "POST"),
        expect={200, 400},
        body=lambda ctx: {
            "name": "walk",
            "region": "ap-beijing",
            "runtime": ctx.v["runtime"].pk,
            "source": "pick",
            "bucket": ctx.v["bucket"],
            "prefix": "m/",
        },
    )
    # The bucket list of the outsider's own buckets (a victim bucket in ?bucket= is a 404,
    # tests/models_repo/test_mr_pages.py checks it: the query here cannot name it).
    reg.case("models_repo:browse", ("GET", "POST"), body=lambda ctx: {}, expect={200})
    reg.case(
        "models_repo:download",
        "GET",
        query=lambda ctx: f"bucket={ctx.v['bucket']}&key=m/LogisticRegressionIris.pmml",
        expect={404},
    )
    for name in ("models_repo:config-detail", "models_repo:version-create"):
        reg.case(
            name,
            ("GET", "POST"),
            expect={404},
            kwargs=lambda ctx: {"pk": ctx.v["config"].pk},
            body=lambda ctx: {
                "runtime": ctx.v["runtime"].pk,
                "source": "pick",
                "bucket": ctx.v["bucket"],
                "prefix": "m/",
            },
        )

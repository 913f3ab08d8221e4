"""The models_repo bootstrap step: regions and the five public runtime environments."""

from accounts.bootstrap import demo_member
from models_repo.demo import ensure_demo_models
from models_repo.models import Region, RuntimeEnvironment

REGIONS = [
    ("ap-beijing", "Beijing"),
    ("ap-shanghai", "Shanghai"),
    ("ap-guangzhou", "Guangzhou"),
    ("ap-chengdu", "Chengdu"),
    ("ap-nanjing", "Nanjing"),
    ("ap-hongkong", "Hong Kong"),
    ("ap-singapore", "Singapore"),
    ("na-siliconvalley", "Silicon Valley"),
]

# name, display name, model format, needs a GPU, health check
PUBLIC_RUNTIMES = [
    ("tfserving", "TF-Serving", "saved_model", False, True),
    ("pmml", "PMML", "pmml", False, True),
    ("tensorrt", "TensorRT", "tensorrt", True, True),
    ("openvino", "OpenVINO", "openvino", False, True),
    ("angel", "Angel", "angel", False, True),
]


def run(*, demo: bool, log) -> None:
    for name, display in REGIONS:
        _, created = Region.objects.get_or_create(name=name, defaults={"display_name": display})
        if created:
            log(f"added region {name}")
    for name, display, fmt, gpu, health in PUBLIC_RUNTIMES:
        _, created = RuntimeEnvironment.objects.update_or_create(
            tenant=None,
            name=name,
            defaults={
                "display_name": display,
                "runtime": name,
                "model_format": fmt,
                "image": f"ems-runtime-{name}",
                "needs_gpu": gpu,
                "health_check": health,
            },
        )
        if created:
            log(f"added runtime {display}")
    if demo:
        ensure_demo_models(demo_member(), log)

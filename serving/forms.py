"""The deploy form and the small action forms of the service page. Plain, labelled fields with
stable names; they validate shapes and hand over to ``serving.services``."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from models_repo.models import ModelConfigVersion, Region
from serving import selectors
from serving.models import Service
from serving.scheduling import QUOTA_TYPES


class DeployForm(forms.Form):
    service_type = forms.ChoiceField(
        label="Service type",
        choices=[("online", "Online inference service")],
        initial="online",
        help_text="For predictions over files in a bucket, start a batch job instead (Batch "
        "jobs in the menu, or “Batch job” on a config version's page).",
    )
    name = forms.CharField(label="Service name", max_length=40)
    region = forms.ModelChoiceField(
        label="Region", queryset=Region.objects.filter(is_active=True), to_field_name="name"
    )
    version = forms.ModelChoiceField(label="Config version", queryset=ModelConfigVersion.objects)
    resource_group = forms.ModelChoiceField(label="Resource group", queryset=None)
    quota_type = forms.ChoiceField(
        label="Quota type (public groups)",
        required=False,
        choices=[("", "—")] + [(key, value["label"]) for key, value in QUOTA_TYPES.items()],
        initial="cpu",
    )
    quota_count = forms.IntegerField(label="Quota count", required=False, min_value=1, initial=1)
    cpu_cores = forms.DecimalField(
        label="CPU cores (dedicated groups)",
        required=False,
        min_value=Decimal("0.1"),
        max_value=256,
        decimal_places=3,
        initial=Decimal("1"),
    )
    memory_mib = forms.IntegerField(
        label="Memory in MiB (dedicated groups)", required=False, min_value=128, initial=2048
    )
    gpus = forms.IntegerField(
        label="GPUs (dedicated groups)", required=False, min_value=0, initial=0
    )
    scaling_mode = forms.ChoiceField(
        label="Scaling",
        choices=[(Service.MANUAL, "manual"), (Service.AUTO, "automatic")],
        initial=Service.MANUAL,
    )
    replicas = forms.IntegerField(
        label="Instances (manual)", min_value=1, initial=1, required=False
    )
    min_replicas = forms.IntegerField(
        label="Minimum instances (0: scale to zero when idle)", min_value=0, required=False
    )
    max_replicas = forms.IntegerField(label="Maximum instances", min_value=1, required=False)
    start_replicas = forms.IntegerField(label="Start instances", min_value=1, required=False)
    trigger_cpu = forms.IntegerField(
        label="CPU utilization target %", required=False, min_value=1, max_value=100
    )
    trigger_memory = forms.IntegerField(
        label="Memory utilization target %", required=False, min_value=1, max_value=100
    )
    trigger_gpu = forms.IntegerField(
        label="GPU utilization target %", required=False, min_value=1, max_value=100
    )
    trigger_qps = forms.IntegerField(
        label="Requests per second per instance", required=False, min_value=1, max_value=100000
    )
    auth_enabled = forms.BooleanField(
        label="Generate an auth token",
        required=False,
        initial=True,
        help_text="Callers send it as x-Auth-Token; without it anyone who reaches the gateway "
        "can call the service.",
    )

    def __init__(self, *args, actor, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = (
            ModelConfigVersion.objects.for_actor(actor, "ems:DescribeModelConfigVersions")
            .select_related("config", "runtime")
            .order_by("config__name", "number")
        )
        self.fields["resource_group"].queryset = selectors.resource_groups(actor=actor)
        self._preselect_from_version()

    def choices_info(self) -> dict:
        """For the page's script: each version's and group's region, each group's kind and free
        capacity, so the form shows only what fits the chosen region and group."""
        groups = {}
        for group in self.fields["resource_group"].queryset.select_related("region"):
            cap = group.capacity()
            groups[str(group.pk)] = {
                "region": group.region.name,
                "kind": group.kind,
                "free": (
                    f"free now: {cap['cpu_free'] / 1000:g} cores, {cap['memory_free']} MiB"
                    + (f", {cap['gpus_free']} GPU" if cap.get("gpus") else "")
                ),
            }
        versions = {
            str(v.pk): v.config.region.name
            for v in self.fields["version"].queryset.select_related("config__region")
        }
        return {"groups": groups, "versions": versions}

    def _preselect_from_version(self) -> None:
        """A preselected version (``?version=``) brings its region and that region's public
        group, so a one-click deploy of an example needs only "Deploy"."""
        wanted = str(self.initial.get("version", ""))
        version = (
            self.fields["version"].queryset.filter(pk=wanted).first() if wanted.isdigit() else None
        )
        if version is None:
            return
        self.initial.setdefault("region", version.config.region.name)  # to_field_name
        public = self.fields["resource_group"].queryset.filter(
            region_id=version.config.region_id, kind="public"
        )
        if public.exists():
            self.initial.setdefault("resource_group", public.first().pk)
            self.initial.setdefault("quota_type", "cpu")

    def clean(self):
        data = super().clean()
        version, region = data.get("version"), data.get("region")
        group = data.get("resource_group")
        if version and region and version.config.region_id != region.pk:
            self.add_error(
                "region", f"The config {version.config.name} is in {version.config.region.name}."
            )
        if group and region and group.region_id != region.pk:
            self.add_error("resource_group", f"The group {group.name} is in {group.region.name}.")
        if data.get("scaling_mode") == Service.MANUAL and not data.get("replicas"):
            self.add_error("replicas", "Give the number of instances (at least 1).")
        if data.get("scaling_mode") == Service.AUTO:
            for key in ("min_replicas", "max_replicas", "start_replicas"):
                if data.get(key) is None:
                    self.add_error(key, "Required for automatic scaling.")
        return data

    def triggers(self) -> list[dict]:
        return [
            {"metric": metric, "target": self.cleaned_data[f"trigger_{metric}"]}
            for metric in ("cpu", "memory", "gpu", "qps")
            if self.cleaned_data.get(f"trigger_{metric}")
        ]


class ScalingForm(forms.Form):
    """The scaling policy on a service's page (``service_set_scaling``)."""

    scaling_mode = forms.ChoiceField(
        label="Scaling", choices=[(Service.MANUAL, "manual"), (Service.AUTO, "automatic")]
    )
    replicas = forms.IntegerField(label="Instances (manual)", min_value=1, required=False)
    min_replicas = forms.IntegerField(
        label="Minimum (0: scale to zero)", min_value=0, required=False
    )
    max_replicas = forms.IntegerField(label="Maximum", min_value=1, required=False)
    trigger_cpu = forms.IntegerField(label="CPU target %", required=False, min_value=1)
    trigger_memory = forms.IntegerField(label="Memory target %", required=False, min_value=1)
    trigger_gpu = forms.IntegerField(label="GPU target %", required=False, min_value=1)
    trigger_qps = forms.IntegerField(label="Requests/s per instance", required=False, min_value=1)

    @classmethod
    def for_service(cls, service) -> ScalingForm:
        auto = service.autoscale or {}
        initial = {
            "scaling_mode": service.scaling_mode,
            "replicas": max(service.replicas, 1),
            "min_replicas": auto.get("min", 1),
            "max_replicas": auto.get("max", max(service.replicas, 1)),
        }
        for trigger in auto.get("triggers", []):
            initial[f"trigger_{trigger['metric']}"] = trigger["target"]
        return cls(initial=initial)

    def scaling(self, service):
        from serving.scaling import Scaling

        data = self.cleaned_data
        low = data.get("min_replicas")
        low = 1 if low is None else low
        high = data.get("max_replicas") or max(low, 1)
        start = (service.autoscale or {}).get("start", 1)
        return Scaling(
            mode=data["scaling_mode"],
            replicas=data.get("replicas") or 1,
            min=low,
            max=high,
            start=min(max(start, max(low, 1)), high),
            triggers=[
                {"metric": m, "target": data[f"trigger_{m}"]}
                for m in ("cpu", "memory", "gpu", "qps")
                if data.get(f"trigger_{m}")
            ],
        )


class ScaleForm(forms.Form):
    replicas = forms.IntegerField(label="Instances", min_value=1)


class UpdateForm(forms.Form):
    version = forms.ModelChoiceField(label="New version", queryset=ModelConfigVersion.objects)

    def __init__(self, *args, service, actor, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = ModelConfigVersion.objects.for_actor(
            actor, "ems:DescribeModelConfigVersions"
        ).filter(config_id=service.config_id)

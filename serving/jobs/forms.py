"""The batch-job form: the same fields as ``POST /api/v1/jobs/``, the input given the three ways
a model folder is (typed, browsed, uploaded). It validates shapes; ``serving.jobs.services``
decides."""

from __future__ import annotations

from django import forms

from models_repo.forms import check_source, pick_buckets
from serving.forms import DeployForm

INPUT_SOURCES = [
    ("address", "Type the cos:// address of a file or folder"),
    ("pick", "Pick a folder in one of your buckets"),
    ("upload", "Upload local JSON Lines files into a bucket, then use them"),
]
# The instance-size fields are the deploy form's own (one definition of a size on a page).
SIZE_FIELDS = ("resource_group", "quota_type", "quota_count", "cpu_cores", "memory_mib", "gpus")


class JobForm(forms.Form):
    name = forms.CharField(label="Job name", max_length=40)
    version = DeployForm.base_fields["version"]
    resource_group = DeployForm.base_fields["resource_group"]
    quota_type = DeployForm.base_fields["quota_type"]
    quota_count = DeployForm.base_fields["quota_count"]
    cpu_cores = DeployForm.base_fields["cpu_cores"]
    memory_mib = DeployForm.base_fields["memory_mib"]
    gpus = DeployForm.base_fields["gpus"]
    workers = forms.IntegerField(
        label="Workers (instances)",
        min_value=1,
        max_value=32,
        initial=1,
        help_text="Instances that run the job side by side; billed like a service's.",
    )
    source = forms.ChoiceField(
        choices=INPUT_SOURCES, initial="address", widget=forms.RadioSelect, label="Input"
    )
    address = forms.CharField(
        required=False,
        max_length=1100,
        label="Input address",
        help_text="cos://<bucket>-<appid>.cos.<region>.myqcloud.com/<file.jsonl or folder/>: "
        "JSON Lines (one instance a line) or JSON files (an array of instances).",
        widget=forms.TextInput(attrs={"size": 80}),
    )
    bucket = forms.CharField(required=False, max_length=63, label="Bucket")
    prefix = forms.CharField(
        required=False, max_length=1024, label="Folder in the bucket", help_text="e.g. inputs/"
    )
    zip = forms.FileField(required=False, label="Or a zip of the files")
    output = forms.CharField(
        required=False,
        max_length=1100,
        label="Output folder",
        help_text="A cos:// folder; one output file per input file, line by line. Empty: "
        "outputs/<job name>/ in the input's bucket.",
        widget=forms.TextInput(attrs={"size": 80}),
    )
    batch_size = forms.IntegerField(
        label="Batch size", min_value=1, max_value=4096, initial=64, help_text="Lines per call."
    )
    signature_name = forms.CharField(
        label="Signature", required=False, max_length=100, help_text="Empty: the model's default."
    )
    max_failed = forms.IntegerField(
        label="Failed lines tolerated",
        min_value=0,
        initial=0,
        help_text="A bad line is written as an error on its own output line; one more than "
        "this fails the job.",
    )

    def __init__(self, *args, actor, buckets=(), **kwargs):
        super().__init__(*args, **kwargs)
        # the version and group choices, and the preselection from ?version=, as the deploy form
        deploy = DeployForm(actor=actor, initial=dict(self.initial))
        for name in ("version", "resource_group"):
            self.fields[name].queryset = deploy.fields[name].queryset
        for name in ("resource_group", "quota_type"):
            if name in deploy.initial:
                self.initial.setdefault(name, deploy.initial[name])
        self._deploy = deploy
        pick_buckets(self, buckets)

    def choices_info(self) -> dict:
        return self._deploy.choices_info()

    def clean(self):
        return check_source(self, super().clean(), address_missing="Type the input's address.")

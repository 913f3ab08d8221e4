"""Web forms of the model repository: plain labelled fields with stable names.

The folder comes one of three ways (``source``): a typed ``address``; a ``bucket`` and
``prefix`` picked by browsing; or an upload (``files`` with their relative ``paths``, or one
``zip``) into ``bucket``/``prefix``, which is then used. Forms validate shapes; the services
decide.
"""

from __future__ import annotations

from django import forms

from models_repo import selectors
from models_repo.models import Region, RuntimeEnvironment

SOURCES = [
    ("address", "Type the folder address"),
    ("pick", "Pick a folder in one of your buckets"),
    ("upload", "Upload a local folder or a zip into a bucket, then use it"),
]


def pick_buckets(form: forms.Form, buckets) -> None:
    """The ``bucket`` field becomes a list of the actor's buckets (when there are any)."""
    if buckets:
        form.fields["bucket"].widget = forms.Select(
            choices=[("", "—")] + [(b.name, f"{b.name} ({b.region or '?'})") for b in buckets]
        )


def check_source(form: forms.Form, data: dict, *, address_missing: str) -> dict:
    """What the chosen ``source`` needs: a typed address, or a bucket and a folder in it."""
    source = data.get("source")
    if source == "address" and not data.get("address"):
        form.add_error("address", address_missing)
    if source in {"pick", "upload"}:
        if not data.get("bucket"):
            form.add_error("bucket", "Choose a bucket.")
        if not data.get("prefix"):
            form.add_error("prefix", "Give the folder inside the bucket.")
    return data


class FolderSourceForm(forms.Form):
    runtime = forms.ModelChoiceField(
        queryset=RuntimeEnvironment.objects.none(), label="Runtime environment"
    )
    source = forms.ChoiceField(
        choices=SOURCES, initial="address", widget=forms.RadioSelect, label="Model folder"
    )
    address = forms.CharField(
        required=False,
        max_length=1100,
        label="Folder address",
        help_text="cos://<bucket>-<appid>.cos.<region>.myqcloud.com/<folder>/",
        widget=forms.TextInput(attrs={"size": 80}),
    )
    bucket = forms.CharField(required=False, max_length=63, label="Bucket")
    prefix = forms.CharField(
        required=False, max_length=1024, label="Folder in the bucket", help_text="e.g. models/m/"
    )
    zip = forms.FileField(required=False, label="Or a zip of the folder")

    def __init__(self, *args, actor, buckets=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["runtime"].queryset = selectors.runtimes(actor=actor)
        pick_buckets(self, buckets)

    def clean(self):
        return check_source(self, super().clean(), address_missing="Type the folder address.")


class ConfigCreateForm(FolderSourceForm):
    name = forms.CharField(max_length=20, label="Name", help_text="At most 20 characters.")
    region = forms.ModelChoiceField(queryset=Region.objects.none(), label="Region")
    description = forms.CharField(
        required=False,
        max_length=500,
        label="Description",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    field_order = ["name", "region", "description", "runtime", "source"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].queryset = selectors.regions()
        self.fields["region"].to_field_name = "name"


class BucketCreateForm(forms.Form):
    name = forms.CharField(max_length=50, label="New bucket name", help_text="-<app id> is added.")
    region = forms.ModelChoiceField(queryset=Region.objects.none(), label="Region")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].queryset = selectors.regions()
        self.fields["region"].to_field_name = "name"

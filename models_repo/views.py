"""Web pages: config list, create config (three sources), config detail, new version, browse."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.door import By, page, page_object, require_actor
from models_repo import selectors, services
from models_repo.api import run_upload, upload_too_big
from models_repo.downloads import object_response
from models_repo.forms import BucketCreateForm, ConfigCreateForm, FolderSourceForm
from models_repo.storage import AccessRefused, NotFound, StorageError
from models_repo.uploads import UploadRefused


def _buckets(actor) -> list:
    """The tenant's buckets for the picker; an empty list when storage cannot be listed (the
    form still works with a typed address, and the service explains the storage problem)."""
    try:
        return selectors.buckets(actor=actor)
    except (StorageError, PermissionDenied):
        return []


def _add_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            target = field if field in form.fields else None
            for error in errors:
                for message in error.messages:
                    form.add_error(target, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)


def _folder(request, actor, data) -> dict:
    """The folder arguments of the services; uploads first when the source is an upload."""
    source = data["source"]
    if source == "address":
        return {"address": data["address"]}
    if source == "upload":
        upload = {
            "prefix": data["prefix"],
            "zip": data.get("zip"),
            "files": request.FILES.getlist("files"),
            "paths": request.POST.getlist("paths"),
        }
        result = run_upload(actor, data["bucket"], upload)
        request.ems_upload = result  # discarded again if what follows is refused (_submit)
        return {"bucket": result["bucket"], "prefix": result["prefix"]}
    return {"bucket": data["bucket"], "prefix": data["prefix"]}


def _submit(request, form, call):
    """Run ``call(folder_kwargs)`` turning refusals into form errors; returns (result, status)."""
    too_big = upload_too_big(request)
    if too_big:
        form.add_error(None, too_big)
        return None, 413
    if not form.is_valid():
        return None, 400
    actor = require_actor(request)
    try:
        return call(_folder(request, actor, form.cleaned_data)), 200
    except ValidationError as exc:
        _add_errors(form, exc)
        upload = getattr(request, "ems_upload", None)
        if upload is not None:  # the folder was uploaded for this, and this was refused
            services.upload_discard(actor=actor, upload=upload, reason=" ".join(exc.messages))
            form.add_error(None, "The uploaded files were removed from the bucket again.")
    except UploadRefused as exc:
        form.add_error(None, exc.message)
        return None, exc.status
    except (AccessRefused, NotFound):
        form.add_error("bucket", "There is no such bucket in this account.")
    except StorageError as exc:
        form.add_error(None, str(exc))
    return None, 400


def _initial(request) -> dict:
    keys = ("source", "bucket", "prefix", "address")
    return {key: request.GET[key] for key in keys if request.GET.get(key)}


@page("GET", actions="ems:DescribeModelConfigs")
def config_list(request):
    actor = require_actor(request)
    configs = selectors.model_configs(actor=actor)
    return render(request, "models_repo/config_list.html", {"configs": configs})


@page("GET", "POST", actions="ems:CreateModelConfig")
def config_create(request):
    actor = require_actor(request)
    buckets = _buckets(actor)
    form = ConfigCreateForm(
        request.POST or None,
        request.FILES or None,
        actor=actor,
        buckets=buckets,
        initial=_initial(request),
    )
    status = 200
    if request.method == "POST":

        def create(folder):
            cleaned = form.cleaned_data
            return services.model_config_create(
                actor=actor,
                name=cleaned["name"],
                region=cleaned["region"],
                runtime=cleaned["runtime"],
                description=cleaned["description"],
                **folder,
            )

        config, status = _submit(request, form, create)
        if config is not None:
            messages.success(request, f"Created {config.name} with version 1.0.")
            return redirect("models_repo:config-detail", pk=config.pk)
    context = {"form": form, "buckets": buckets, "browse_next": request.path}
    return render(request, "models_repo/config_form.html", context, status=status)


@page("GET", actions="ems:DescribeModelConfig", object=True)
def config_detail(request, pk: int):
    actor = require_actor(request)
    config = page_object(
        request, selectors.model_configs(actor=actor, action="ems:DescribeModelConfig"), pk=pk
    )
    versions = selectors.versions(actor=actor, config=config)
    return render(
        request, "models_repo/config_detail.html", {"config": config, "versions": versions}
    )


@page("GET", "POST", actions="ems:CreateModelConfigVersion", object=True)
def version_create(request, pk: int):
    actor = require_actor(request)
    config = page_object(
        request, selectors.model_configs(actor=actor, action="ems:DescribeModelConfig"), pk=pk
    )
    buckets = _buckets(actor)
    latest = config.versions.order_by("-number").first()
    initial = {"runtime": latest.runtime_id} if latest else {}
    form = FolderSourceForm(
        request.POST or None,
        request.FILES or None,
        actor=actor,
        buckets=buckets,
        initial={**initial, **_initial(request)},
    )
    status = 200
    if request.method == "POST":
        version, status = _submit(
            request,
            form,
            lambda folder: services.model_config_version_create(
                actor=actor, config=config, runtime=form.cleaned_data["runtime"], **folder
            ),
        )
        if version is not None:
            messages.success(request, f"Created version {version.label} of {config.name}.")
            return redirect("models_repo:config-detail", pk=config.pk)
    context = {"form": form, "config": config, "buckets": buckets, "browse_next": request.path}
    return render(request, "models_repo/version_form.html", context, status=status)


def _browse_action(request, kwargs) -> str:
    return "storage:ListObjects" if request.GET.get("bucket") else "storage:ListBuckets"


BROWSE_OPS = By(
    "op",
    {"upload": "storage:PutObject", "delete": "storage:DeleteObject"},
    default="storage:CreateBucket",
)


def _browse_post(request, actor, bucket: str, prefix: str) -> str | None:
    """Upload into, or delete from, the folder being browsed; a message for the page."""
    op = request.POST.get("op")
    if op == "delete":
        key = request.POST.get("key", "")
        count = services.objects_delete(actor=actor, bucket=bucket, key=key)
        return f"Deleted {key} ({count} object{'' if count == 1 else 's'})."
    folder = request.POST.get("folder", "").strip().strip("/")
    target = prefix + (folder + "/" if folder else "")
    files = request.FILES.getlist("files")
    if not files:
        raise ValidationError("Choose the files (or a folder) to upload.")
    paths = request.POST.getlist("paths") or [f.name for f in files]
    result = run_upload(actor, bucket, {"prefix": target, "files": files, "paths": paths})
    return f"Uploaded {len(result['files'])} file(s) to {bucket}/{result['prefix']}."


@page("GET", "POST", actions={"GET": _browse_action, "POST": BROWSE_OPS})
def browse(request):
    """Buckets, then folders; "use this folder" returns to the form with the folder picked."""
    actor = require_actor(request)
    next_url = request.GET.get("next") or reverse("models_repo:config-create")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("models_repo:config-create")
    bucket = request.GET.get("bucket", "")
    prefix = request.GET.get("prefix", "")
    if request.method == "POST" and request.POST.get("op") in ("upload", "delete") and bucket:
        try:
            messages.success(request, _browse_post(request, actor, bucket, prefix))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        except UploadRefused as exc:
            messages.error(request, exc.message)
        except NotFound:
            messages.error(request, "There is no such object in this bucket.")
        query = {"next": next_url, "bucket": bucket, "prefix": prefix}
        return redirect(f"{request.path}?{urlencode(query)}")
    create_form = BucketCreateForm(request.POST or None)
    if request.method == "POST" and create_form.is_valid():
        try:
            info = services.bucket_create(actor=actor, **create_form.cleaned_data)
        except ValidationError as exc:
            _add_errors(create_form, exc)
        else:
            messages.success(request, f"Created bucket {info.name}.")
            return redirect(f"{request.path}?{urlencode({'next': next_url})}")
    context = {"bucket": bucket, "prefix": prefix, "next": next_url, "create_form": create_form}
    if not bucket:
        context["buckets"] = selectors.buckets(actor=actor)
        return render(request, "models_repo/browse.html", context)
    try:
        page = selectors.bucket_objects(
            actor=actor, bucket=bucket, prefix=prefix, token=request.GET.get("token")
        )
    except (AccessRefused, NotFound):
        raise Http404("No such bucket in this account.") from None

    def link(**params):
        return f"{request.path}?{urlencode({'next': next_url, **params})}"

    context.update(
        page=page,
        folders=[
            {
                "name": f[len(prefix) :],
                "open": link(bucket=bucket, prefix=f),
                "use": (
                    f"{next_url}?{urlencode({'source': 'pick', 'bucket': bucket, 'prefix': f})}"
                ),
            }
            for f in page.folders
        ],
        # one level up: the parent folder, the bucket's root, or (from the root) the buckets
        up=(
            link(bucket=bucket, prefix=prefix.rstrip("/").rpartition("/")[0] + "/")
            if prefix.rstrip("/").count("/")
            else link(bucket=bucket)
            if prefix
            else link()
        ),
        objects=[
            {
                "key": o.key,
                "name": o.key[len(prefix) :],
                "size": o.size,
                "download": f"{reverse('models_repo:download')}?"
                + urlencode({"bucket": bucket, "key": o.key}),
            }
            for o in page.objects
        ],
        more=link(bucket=bucket, prefix=prefix, token=page.next_token) if page.next_token else "",
    )
    return render(request, "models_repo/browse.html", context)


@page("GET", actions="storage:GetObject")
def download(request):
    """One file of a bucket, as an attachment (the bucket browser and the job page link here)."""
    try:
        info, stream = selectors.object_for_download(
            actor=require_actor(request),
            bucket=request.GET.get("bucket", ""),
            key=request.GET.get("key", ""),
        )
    except (AccessRefused, NotFound):
        raise Http404("No such bucket or file in this account.") from None
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    return object_response(info, stream)

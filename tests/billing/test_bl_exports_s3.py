"""Exports on S3 (production): written through django-storages' S3 backend to a real S3 API
over HTTP (moto's server) and handed out as a presigned link that expires."""

from __future__ import annotations

import csv
import io
import time
import urllib.request
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import boto3
from django.core.files.storage import storages

from billing import bills, exports, services
from tests.models_repo.conftest import fake_aws, moto_endpoint  # noqa: F401
from tests.serving.conftest import make_group


def test_export_to_s3_with_a_presigned_link(owner, catalogue, settings, moto_endpoint, fake_aws):  # noqa: F811
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket="ems-bills"
    )
    settings.EMS_BILLING_EXPORT_STORAGE = "s3"
    settings.STORAGES = {
        **settings.STORAGES,
        "billing_exports": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "ems-bills",
                "endpoint_url": moto_endpoint,
                "addressing_style": "path",
                "querystring_auth": True,
                "querystring_expire": 120,
                "default_acl": "private",
            },
        },
    }
    storages._storages.pop("billing_exports", None)
    try:
        group = make_group(tenant=owner.tenant)
        services.purchase_create(
            operator=None,
            group=group,
            months=1,
            price="123.45",
            starts_at=datetime(2026, 1, 3, tzinfo=UTC),
            cores_per_node=2,
            memory_gib_per_node=4,
        )
        link = exports.export(tenant=owner.tenant, month=date(2026, 1, 1), fmt="csv")
        assert link["url"].startswith(moto_endpoint)
        query = parse_qs(urlsplit(link["url"]).query)
        expires = int(query["Expires"][0]) if "Expires" in query else None
        if expires is not None:  # SigV2: an absolute time; SigV4: X-Amz-Expires seconds
            assert abs(expires - (time.time() + 120)) < 30
        else:
            assert query["X-Amz-Expires"] == ["120"]
        assert link["path"].startswith(f"tenant-{owner.tenant.app_id}/2026-01/")
        with urllib.request.urlopen(link["url"], timeout=10) as answer:
            rows = list(csv.DictReader(io.StringIO(answer.read().decode())))
        view = bills.bill_view(owner.tenant.pk, date(2026, 1, 1))
        assert rows[-1]["kind"] == "total" and Decimal(rows[-1]["amount"]) == view.total
        assert view.total == Decimal("123.45")
    finally:
        storages._storages.pop("billing_exports", None)

"""The five steps in a real browser (Debian's Chromium driven by Playwright) against a live
portal on the embedded default: sign up → authorize the service role → a bucket → a config three
times, once per model source (upload, pick in the browse dialog, typed address) → deploy on the
public group → Normal without a reload → the invoke page → its curl line → roses; a sub-account
restricted until a policy is attached; the operator adds a tenant; then the demo tenant of
`make run` (log in → Getting started → deploy flowers → roses in the invoke console), the
service page's monitoring charts with its requests, and the billing page with its CSV and XLSX
exports downloaded and opened. Every step is screenshotted (``EMS_SCREENSHOTS``, default
var/screenshots) and checked with axe-core: no serious or critical violation on the pages
walked."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.livestack import live_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).with_name("axe.min.js")
# docs/screenshots is refreshed by running with EMS_SCREENSHOTS=docs/screenshots
SHOTS = Path(os.environ.get("EMS_SCREENSHOTS") or ROOT / "var" / "screenshots")
PASSWORD = "Browser-journey-9!"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def flower(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    subprocess.run(
        [sys.executable, "-m", "runtimes.examples", str(out), "--only", "flower"],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return out / "flower"


@pytest.fixture(scope="module")
def stack():
    live = live_stack()
    try:
        live.start()
        yield live
    finally:
        live.stop()
        shutil.rmtree(live.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        service_missing("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("playwright is not installed (requirements-dev.txt)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


class Journey:
    def __init__(self, page, base: str, start: int = 0):
        self.page, self.base, self.step = page, base, start
        self.violations: list[str] = []
        SHOTS.mkdir(parents=True, exist_ok=True)

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        """A screenshot for the user guide, then axe-core's serious and critical findings."""
        self.step += 1
        self.page.screenshot(path=str(SHOTS / f"{self.step:02d}-{name}.png"), full_page=True)
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
        self.violations += [f"{name}: {item}" for item in result]


def test_five_steps_in_a_browser(stack, browser, flower, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    j = Journey(page, stack.web_url)
    try:
        _journey(j, page, stack, flower, tmp_path)
    except Exception:
        page.screenshot(path=str(SHOTS / "failed.png"), full_page=True)
        raise
    finally:
        context.close()


def _journey(j, page, stack, flower, tmp_path) -> None:
    # 1. Sign up: the new main account lands on the service-role page.
    j.go("/accounts/signup/")
    page.fill("#id_username", "bea")
    page.fill("#id_email", "bea@example.com")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_tenant_name", "Bea's models")
    j.shot("signup")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/service-role/"))
    j.shot("service-role")

    # 2. Authorize the service role in one click; the dashboard leads on.
    page.click("button[name=authorize]")
    j.go("/accounts/")
    assert "Getting started" in page.content()
    j.shot("dashboard")

    # A bucket for the model (the bucket browser).
    j.go("/models/browse/")
    page.fill("#id_name", "models")
    page.select_option("#id_region", label="ap-guangzhou")
    page.click("text=Create bucket")
    bucket = re.search(r"models-\d{10}", page.content()).group(0)
    j.shot("bucket")

    # 3a. A config from an uploaded folder (the upload tab, with a progress bar).
    def config_form(name: str, tab: str) -> None:
        j.go("/models/new/")
        page.fill("#id_name", name)
        page.select_option("#id_region", label="ap-guangzhou")
        page.select_option("#id_runtime", label="TF-Serving")
        page.check(f"input[name=source][value={tab}]")

    config_form("flowers", "upload")
    page.select_option("#id_bucket", bucket)
    page.fill("#id_prefix", "flowers/")
    page.set_input_files("#id_files", str(flower / "1"))
    assert page.is_hidden("#id_address")  # only the chosen tab's fields show
    j.shot("config-upload")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/models/\d+/$"), timeout=240_000)
    assert "1.0" in page.content()
    j.shot("config-created")

    # 3b. The same folder picked in the browse dialog, without leaving the form.
    config_form("flowers-picked", "pick")
    page.click("#browse-open")
    page.click(f"#browse-dialog >> text={bucket}")
    page.click("#browse-dialog >> text=flowers/")
    page.click("#browse-dialog >> text=Use this folder")
    assert page.input_value("#id_prefix") == "flowers/"
    j.shot("config-pick")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/models/\d+/$"), timeout=240_000)

    # 3c. And typed as a cos:// address.
    config_form("flowers-typed", "address")
    page.fill("#id_address", f"cos://{bucket}.cos.ap-guangzhou.myqcloud.com/flowers/")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/models/\d+/$"), timeout=240_000)

    # 4. Deploy on the public group: only the public group's fields show, auth is on.
    j.go("/services/new/")
    page.fill("#id_name", "flowers")
    page.select_option("#id_region", "ap-guangzhou")
    page.select_option("#id_version", label="flowers 1.0")
    assert page.is_visible("#id_quota_count") and page.is_hidden("#id_memory_mib")
    assert page.is_hidden("#id_min_replicas")  # manual scaling: no autoscaling fields
    assert page.is_checked("#id_auth_enabled")
    assert "free now" in page.inner_text("#group-capacity")
    j.shot("deploy")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/services/ems-[a-z0-9]{8}/$"))
    service_id = page.url.rstrip("/").rsplit("/", 1)[1]
    j.shot("deploying")
    # Normal arrives by itself (the page refreshes its status; no reload here).
    page.wait_for_selector("#live-status [data-status=Normal]", timeout=240_000)
    j.shot("normal")

    # 5. The invoke page: reveal the token, run the curl line it shows.
    j.go(f"/services/{service_id}/invoke/")
    page.click("#reveal")
    page.wait_for_function("!document.getElementById('curl').textContent.includes('TOKEN')")
    curl = page.inner_text("#curl")
    j.shot("invoke")
    shutil.copy(flower / "flower.json", tmp_path / "flower.json")
    answer = subprocess.run(
        [*shlex.split(curl), "-s", "--max-time", "60"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    body = json.loads(answer.stdout)
    assert body["predictions"][0]["classes"] == "roses", body

    # The sub-account story: restricted until the main account attaches EMSFullAccess.
    app_id = re.search(r"\((\d{10})\)", page.inner_text("header")).group(1)
    j.go("/accounts/sub-accounts/")
    page.fill("#id_name", "sam")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    sub_context = page.context.browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True
    )
    sub = sub_context.new_page()
    sub.set_default_timeout(60_000)
    s = Journey(sub, stack.web_url, start=j.step)
    s.go("/accounts/login/")
    sub.fill("#id_app_id", app_id)
    sub.fill("#id_username", "sam")
    sub.fill("#id_password", PASSWORD)
    sub.click("main button[type=submit]")
    sub.wait_for_url(re.compile(r"/accounts/restricted/"))
    assert "EMSFullAccess" in sub.content()
    s.shot("sub-restricted")
    j.go("/accounts/sub-accounts/")
    page.click("main >> text=sam")
    page.select_option("#id_policy", label="EMSFullAccess (preset)")
    page.click("main form:has(input[value=attach]) button[type=submit]")
    j.step = s.step
    j.shot("attach-policy")
    s.step = j.step
    s.go("/accounts/restricted/")  # asked again: the member goes on to the dashboard
    sub.wait_for_url(re.compile(r"/accounts/$"))
    s.go("/services/new/")
    sub.fill("#id_name", "sam-flowers")
    sub.select_option("#id_region", "ap-guangzhou")
    sub.select_option("#id_version", label="flowers 1.0")
    sub.click("main button[type=submit]")
    sub.wait_for_url(re.compile(r"/services/ems-[a-z0-9]{8}/$"))
    s.shot("sub-deployed")
    sub_service = sub.url.rstrip("/").rsplit("/", 1)[1]
    sub.click("button[name=delete]")
    sub.click("#confirm-dialog [data-answer=yes]")
    sub.wait_for_url(re.compile(r"/services/$"))
    assert sub_service not in sub.inner_text("#live-services")
    j.violations += s.violations
    j.step = s.step
    sub_context.close()

    # Stop asks first and says what will happen.
    j.go(f"/services/{service_id}/")
    page.click("button[name=stop]")
    assert "endpoint answers 503" in page.inner_text("#confirm-dialog")
    j.shot("confirm-stop")
    page.click("#confirm-dialog [data-answer=yes]")
    page.wait_for_selector("#live-status [data-status=Stopped]", timeout=120_000)

    # The operator creates a tenant in the admin: it gets an app id and its main account.
    stack.manage("createsuperuser", "--noinput", "--username", "op", "--email", "op@example.com",
                 env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD})  # fmt: skip
    op_context = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    op = op_context.new_page()
    op.goto(stack.web_url + "/admin/login/")
    op.fill("#id_username", "op")
    op.fill("#id_password", PASSWORD)
    op.click("input[type=submit]")
    op.goto(stack.web_url + "/admin/accounts/tenant/add/")
    op.fill("#id_name", "Operator-made")
    op.fill("#id_username", "omar")
    op.fill("#id_email", "omar@example.com")
    op.fill("#id_password", PASSWORD)
    op.click("input[name=_save]")
    op.wait_for_url(re.compile(r"/admin/accounts/tenant/"))
    row = op.inner_text("#result_list")
    assert "Operator-made" in row and re.search(r"\d{10}", row)
    j.step += 1
    op.screenshot(path=str(SHOTS / f"{j.step:02d}-operator-tenant.png"), full_page=True)
    op_context.close()

    _demo_monitoring_and_billing(j, page, stack, flower, tmp_path)
    assert not j.violations, "\n".join(j.violations)


def _demo_monitoring_and_billing(j, page, stack, flower, tmp_path) -> None:
    """The README's first run: `make run`'s demo tenant (bootstrapped with --demo, as DEBUG
    runs do) logs in, deploys `flowers` from Getting started and gets roses in the invoke
    page's console; then the service page's charts draw its requests, and the billing page
    shows its cost and exports it as CSV and XLSX."""
    # the demo's flower example is the same generator's output as the fixture's: reuse it
    examples = stack.data_dir / "examples"
    shutil.copytree(flower, examples / "flower", dirs_exist_ok=True)
    (examples / "flower" / ".done").write_text("ok\n")
    stack.manage("ems_bootstrap", "--demo", env={"DEBUG": "1"}, timeout=600)
    context = page.context.browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, accept_downloads=True
    )
    demo = context.new_page()
    demo.set_default_timeout(60_000)
    d = Journey(demo, stack.web_url, start=j.step)
    d.go("/accounts/login/")
    demo.fill("#id_username", "demo")
    demo.fill("#id_password", "ems-demo-tenant")
    demo.click("main button[type=submit]")
    demo.wait_for_url(re.compile(r"/accounts/$"))
    panel = demo.locator("section.getting-started")
    for name in ("flowers", "flowers-ir", "iris", "angel-lr"):  # the four examples, one click
        assert panel.locator("a", has_text=f"{name} 1.0").count() == 1, name
    d.shot("demo-dashboard")
    panel.locator("a", has_text="flowers 1.0").first.click()
    demo.wait_for_url(re.compile(r"/services/new/"))
    assert demo.input_value("#id_name") == "flowers"
    demo.click("main button[type=submit]")
    demo.wait_for_url(re.compile(r"/services/ems-[a-z0-9]{8}/$"))
    service_id = demo.url.rstrip("/").rsplit("/", 1)[1]
    demo.wait_for_selector("#live-status [data-status=Normal]", timeout=240_000)

    # The invoke page's console: the seed's flower.json from a file, sent through the gateway.
    demo.click("main a.invoke")
    demo.wait_for_url(re.compile(r"/invoke/$"))
    demo.set_input_files("#console-file", str(flower / "flower.json"))
    demo.wait_for_function("document.getElementById('console-body').value.includes('b64')")
    for _ in range(5):  # a few requests, for the charts below
        demo.evaluate("document.getElementById('console-answer').textContent = ''")
        demo.click("#send")
        demo.wait_for_function(
            "document.getElementById('console-answer').textContent.includes('predictions')"
        )
    answer = json.loads(demo.inner_text("#console-answer"))
    assert answer["predictions"][0]["classes"] == "roses", answer
    assert demo.inner_text("#console-status") == "200"
    d.shot("demo-console")

    # Monitoring: the charts of the service page draw the requests just sent.
    d.go(f"/services/{service_id}/")
    metrics = demo.get_attribute("#monitoring", "data-url") + "?window=1h"
    fetch = "async (url) => (await fetch(url, {credentials: 'same-origin'})).json()"
    deadline = time.monotonic() + 120
    while True:
        doc = demo.evaluate(fetch, metrics)
        if any(value > 0 for _, value in doc["series"].get("rps") or []):
            break
        assert time.monotonic() < deadline, f"no request rate within 120 s: {doc}"
        time.sleep(3)
    assert any(v >= 1 for _, v in doc["series"]["replicas"]), doc["series"]["replicas"]
    d.go(f"/services/{service_id}/")  # drawn from the data that is there now
    demo.wait_for_selector("#monitoring[data-updated]")
    assert demo.locator("#monitoring figure.chart canvas").count() >= 5
    assert demo.inner_text("#monitoring .chart-status") == ""
    d.shot("monitoring")

    # Billing: the month to date lists the service once the meter has passed (10 s windows).
    deadline = time.monotonic() + 120
    while True:
        d.go("/billing/")
        if f"/services/{service_id}/" in demo.content():
            break
        assert time.monotonic() < deadline, "the bill never listed the service"
        time.sleep(3)
    d.shot("billing")
    with demo.expect_download() as download:
        demo.click("main a:has-text('bill (CSV)')")
    path = tmp_path / "bill.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(path.open()))
    assert rows[-1]["kind"] == "total" and any(r["service_id"] == service_id for r in rows)
    with demo.expect_download() as download:
        demo.click("main a:has-text('bill and usage (XLSX)')")
    path = tmp_path / "bill.xlsx"
    download.value.save_as(path)
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    assert book.sheetnames == ["Bill", "Usage"]
    usage = list(book["Usage"].iter_rows(values_only=True))[1:]
    assert usage and {row[0] for row in usage} == {service_id}
    j.violations += d.violations
    j.step = d.step
    context.close()

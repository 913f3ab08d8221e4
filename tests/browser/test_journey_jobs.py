"""A batch job in a real browser (Debian's Chromium driven by Playwright) against a live portal
on the embedded default, as the demo tenant: the angel-lr config's version page → "Batch job" →
the example inputs picked in the browse dialog → the estimate → start → the progress bar reaches
100% without a reload → the output folder in the bucket browser → a downloaded output file,
line-aligned with its input. Screenshots (``EMS_SCREENSHOTS``) are named ``jobs-NN-*.png``; each
page is checked with axe-core (no serious or critical violation)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from accounts.bootstrap import DEMO_PASSWORD, DEMO_USER
from tests.browser.test_journey import AXE, SHOTS, browser  # noqa: F401 - the fixture
from tests.livestack import live_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "examples" / "batch-inputs" / "angel-lr"


@pytest.fixture(scope="module")
def stack():
    live = live_stack()
    try:
        live.start()
        # the demo tenant (role, bucket, example configs and inputs) as `make run` makes it
        live.manage("ems_bootstrap", "--demo", env={"DEBUG": "1"}, timeout=1800)
        yield live
    finally:
        live.stop()
        shutil.rmtree(live.data_dir, ignore_errors=True)


class Shots:
    def __init__(self, page):
        self.page, self.step, self.violations = page, 0, []
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(SHOTS / f"jobs-{self.step:02d}-{name}.png"), full_page=True)
        self.page.add_script_tag(path=str(AXE))
        found = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
        self.violations += [f"{name}: {item}" for item in found]


def test_a_batch_job_in_the_browser(stack, browser, tmp_path):  # noqa: F811 - the fixture
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        _journey(page, stack, tmp_path)
    except Exception:
        page.screenshot(path=str(SHOTS / "jobs-failed.png"), full_page=True)
        raise
    finally:
        context.close()


def _journey(page, stack, tmp_path) -> None:
    s = Shots(page)
    base = stack.web_url
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", DEMO_USER)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/"))

    # The config's page: each version starts an online service or a batch job.
    page.goto(base + "/models/")
    page.click("main >> text=angel-lr")
    page.wait_for_url(re.compile(r"/models/\d+/$"))
    page.click("a.start-job")
    page.wait_for_url(re.compile(r"/jobs/new/\?version=\d+"))
    assert page.input_value("#id_name") == "angel-lr-job"
    assert page.is_visible("#id_quota_count") and page.is_hidden("#id_memory_mib")

    # The example inputs, picked in the browse dialog (the config form's picker).
    page.check("input[name=source][value=pick]")
    page.click("#browse-open")
    page.click("#browse-dialog >> text=examples-")
    page.click("#browse-dialog >> text=inputs/")
    page.click("#browse-dialog >> text=angel-lr/")
    page.click("#browse-dialog >> text=Use this folder")
    assert page.input_value("#id_prefix") == "inputs/angel-lr/"
    page.dispatch_event("#id_prefix", "change")
    page.fill("#id_batch_size", "32")
    # the estimate counts the picked input's items and prices the workers per hour
    page.wait_for_function("document.getElementById('estimate').textContent.includes('500 items')")
    assert "per hour" in page.inner_text("#estimate")
    s.shot("form")

    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/job-[a-z0-9]{8}/$"))
    job_id = page.url.rstrip("/").rsplit("/", 1)[1]
    page.evaluate("window.emsNoReload = true")  # gone if the page were loaded again
    # first seen before it ends (its workers take seconds to start), the bar not yet full
    assert page.get_attribute("#live-job [data-status]", "data-status") in ("Waiting", "Running")
    assert page.get_attribute("#job-progress", "value") != "500"
    s.shot("started")

    # The progress bar fills by itself (the page's live region), to 100% and Succeeded.
    page.wait_for_selector("#live-job [data-status=Succeeded]", timeout=300_000)
    assert page.evaluate("window.emsNoReload") is True
    bar = page.locator("#job-progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "500"
    assert "100.0%" in page.inner_text("#live-job .progress-text")
    s.shot("succeeded")

    # The output folder in the bucket browser, then one output file downloaded.
    page.click("a.browse-output")
    page.wait_for_url(re.compile(r"/models/browse/\?"))
    listing = page.inner_text("table.objects")
    assert "part-1.jsonl.out" in listing and "part-2.jsonl.out" in listing
    s.shot("output")
    with page.expect_download() as download:
        page.click("table.objects tr:has-text('part-2.jsonl.out') a.download")
    saved = tmp_path / "part-2.jsonl.out"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "part-2.jsonl.out"
    out = [json.loads(line) for line in saved.read_text().splitlines()]
    assert len(out) == len((INPUTS / "part-2.jsonl").read_text().splitlines())
    assert all("pred" in row and "proba" in row for row in out), out[:3]

    page.goto(f"{base}/jobs/")
    assert job_id in page.inner_text("#live-jobs")
    s.shot("list")
    assert not s.violations, "\n".join(s.violations)

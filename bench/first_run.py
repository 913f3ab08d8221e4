"""The README's first run, timed: from `make run` printing its URL to the demo's first
prediction, the way a new user takes it — log in as `demo` in a real browser (Debian's
Chromium through Playwright), follow the dashboard's *Getting started* to the one-click deploy
of `flowers`, wait for Normal on the service page, send the seed's `flower.json` from the
invoke page's console — and the same prediction once more with the page's curl line.

    python -m bench.first_run --url http://127.0.0.1:8000 \
        --flower var/examples/flower/flower.json [--since EPOCH_SECONDS] [--shots DIR]

``--since`` is the moment the URL was printed (default: now); each step's time is printed from
there, and the last line is ``first prediction after N s``. The machine's load is printed next to
the numbers. Results: docs/user-guide.md and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="The portal URL `make run` printed.")
    parser.add_argument("--flower", required=True, type=Path, help="The seed's flower.json.")
    parser.add_argument("--since", type=float, default=None, help="When the URL was printed.")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", default="ems-demo-tenant")
    parser.add_argument("--shots", type=Path, default=None, help="Screenshots of each step here.")
    args = parser.parse_args()
    since = args.since or time.time()
    url = args.url.rstrip("/")

    def mark(what: str) -> None:
        load = os.getloadavg()[0]
        print(f"{time.time() - since:7.1f} s  {what}  (load {load:.1f})", flush=True)

    # The page may not answer the very moment the URL is printed: a user reloads.
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url + "/accounts/login/", timeout=5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    mark("login page answers")

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        # bypass_csp: Playwright's own waits evaluate strings, which the portal's CSP forbids
        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(120_000)
        step = [0]

        def shot(name: str) -> None:
            if args.shots:
                step[0] += 1
                args.shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.shots / f"{step[0]:02d}-{name}.png"), full_page=True)

        page.goto(url + "/accounts/login/")
        page.fill("#id_username", args.username)
        page.fill("#id_password", args.password)
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r"/accounts/$"))
        mark("logged in: the dashboard")
        shot("dashboard")
        panel = page.locator("section.getting-started")
        panel.locator("a", has_text="flowers 1.0").first.click()
        page.wait_for_url(re.compile(r"/services/new/"))
        mark("the deploy form, prefilled from Getting started")
        shot("deploy")
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r"/services/ems-[a-z0-9]{8}/$"))
        service_id = page.url.rstrip("/").rsplit("/", 1)[1]
        mark(f"deployed {service_id}: Deploying")
        page.wait_for_selector("#live-status [data-status=Normal]", timeout=600_000)
        mark("Normal (the page refreshed itself)")
        shot("normal")
        page.click("main a:has-text('Invoke')")
        page.wait_for_url(re.compile(r"/invoke/$"))
        page.set_input_files("#console-file", str(args.flower))
        page.wait_for_function(
            "document.getElementById('console-body').value.includes('b64')", timeout=30_000
        )
        page.click("#send")
        page.wait_for_function(
            "document.getElementById('console-answer').textContent.includes('classes')",
            timeout=120_000,
        )
        answer = json.loads(page.inner_text("#console-answer"))
        assert answer["predictions"][0]["classes"] == "roses", answer
        mark("roses, in the invoke page's console")
        shot("roses")
        page.click("#reveal")
        page.wait_for_function("!document.getElementById('curl').textContent.includes('TOKEN')")
        curl = page.inner_text("#curl")
        browser.close()
    out = subprocess.run(
        [*shlex.split(curl.replace("@flower.json", f"@{args.flower}")), "-s", "--max-time", "60"],
        capture_output=True,
        text=True,
        check=True,
        timeout=90,
    )
    body = json.loads(out.stdout)
    assert body["predictions"][0]["classes"] == "roses", body
    mark("roses, with the invoke page's curl line")
    print(f"first prediction after {time.time() - since:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""The "Control plane at scale" section of docs/benchmarks.md from two runs of
``bench/controlplane_bench.py`` (baseline and current)."""

from __future__ import annotations

BEAT_S = 15.0
PAGE_TARGET_MS = 100.0


def _cell(run: dict | None, key: str, scale: float = 1.0, extra: float = 0.0) -> str:
    """``s (queries)``; a baseline timed on a sample is scaled to the whole (``≈``)."""
    if run is None or key not in run:
        return "-"
    row = run[key]
    if scale == 1.0 and not extra:
        return f"{row['s']:.2f} s ({row['queries']:,} queries)"
    seconds, queries = row["s"] * scale + extra, row["queries"] * scale
    return f"≈ {seconds:.1f} s (≈ {queries:,.0f} queries)"


def report(base: dict | None, cur: dict, args) -> str:
    from bench.report import markdown_table

    n, busy = cur["services"], cur["busy"]
    rows = []

    def add(label, base_text, key, target=None):
        now = cur[key]["s"]
        verdict = "-" if target is None else ("met" if now <= target else "NOT met")
        limit = f"≤ {target:.0f} s" if target else "-"
        rows.append([label, base_text, _cell(cur, key), limit, verdict])

    whole = n / base["sample"] if base else 1.0
    sweep = base["sweep"]["s"] if base else 0.0
    add(
        f"route publication, {n:,} routes into an empty store",
        _cell(base, "publish_empty store", whole),
        "publish_empty store",
        BEAT_S,
    )
    add("route publication, nothing changed", _cell(base, "publish_unchanged", whole),
        "publish_unchanged", BEAT_S)  # fmt: skip
    add(
        f"reconcile pass over {n:,} services, nothing to do (beat's, every 15 s)",
        _cell(base, "pass_steady", whole, sweep),
        "pass_steady",
        BEAT_S,
    )
    for key, what in (("pass_launch", "launching"), ("pass_healthy", "becoming Normal")):
        base_text = "-"
        if base:  # the busy ones timed, the others as quiet as in the steady pass
            per_busy = base[key]["s"] / base["busy"]
            per_quiet = base["pass_steady"]["s"] / base["sample"]
            seconds = per_busy * busy + per_quiet * (n - busy) + sweep
            base_text = f"≈ {seconds:.1f} s ({per_busy * 1000:.0f} ms per busy service)"
        add(f"reconcile pass, {busy:,} of {n:,} services {what}", base_text, key)
        rows[-1][2] = (  # the passes' own queries run on their threads' connections
            f"{cur[key]['s']:.2f} s ({cur[key]['s'] / busy * 1000:.0f} ms per busy service, "
            f"{cur.get('threads', 1)} at a time)"
        )
    for label, page in cur["pages"].items():
        old = base["pages"].get(label) if base else None
        rows.append(
            [
                label,
                f"p50 {old['p50']:.0f} ms, p95 {old['p95']:.0f} ms" if old else "-",
                f"p50 {page['p50']:.0f} ms, p95 {page['p95']:.0f} ms"
                + (f" (CPU {page['cpu']:.0f} ms)" if "cpu" in page else ""),
                f"p50 ≤ {PAGE_TARGET_MS:.0f} ms",
                "met" if page["p50"] <= PAGE_TARGET_MS else "NOT met",
            ]
        )
    head = ["what", f"baseline ({args.baseline_ref})" if base else "baseline", "current",
            "target", ""]  # fmt: skip
    loads = f"{base['load']:.2f} (baseline), " if base else ""
    when = (
        " (two invocations minutes apart, `--report-from`)" if args.report_from else " in this run"
    )
    sampled = (
        f"The baseline's passes and publications are per service, so they were timed on "
        f"{base['sample']} services and scaled to {n:,} (≈; plus its sweep of every node, "
        f"{sweep:.2f} s); its pages ran on all {n:,}. "
        if base
        else ""
    )
    per_busy = [cur[k]["s"] / busy * 1000 for k in ("pass_launch", "pass_healthy")]
    threads = cur.get("threads", 8)
    notes = (
        "\n\n- The pass over services with nothing to do and the publication cost a fixed "
        f"number of queries whatever the count ({cur['pass_steady']['queries']} and "
        f"{cur['publish_unchanged']['queries']} here; pinned by "
        "`tests/serving/test_sv_scale.py`): one listing per node, two reads of every live "
        "service and instance, the quiet check in Python, one read and one pipelined write of "
        "the route store.\n"
        "- A service with work still gets its full pass, under its lease: the lease taken and "
        "dropped, each step's writes committed (launch: 3 commits; healthy: 4), the backend "
        f"called live. A committed write cost {cur['commit_ms']:.1f} ms here (its fsync, at "
        f"this load); the passes run {threads} at a time. So {busy:,} services deployed at "
        f"once cost {per_busy[0]:.0f} + {per_busy[1]:.0f} ms each over two passes, and a pass "
        f"in which all {n:,} services need work at once (a mass redeploy, a restored database) "
        f"takes ≈ {per_busy[0] * n / 1000:.0f} s on this machine — more than a beat period; "
        "what is left is picked up by the next pass and by the services' own reconcile tasks, "
        "which workers run in parallel.\n"
        "- The list page and the API read a page in a fixed number of queries (pinned by the "
        "same test): the count, the page's keys on the index `service_list` (tenant, newest "
        "first, live only), then only those 50 rows with their joins, and (API) one count of "
        "their running instances. What is left is Python — middleware, the door's policy "
        "check, the template or the serializer of 50 rows — and, on 2 cores shared at this "
        "load, the share of a core the request gets."
    )
    return (
        f"Written by `python bench/controlplane_bench.py` on PostgreSQL and Redis: {n:,} "
        f"services (1 replica each) of one tenant on {cur['nodes']} nodes of the scale harness "
        "(`serving.backends.simulated`: instances start and stop instantly, in memory — what is "
        "measured is the control plane: queries, route-store round trips, Python). Baseline and "
        f"current ran one after the other{when}, each in its own process and throw-away "
        f"database. {sampled}Page times are Django test-client requests (server time: "
        f"middleware, queries, template; {args.samples} requests each; CPU: the portal process's "
        "own CPU time per request, p50 — the database's is not in it). Load average at the end "
        f"of each run: {loads}{cur['load']:.2f} (current) on 2 cores shared with other work.\n\n"
        + markdown_table(head, rows)
        + notes
    )

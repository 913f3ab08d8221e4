"""Names people type → the ids the API takes: configs and services by name or id, versions by
number (``2`` or ``2.0``), groups and runtimes by name."""

from __future__ import annotations

from cli.client import NOT_FOUND, REFUSED, Api, CliError


def _one(rows: list[dict], ref: str, what: str, keys: tuple[str, ...]) -> dict:
    matches = [r for r in rows if any(str(r.get(k)) == ref for k in keys)]
    if not matches:
        names = ", ".join(sorted({str(r.get(keys[-1])) for r in rows})[:20]) or "none"
        raise CliError(f"No {what} named {ref!r}; yours: {names}.", NOT_FOUND)
    if len(matches) > 1:
        raise CliError(f"{ref!r} names {len(matches)} {what}s; use its id.", REFUSED)
    return matches[0]


def config(api: Api, ref: str) -> dict:
    if ref.isdigit():
        return api.get(f"model-configs/{ref}/")
    return _one(api.all("model-configs/"), ref, "config", ("name",))


def version(api: Api, cfg: dict, number: str | None) -> dict:
    """The numbered version, or the newest one when ``number`` is None."""
    versions = cfg.get("versions") or api.get(f"model-configs/{cfg['id']}/versions/")
    if not versions:
        raise CliError(f"Config {cfg['name']} has no version yet.", NOT_FOUND)
    if number is None:
        return max(versions, key=lambda v: v["number"])
    try:
        wanted = int(float(number))
    except ValueError:
        raise CliError(f"Version {number!r} is not a number like 2 or 2.0.", REFUSED) from None
    for row in versions:
        if row["number"] == wanted:
            return row
    have = ", ".join(v["version"] for v in versions)
    raise CliError(f"Config {cfg['name']} has no version {number}; it has {have}.", NOT_FOUND)


def config_version(api: Api, ref: str) -> tuple[dict, dict]:
    """``CONFIG[:VERSION]`` → (config, version)."""
    name, _, number = ref.partition(":")
    cfg = config(api, name)
    return cfg, version(api, cfg, number or None)


def group(api: Api, ref: str | None, region: str) -> dict:
    groups = api.all("resource-groups/")
    if ref is None:
        public = [g for g in groups if g["kind"] == "public" and g["region"] == region]
        if not public:
            raise CliError(f"No public resource group in {region}; pass --group.", NOT_FOUND)
        return public[0]
    return _one(groups, ref, "resource group", ("id", "name"))


def runtime(api: Api, ref: str) -> dict:
    return _one(api.all("runtimes/"), ref, "runtime", ("id", "runtime", "name"))


def service(api: Api, ref: str) -> dict:
    if ref.startswith("ems-") and len(ref) == 12:
        return api.get(f"services/{ref}/")
    return _one(api.all("services/"), ref, "service", ("service_id", "name"))


def job(api: Api, ref: str) -> dict:
    """A batch job by id (``job-…``) or name."""
    if ref.startswith("job-"):
        return api.get(f"jobs/{ref}/")
    return _one(api.all("jobs/"), ref, "job", ("job_id", "name"))

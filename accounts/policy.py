"""Policy documents: validation against the catalogue, and evaluation.

A document is ``{"version": "1.0", "statement": [{"effect": "allow"|"deny", "action": …,
"resource": …}]}``; key names are case-insensitive (``Statement``/``statement``), ``action`` and
``resource`` are a string or a list, ``*`` and ``?`` are wildcards. Validation errors name the
offending path as written, e.g. ``Statement[1].Action[0]``. Evaluation: an explicit deny beats
any allow; nothing allowed means denied.
"""

from __future__ import annotations

import re
from functools import lru_cache

from accounts import catalogue
from portal import jsonlimits

STATEMENT_KEYS = {"effect", "action", "resource", "sid"}
RESOURCE_RE = re.compile(
    r"^ems:(?P<region>[a-z0-9*?-]+):(?P<app_id>[0-9*?]+):"
    r"(?P<rest>\*|[a-z*?][a-z0-9*?-]*(/[A-Za-z0-9._*?@/:-]+)?)$"
)
ACTION_RE = re.compile(r"^(\*|[a-z*?][a-z0-9*?-]*:[A-Za-z*?][A-Za-z0-9*?]*)$")


class PolicyError(ValueError):
    """A document that does not validate; ``path`` names where (``Statement[1].Action[0]``)."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


@lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in glob)
    return re.compile(f"^{body}$", re.IGNORECASE if ignore_case else 0)


def action_matches(pattern: str, action: str) -> bool:
    return bool(_pattern(pattern, True).match(action))


def resource_matches(pattern: str, resource: str) -> bool:
    return bool(_pattern(pattern, False).match(resource))


def _key(mapping: dict, name: str, path: str, required: bool = True):
    found = [k for k in mapping if isinstance(k, str) and k.lower() == name]
    if len(found) > 1:
        raise PolicyError(path, f"{name!r} is given more than once ({', '.join(found)})")
    if not found:
        if required:
            raise PolicyError(path, f"missing {name!r}")
        return None, None
    return found[0], mapping[found[0]]


def _strings(value, path: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise PolicyError(path, "must be a string or a non-empty list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PolicyError(f"{path}[{i}]", "must be a string")
    return value


def validate_action(value: str, path: str) -> None:
    if not ACTION_RE.match(value):
        raise PolicyError(path, f"{value!r} is not an action (e.g. ems:CreateModelConfig, ems:*)")
    if "*" in value or "?" in value:
        if not any(action_matches(value, a.name) for a in catalogue.all_actions()):
            raise PolicyError(path, f"{value!r} matches no action in the catalogue")
    elif catalogue.get_action(value) is None:
        raise PolicyError(path, f"unknown action {value!r}")


def validate_resource(value: str, path: str) -> None:
    if value != "*" and not RESOURCE_RE.match(value):
        raise PolicyError(
            path,
            f"{value!r} is not a resource: use '*' or ems:<region>:<app_id>:<kind>/<id> "
            "(e.g. ems:ap-beijing:1255502019:service/ems-7f3k2p9q; * and ? are wildcards)",
        )


def validate(document) -> dict:
    """Return the normalized document (lower-case keys, lists) or raise :class:`PolicyError`."""
    if isinstance(document, str | bytes):
        try:
            document = jsonlimits.loads(document)
        except ValueError as exc:
            raise PolicyError("document", f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PolicyError("document", "must be a JSON object with a 'statement' list")
    for key in document:
        if not isinstance(key, str) or key.lower() not in {"version", "statement"}:
            raise PolicyError(str(key), "unknown key (expected 'version' and 'statement')")
    _, version = _key(document, "version", "", required=False)
    if version is not None and not isinstance(version, str):
        raise PolicyError("Version", "must be a string")
    st_key, statements = _key(document, "statement", "")
    if not isinstance(statements, list) or not statements:
        raise PolicyError(st_key, "must be a non-empty list of statements")
    normalized = []
    for i, st in enumerate(statements):
        path = f"{st_key}[{i}]"
        if not isinstance(st, dict):
            raise PolicyError(path, "must be an object with effect, action and resource")
        for key in st:
            if not isinstance(key, str) or key.lower() not in STATEMENT_KEYS:
                raise PolicyError(f"{path}.{key}", "unknown key (effect, action, resource, sid)")
        e_key, effect = _key(st, "effect", path)
        if not isinstance(effect, str) or effect.lower() not in {"allow", "deny"}:
            raise PolicyError(f"{path}.{e_key}", "must be 'allow' or 'deny'")
        a_key, actions = _key(st, "action", path)
        actions = _strings(actions, f"{path}.{a_key}")
        for j, action in enumerate(actions):
            validate_action(action, f"{path}.{a_key}[{j}]")
        r_key, resources = _key(st, "resource", path)
        resources = _strings(resources, f"{path}.{r_key}")
        for j, resource in enumerate(resources):
            validate_resource(resource, f"{path}.{r_key}[{j}]")
        item = {"effect": effect.lower(), "action": list(actions), "resource": list(resources)}
        _, sid = _key(st, "sid", path, required=False)
        if sid is not None:
            item["sid"] = str(sid)
        normalized.append(item)
    return {"version": version or "1.0", "statement": normalized}


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value or ())


def statement_matches(statement: dict, action: str, resource: str) -> bool:
    # Documents are normalized by the policy services, but a row written another way may hold
    # a single string where a list belongs (as IAM allows): it must still match, not silently
    # match nothing.
    return any(action_matches(p, action) for p in _as_list(statement.get("action"))) and any(
        resource_matches(p, resource) for p in _as_list(statement.get("resource"))
    )


def evaluate(policies, action: str, resource: str):
    """``policies`` is a list of ``(name, normalized document)``. Returns
    ``(allowed, statement, policy name)``: the first matching deny wins outright; else the first
    matching allow; else ``(False, None, None)``."""
    allow = None
    for name, document in policies:
        for statement in document.get("statement", ()):
            if not statement_matches(statement, action, resource):
                continue
            if str(statement.get("effect", "")).lower() == "deny":
                return False, statement, name
            if allow is None:
                allow = (True, statement, name)
    return allow or (False, None, None)

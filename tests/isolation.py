"""The registry of the isolation walk (``tests/test_isolation.py``).

Every app registers what the walk needs for its own URLs in a module
``tests/<app>/isolation_<app>.py`` with a function ``register(reg: Registry)``; the walk imports
every ``tests/**/isolation_*.py``. A URL pattern × method the registry cannot fill fails the walk.

- ``reg.setup(fn)``: ``fn(ctx)`` creates the app's objects for the victim tenant (``ctx.victim``,
  a World: the owner's tenant) and the outsider (``ctx.outsider``), storing them in ``ctx.v`` /
  ``ctx.o`` under names of the app's choosing (name victim objects so their names show up in
  ``ctx.markers``: strings that must never appear in any answer to the outsider).
- ``reg.objects(key, fn)``: ``fn(ctx) -> model instance`` of the *victim* tenant. ``key`` is a
  model label (``"models_repo.modelconfig"``, for both admin sites) or an API router basename
  (``"model-config"``, for ``{pk}`` of ``/api/v1/...``).
- ``reg.own(key, fn)``: the same for the *outsider's own* object (used when a request must reach
  body validation: the URL is the outsider's, the body's ids are the victim's).
- ``reg.case(url_name, method, kwargs=fn, body=fn, query="", own_url=False, expect=None)``:
  explicit values for one pattern × method (``query`` a string, or ``fn(ctx)`` for one naming
  the victim's objects) (required for plain web pages and for API writes
  without ``{pk}``); ``body`` should put the victim's ids in every writable id field.

Generic rules (``test_isolation.py``): a URL filled with a victim object answers 404 (the operator
admin: a redirect to its login, the outsider is no operator); every answer lacks the victim's
markers; after every request the victim's rows are unchanged and no row of any tenant refers to a
row of another tenant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Case:
    kwargs: Callable | None = None
    body: Callable | None = None
    query: str | Callable = ""
    own_url: bool = False
    expect: set[int] | None = None


@dataclass
class Ctx:
    victim: object
    outsider: object
    v: dict = field(default_factory=dict)
    o: dict = field(default_factory=dict)
    markers: set[str] = field(default_factory=set)


class Registry:
    def __init__(self):
        self.setups: list[Callable] = []
        self.victim_objects: dict[str, Callable] = {}
        self.own_objects: dict[str, Callable] = {}
        self.cases: dict[tuple[str, str], Case] = {}

    def setup(self, fn: Callable) -> None:
        self.setups.append(fn)

    def objects(self, key: str, fn: Callable) -> None:
        self.victim_objects[key.lower()] = fn

    def own(self, key: str, fn: Callable) -> None:
        self.own_objects[key.lower()] = fn

    def case(self, url_name: str, method: str | tuple, **kwargs) -> None:
        for m in (method,) if isinstance(method, str) else method:
            self.cases[(url_name, m.upper())] = Case(**kwargs)


def load() -> Registry:
    reg = Registry()
    root = Path(__file__).resolve().parent
    for path in sorted(root.glob("**/isolation_*.py")):
        module = ".".join(("tests", *path.relative_to(root).with_suffix("").parts))
        importlib.import_module(module).register(reg)
    return reg

"""Defer the import of pydantic, which betterproto2 imports whenever it is installed.

betterproto2 runs ``try: import pydantic, pydantic_core`` when it is first imported, to
support messages generated as pydantic dataclasses. istio-sdk generates plain dataclasses
and does not depend on pydantic, but it is often installed anyway (here the test tools bring
it: common-expression-language -> typer), and importing it costs about as much as all the
Envoy modules a control plane loads.

``defer_pydantic`` puts, for each of the two, a module object in ``sys.modules`` whose code
runs on its first attribute access, so betterproto2's ``import`` binds it without running
it. betterproto2 reaches pydantic only through ``Message._is_pydantic`` (its own reflective
encode and parse, ``to_dict``, ``from_dict``); any other importer of pydantic gets the same
module object, loaded on its first use, so there is still one pydantic. Nothing is done when
pydantic is not installed, is already imported, or when betterproto2 is already imported.

``importlib.util.LazyLoader`` does not help here: on Python 3.11 the ``import`` statement
reads the module's ``__spec__`` (to see whether it is still initializing), which makes a
``LazyLoader`` module load. This module answers ``__spec__`` and ``__name__`` without loading.
"""

from __future__ import annotations

import _thread
import importlib.util
import sys
import types
from typing import Any

DEFERRED = ("pydantic", "pydantic_core")
# Read by the import system without meaning "use the module".
_NO_LOAD = frozenset({"__spec__", "__name__", "__class__"})
_LOCK = _thread.RLock()
_LOADING: set[str] = set()


class _DeferredModule(types.ModuleType):
    """A module not executed yet: the first other attribute read executes it."""

    def __getattribute__(self, attr: str) -> Any:
        get = types.ModuleType.__getattribute__
        if attr not in _NO_LOAD:
            spec = get(self, "__spec__")
            with _LOCK:
                if type(self) is _DeferredModule and spec.name not in _LOADING:
                    _load(self, spec)
        return get(self, attr)


def _load(module: types.ModuleType, spec: Any) -> None:
    _LOADING.add(spec.name)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)  # as a failed import leaves it
        raise
    finally:
        _LOADING.discard(spec.name)
        module.__class__ = types.ModuleType


def defer_pydantic() -> None:
    """Make pydantic load on first use instead of when betterproto2 is imported."""
    if "betterproto2" in sys.modules:
        return
    for name in DEFERRED:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        module.__class__ = _DeferredModule
        sys.modules[name] = module

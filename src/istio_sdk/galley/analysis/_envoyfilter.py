"""``envoyfilter.EnvoyPatchAnalyzer``: EnvoyFilter patch operations that Istio ignores or applies
unreliably.

ADD or REMOVE on ROUTE_CONFIGURATION or HTTP_ROUTE (IST0153, IST0154); REPLACE other than on
HTTP_FILTER, NETWORK_FILTER or VIRTUAL_HOST (IST0152); a relative operation (INSERT_BEFORE,
INSERT_AFTER, REPLACE, REMOVE) in an EnvoyFilter without a priority (IST0151), or IST0155 when
an earlier patch (of this or an earlier EnvoyFilter) for the same filter name set a
proxyVersion match.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istio_sdk.api.istio.networking.v1alpha3 import (
    EnvoyFilterApplyTo as ApplyTo,
)
from istio_sdk.api.istio.networking.v1alpha3 import (
    EnvoyFilterPatchOperation as Operation,
)
from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._snapshot import Snapshot

_ROUTE_LEVEL = (ApplyTo.ROUTE_CONFIGURATION, ApplyTo.HTTP_ROUTE)
_REPLACEABLE = (ApplyTo.NETWORK_FILTER, ApplyTo.HTTP_FILTER, ApplyTo.VIRTUAL_HOST)


def _filter_name(patch: Any) -> str:
    """The filter a patch is about: its value's ``name``, else the matched listener filter."""
    value = getattr(patch.patch, "value", None)
    if value is None or not getattr(value, "fields", None):
        return ""
    name = value.fields.get("name")
    if name is not None:
        return repr(name)
    match = patch.match
    listener = getattr(match, "listener", None) if match is not None else None
    chain = getattr(listener, "filter_chain", None) if listener is not None else None
    found = getattr(chain, "filter", None) if chain is not None else None
    return str(getattr(found, "name", "")) if found is not None else ""


@register("envoyfilter.EnvoyPatchAnalyzer", "Checks an envoyFilters ", ("EnvoyFilter",))
def envoy_patches(snapshot: Snapshot) -> Iterator[Finding]:
    versioned: list[str] = []  # filter names patched with a proxyVersion match so far
    for entry in snapshot.of("EnvoyFilter"):
        spec = entry.spec
        for i, patch in enumerate(spec.config_patches):
            if patch.patch is None:
                break
            name = _filter_name(patch)
            operation, apply_to = patch.patch.operation, patch.apply_to
            path = f"spec.configPatches[{i}].patch.operation"
            relative = False
            if operation == Operation.ADD and apply_to in _ROUTE_LEVEL:
                yield Finding(entry, "IST0153", (), path)
            elif operation == Operation.REMOVE:
                if apply_to in _ROUTE_LEVEL:
                    yield Finding(entry, "IST0154", (), path)
                else:
                    relative = True
            elif operation == Operation.REPLACE:
                if apply_to not in _REPLACEABLE:
                    yield Finding(entry, "IST0152", (), path)
                else:
                    relative = True
            elif operation in (Operation.INSERT_BEFORE, Operation.INSERT_AFTER):
                relative = True
            if relative and not spec.priority:
                code = "IST0155" if name in versioned else "IST0151"
                yield Finding(entry, code, (), path)
            match = patch.match
            if match is not None and match.proxy is not None and match.proxy.proxy_version:
                versioned.append(name)

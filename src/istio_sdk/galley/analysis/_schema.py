"""``schema.ValidationAnalyzer.<Kind>``: each Istio resource's validation as analysis messages.

Every problem :func:`istio_sdk.validate` reports is IST0106 (an error) or IST0133 (a warning,
when validation reports levels); for a VirtualService, unreachable rules and ineffective
matches are IST0130 and IST0131 (from
:func:`istio_sdk.config.semantic.unreachable_rules`, the rules behind validation's warnings),
as istioctl maps those warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from istio_sdk.config import KINDS, validate
from istio_sdk.config.semantic import unreachable_rules
from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._snapshot import Snapshot
from istio_sdk.protojson import message_to_json


def _validation_findings(snapshot: Snapshot, kind: str) -> Iterator[Finding]:
    for entry in snapshot.of(kind):
        rules = []
        if kind == "VirtualService":
            spec = message_to_json(entry.spec)
            rules = list(unreachable_rules(spec if isinstance(spec, dict) else {}))
        # Validation words these rules as warnings; istioctl reports them as IST0130/IST0131.
        as_rules = {(rule.path, rule.message) for rule in rules}
        for problem in validate(entry.resource):
            warning = not problem.is_error
            if warning and (problem.path, problem.message) in as_rules:
                continue
            text = f"{problem.path}: {problem.message}" if problem.path else problem.message
            yield Finding(entry, "IST0133" if warning else "IST0106", (text,), problem.path or None)
        for found in rules:
            yield Finding(entry, found.code, found.arguments, found.path)


def _analyzer_for(kind: str) -> Callable[[Snapshot], Iterable[Finding]]:
    def run(snapshot: Snapshot) -> Iterable[Finding]:
        return _validation_findings(snapshot, kind)

    return run


for _kind in sorted({info.kind for info in KINDS}):
    register(
        f"schema.ValidationAnalyzer.{_kind}",
        f"Runs schema validation as an analyzer on '{_kind}' resources",
        (_kind,),
    )(_analyzer_for(_kind))

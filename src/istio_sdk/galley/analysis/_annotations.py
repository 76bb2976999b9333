"""``annotations.K8sAnalyzer``: Istio annotations (``*istio.io/...``) on Namespaces, Services,
Pods and Deployments that Istio does not know (IST0108), that are deprecated (IST0135) or
that do not apply to the kind they are on (IST0107).

The table of Istio's annotations (name, kinds, deprecated) is ``annotations.json``, read from
istio/api's ``annotation/annotations.yaml``.
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Iterator, Mapping

from istio_sdk.config._yaml import join_key
from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._messages import go_quote
from istio_sdk.galley.analysis._snapshot import Snapshot

# Set by Istio itself on the objects it manages: never reported.
_IGNORED = frozenset(
    {"sidecar.istio.io/status", "gateway.istio.io/controller-version", "istio.io/rev"}
)
_EXTRA_DEPRECATION = {"sidecar.istio.io/inject": ' in favor of the "sidecar.istio.io/inject" label'}


@functools.cache
def annotation_table() -> Mapping[str, tuple[tuple[str, ...], bool]]:
    """Annotation name -> (the kinds it applies to, deprecated)."""
    path = pathlib.Path(__file__).with_name("annotations.json")
    rows = json.loads(path.read_text(encoding="utf-8"))["annotations"]
    return {name: (tuple(row["resources"]), bool(row["deprecated"])) for name, row in rows.items()}


def _istio_annotation(name: str) -> bool:
    return name == "kubernetes.io/ingress.class" or name.partition("/")[0].endswith("istio.io")


@register(
    "annotations.K8sAnalyzer",
    "Checks for misplaced and invalid Istio annotations in Kubernetes resources",
    ("Namespace", "Service", "Pod", "Deployment"),
    any_input=True,
)
def k8s_annotations(snapshot: Snapshot) -> Iterator[Finding]:
    table = annotation_table()
    for kind in ("Namespace", "Service", "Pod", "Deployment"):
        for entry in snapshot.of(kind):
            for name in sorted(entry.annotations):
                if not _istio_annotation(name) or name in _IGNORED:
                    continue
                path = join_key("metadata.annotations", name)
                row = table.get(name)
                if row is None:
                    yield Finding(entry, "IST0108", (name,), path)
                    continue
                kinds, deprecated = row
                if deprecated and not (
                    name == "sidecar.istio.io/inject" and "sidecar.istio.io/inject" in entry.labels
                ):
                    extra = _EXTRA_DEPRECATION.get(name, "")
                    yield Finding(entry, "IST0135", (go_quote(name), extra), path)
                if "Any" in kinds:
                    continue
                if kind not in kinds:
                    yield Finding(entry, "IST0107", (name, ", ".join(kinds)), path)

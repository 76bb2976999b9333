"""Derive cheap structural rules from Istio's CRD schemas into package data.

Reads ``../shared/istio-api/crds.yaml`` (the CRDs' OpenAPI schemas; not shipped) and writes
``src/istio_sdk/config/crd_rules.json`` (package data): for every kind and served version,
the spec schema pruned to the keywords ``istio_sdk.config.validate`` checks (minimum/maximum,
exclusive bounds, min/max length, min/max items, min/max properties, pattern, enum; and nullable,
which says where a null is kept rather than dropped before validation) and the
``properties``/``items``/``additionalProperties`` that lead to them, plus the CEL rules
(``x-kubernetes-validations``) as ``"x-rules": [[rule, message], ...]``, which
``istio_sdk.config._cel`` evaluates. Run ``python codegen/crd_rules.py``;
``tests/config/test_crd_rules.py`` fails when the output is stale. Deterministic output.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_CRDS = ROOT.parent / "shared" / "istio-api" / "crds.yaml"
DEFAULT_OUT = ROOT / "src" / "istio_sdk" / "config" / "crd_rules.json"

CHECKED = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "pattern",
    "enum",
    "nullable",  # not a check: the kube-apiserver drops a null unless its field is nullable
)


def prune(schema: dict[str, Any]) -> dict[str, Any] | None:
    """Keep only checked keywords and the structure leading to them; None when nothing is left."""
    out: dict[str, Any] = {key: schema[key] for key in CHECKED if key in schema}
    cel = schema.get("x-kubernetes-validations")
    if cel:
        out["x-rules"] = [[rule["rule"], rule.get("message", "")] for rule in cel]
    props = {}
    for name, sub in sorted(schema.get("properties", {}).items()):
        pruned = prune(sub)
        if pruned is not None:
            props[name] = pruned
    if props:
        out["properties"] = props
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            pruned = prune(sub)
            if pruned is not None:
                out[key] = pruned
    return out or None


def build_rules(crds_text: str) -> dict[str, dict[str, Any]]:
    """``"group/version/Kind"`` -> pruned spec schema, for every served version."""
    rules: dict[str, dict[str, Any]] = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for doc in yaml.load_all(crds_text, Loader=loader):
        if not doc:
            continue
        spec = doc["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served"):
                continue
            schema = version["schema"]["openAPIV3Schema"]["properties"].get("spec", {})
            pruned = prune(schema)
            if pruned is not None:
                rules[f"{group}/{version['name']}/{kind}"] = pruned
    return dict(sorted(rules.items()))


def render(rules: dict[str, dict[str, Any]]) -> str:
    """JSON text of the rules: one line per kind/version, keys sorted (diff-friendly)."""
    body = ",\n".join(
        f"  {json.dumps(key)}: {json.dumps(schema, sort_keys=True)}"
        for key, schema in rules.items()
    )
    return "{\n" + body + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crds", type=pathlib.Path, default=DEFAULT_CRDS)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rules = build_rules(args.crds.read_text())
    args.out.write_text(render(rules))
    print(f"wrote {len(rules)} kind/version rule sets to {args.out}")


if __name__ == "__main__":
    main()

"""Bootstraps for Istio's golden inputs match Istio's golden files key by key.

Both sides go through Google's ``json_format`` into xds-protos' ``Bootstrap`` and are
compared leaf by leaf (see ``canonical.py``), after the one rewrite Istio's own test applies
to its output (the XDS socket path; ``golden_cases.normalise``).
"""

from __future__ import annotations

import pytest
from proxy.bootstrap.canonical import canonical
from proxy.bootstrap.golden_cases import CASES, GoldenCase, normalise

from istio_sdk.proxy.bootstrap import bootstrap_to_json

pytest.importorskip("envoy.config.bootstrap.v3.bootstrap_pb2", reason="needs xds-protos")


def _differences(case: GoldenCase) -> list[str]:
    want = canonical(case.golden.read_text())
    got = canonical(normalise(bootstrap_to_json(case.build())))
    problems = []
    for key in sorted(set(want) | set(got)):
        theirs, ours = want.get(key, "<absent>"), got.get(key, "<absent>")
        if theirs != ours:
            problems.append(f"{key}: Istio {theirs!r:.120}, ours {ours!r:.120}")
    return problems


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_istio_golden(case: GoldenCase) -> None:
    problems = _differences(case)
    assert not problems, "\n".join(problems)


def test_every_golden_file_has_a_case() -> None:
    names = {c.golden.name for c in CASES}
    files = {p.name for p in CASES[0].golden.parent.glob("*.json")}
    assert files == names

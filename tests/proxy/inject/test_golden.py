"""The injector against Istio's golden injected outputs (see ``golden_cases.py``)."""

from __future__ import annotations

import copy

import pytest
from proxy.inject.golden_cases import TESTDATA, Case, all_cases, load_documents, normalize

from istio_sdk.proxy.inject import InjectionError, inject_object

CASES = all_cases()


def _inject(case: Case) -> list[object]:
    settings = case.settings()
    return [
        inject_object(doc, settings)[0]
        for doc in load_documents((TESTDATA / case.input).read_text())
    ]


@pytest.mark.parametrize("case", [c for c in CASES if c.error is None], ids=lambda c: c.golden)
def test_matches_istio_golden(case: Case) -> None:
    want = load_documents((TESTDATA / case.golden).read_text())
    assert normalize(_inject(case)) == normalize(want)


@pytest.mark.parametrize("case", [c for c in CASES if c.error], ids=lambda c: c.input)
def test_refuses_bad_traffic_annotations(case: Case) -> None:
    with pytest.raises(InjectionError) as caught:
        _inject(case)
    assert case.error is not None and case.error in str(caught.value).lower()


def test_every_golden_file_is_used_or_explained() -> None:
    from proxy.inject.golden_cases import NOT_COVERED

    used = {c.golden for c in CASES} | set(NOT_COVERED)
    present = {p.name for p in TESTDATA.glob("*.injected")}
    assert present - used == set()
    assert len([c for c in CASES if c.error is None]) >= 100


@pytest.mark.parametrize(
    "name",
    [
        "hello.yaml.injected",
        "hello-probes.yaml.injected",
        "hello-old-version.yaml.injected",
        "gateway.yaml.injected",
        "grpc-agent.yaml.injected",
    ],
)
def test_injecting_an_injected_object_changes_nothing(name: str) -> None:
    case = next(c for c in CASES if c.golden == name)
    settings = case.settings()
    for doc in load_documents((TESTDATA / name).read_text()):
        again, _ = inject_object(copy.deepcopy(doc), settings)
        assert normalize(again) == normalize(doc)

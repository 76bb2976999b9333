"""``istio-sdk validate`` with Istio's rules: levels in the output, and exit codes 0, 1 and 64."""

from __future__ import annotations

import pathlib

import pytest

import istio_sdk
from istio_sdk.cli import main

ENVOY_FILTER = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef, namespace: shop}
spec:
  configPatches:
  - applyTo: CLUSTER
    patch: {operation: REMOVE}
"""
BAD_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.*.bad"]
"""


def test_warnings_alone_exit_0_and_are_printed_as_warnings(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ef.yaml"
    path.write_text(ENVOY_FILTER)
    assert main(["validate", "-f", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"warning: {path}[0]:5: EnvoyFilter shop/ef: spec: EnvoyFilter exposes internal "
        "implementation details that may change at any time. Prefer other APIs if possible, "
        "and exercise extreme caution, especially around upgrades.\n"
    )
    assert "checked 1 resource(s) in 1 file(s): all valid, 1 warning(s)" in err


def test_no_warnings_hides_them_but_still_counts_them(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ef.yaml"
    path.write_text(ENVOY_FILTER)
    assert main(["validate", "--no-warnings", "-f", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "1 warning(s)" in err


def test_istio_errors_exit_1_with_every_error_listed(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(BAD_GATEWAY + "---\n" + ENVOY_FILTER)
    assert main(["validate", "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == (
        f'error: {path}[0]:8: Gateway shop/gw: spec.servers[0].hosts[0]: domain name "*.bad" '
        'invalid (label "*" invalid)'
    )
    assert lines[1] == (
        f"error: {path}[0]:7: Gateway shop/gw: spec.servers[0]: server must have TLS settings "
        "for HTTPS/TLS protocols"
    )
    assert lines[2].startswith(f"warning: {path}[1]:14: EnvoyFilter shop/ef: spec: ")
    assert "2 error(s), 1 warning(s)" in err


def test_usage_errors_exit_64(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(tmp_path / "missing.yaml")]) == 64
    assert "missing.yaml: no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["validate", "-q"])
    assert exc.value.code == 64
    assert "the following arguments are required: -f/--filename" in capsys.readouterr().err


def test_the_python_api_returns_errors_and_warnings_with_levels() -> None:
    problems = istio_sdk.validate(BAD_GATEWAY + "---\n" + ENVOY_FILTER)
    assert [(p.level, p.kind, p.path) for p in problems] == [
        ("error", "Gateway", "spec.servers[0].hosts[0]"),
        ("error", "Gateway", "spec.servers[0]"),
        ("warning", "EnvoyFilter", "spec"),
    ]
    assert [p.is_error for p in problems] == [True, True, False]


def test_a_directory_source_loads_a_file_with_warnings_and_refuses_one_with_errors(
    tmp_path: pathlib.Path,
) -> None:
    from istio_sdk.config import ConfigStore, DirectorySource

    (tmp_path / "ef.yaml").write_text(ENVOY_FILTER)
    (tmp_path / "gw.yaml").write_text(BAD_GATEWAY)
    store = ConfigStore()
    result = DirectorySource(store, tmp_path).sync()
    assert [r.kind for r in store.list()] == ["EnvoyFilter"]
    assert result.failed_files == (str(tmp_path / "gw.yaml"),)

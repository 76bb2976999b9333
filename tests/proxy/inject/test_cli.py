"""``istio-sdk kube-inject``: files and stdin in, injected YAML out, clear exit codes."""

from __future__ import annotations

import io
import pathlib
import sys

import pytest
from proxy.inject.golden_cases import TESTDATA, load_documents, normalize

from istio_sdk.cli import main

_ALIAS_BOMB = b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"a%d: &a%d [" % (i, i) + b", ".join([b"*a%d" % (i - 1)] * 10) + b"]\n" for i in range(1, 8)
)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["kube-inject", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_deployment_comes_out_as_istio_injects_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "-f", str(TESTDATA / "hello.yaml"), "--native-sidecars")
    assert (code, err) == (0, "")
    want = load_documents((TESTDATA / "hello.yaml.injected").read_text())
    assert normalize(load_documents(out)) == normalize(want)
    assert out.endswith("---\n")


def test_values_and_mesh_files_reach_the_templates(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("global:\n  proxy:\n    image: proxyTest\n")
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("defaultConfig:\n  drainDuration: 23s\n")
    out_file = tmp_path / "out.yaml"
    code, out, _ = _run(
        capsys,
        "-f",
        str(TESTDATA / "hello.yaml"),
        "--valuesFile",
        str(values),
        "--meshConfigFile",
        str(mesh),
        "-o",
        str(out_file),
    )
    assert (code, out) == (0, "")
    (pod,) = load_documents(out_file.read_text())
    proxy = next(
        c for c in pod["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy"
    )
    assert proxy["image"] == "registry.istio.io/testing/proxyTest:latest"
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["PROXY_CONFIG"] == '{"drainDuration":"23s"}\n'


def test_stdin_and_documents_without_pods_pass_through(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, out, _ = _run(capsys, "-f", "-")
    assert code == 0
    assert load_documents(out) == load_documents(text)


def test_host_network_is_skipped_with_istioctls_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "-f", str(TESTDATA / "hello-host-network-with-ns.yaml"))
    assert code == 0
    assert (
        'Skipping injection because Deployment "sample/hello-host-network" has host networking'
        in err
    )
    assert "istio-proxy" not in out


def test_an_annotation_istiod_refuses_exits_1_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "-f", str(TESTDATA / "traffic-annotations-bad-excludeoutboundports.yaml")
    )
    assert (code, out) == (1, "")
    assert "traffic.sidecar.istio.io/excludeOutboundPorts" in err
    assert "document 1" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("data", "exit_code"),
    [
        (b"\xff\xfe\x00garbage", 64),
        (b"a: [unclosed", 64),
        (_ALIAS_BOMB, 64),
        (b"[" * 5000 + b"]" * 5000, 64),
        (b"- just\n- a list\n", 1),
        (b"apiVersion: v1\nkind: Pod\nspec: {containers: {name: x}}\n", 1),
        (
            b"kind: Pod\nspec: {containers: [{name: x, ports: [{containerPort: 9999999999}]}]}\n",
            1,
        ),
        (b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n", 1),
    ],
    ids=[
        "not-utf8",
        "syntax",
        "alias-bomb",
        "deep",
        "not-an-object",
        "containers-map",
        "huge-port",
        "no-template",
    ],
)
def test_malformed_input_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, data: bytes, exit_code: int
) -> None:
    path = tmp_path / "in.yaml"
    path.write_bytes(data)
    code, out, err = _run(capsys, "-f", str(path))
    assert code == exit_code
    assert out == ""
    assert err.startswith("istio-sdk kube-inject: error: ")
    assert err.count("\n") == 1


def test_unusable_files_exit_64(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    missing = _run(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert missing[0] == 64 and "cannot read input" in missing[2]
    values = tmp_path / "values.yaml"
    values.write_text("- not\n- a mapping\n")
    bad_values = _run(capsys, "-f", str(TESTDATA / "hello.yaml"), "--valuesFile", str(values))
    assert bad_values[0] == 64 and "expected a mapping" in bad_values[2]
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * (9 * 1024 * 1024))
    too_big = _run(capsys, "-f", str(big))
    assert too_big[0] == 64 and "larger than" in too_big[2]

"""``istio-sdk analyze``: output formats, thresholds, suppression, exit codes, hostile input."""

from __future__ import annotations

import io
import json
import pathlib

import pytest
import yaml

from istio_sdk.cli import main

BROKEN = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  gateways: [nogw]
  http:
  - route:
    - destination: {host: reviews}
"""
WARN_ONLY = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext, namespace: default}
spec:
  host: api.example.com
  trafficPolicy: {tls: {mode: SIMPLE}}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["analyze", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def broken(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "vs.yaml"
    path.write_text(BROKEN)
    return path


def test_log_lines_sorted_and_exit_79(
    capsys: pytest.CaptureFixture[str], broken: pathlib.Path
) -> None:
    code, out, _ = run(capsys, str(broken))
    assert code == 79
    assert out.splitlines() == [
        f"Error [IST0101] (VirtualService default/reviews {broken}:6) Referenced gateway "
        f'not found: "nogw"',
        f"Warning [IST0132] (VirtualService default/reviews {broken}:6) one or more host [reviews] "
        "defined in VirtualService default/reviews not found in Gateway default/nogw.",
    ]


def test_json_and_yaml_objects(capsys: pytest.CaptureFixture[str], broken: pathlib.Path) -> None:
    code, out, _ = run(capsys, str(broken), "-o", "json")
    assert code == 0  # istioctl checks no threshold with -o json/yaml
    objects = json.loads(out)
    assert objects[0] == {
        "code": "IST0101",
        "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/?ref=istioctl-analyze",
        "level": "Error",
        "message": 'Referenced gateway not found: "nogw"',
        "origin": "VirtualService default/reviews",
        "reference": f"{broken}:6",
    }
    assert out.startswith('[\n\t{\n\t\t"code"')
    code, out, _ = run(capsys, str(broken), "-o", "yaml")
    assert yaml.safe_load(out) == objects


def test_json_file_reference_has_no_line(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "vs.json"
    path.write_text(json.dumps(yaml.safe_load(BROKEN)))
    _, out, _ = run(capsys, str(path))
    assert f"(VirtualService default/reviews {path}) Referenced gateway" in out


def test_thresholds(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, broken: pathlib.Path
) -> None:
    warn = tmp_path / "dr.yaml"
    warn.write_text(WARN_ONLY)
    code, out, _ = run(capsys, str(warn))
    assert code == 0 and "[IST0128]" in out
    assert run(capsys, str(warn), "--failure-threshold", "Warning")[0] == 79
    assert run(capsys, str(warn), "--failure-threshold", "info")[0] == 79
    code, out, _ = run(capsys, str(broken), "--output-threshold", "Error")
    assert code == 79 and "IST0132" not in out and "IST0101" in out
    code, out, err = run(capsys, str(warn), "--output-threshold", "Error")
    assert code == 0 and out.strip() == ""
    assert "No validation issues found" in err


def test_suppression_flag_and_annotation(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, broken: pathlib.Path
) -> None:
    code, out, _ = run(capsys, str(broken), "-S", "IST0101=VirtualService reviews.default")
    assert "IST0101" not in out and "IST0132" in out and code == 0
    _, out, _ = run(
        capsys,
        str(broken),
        "-S",
        "IST0132=VirtualService *.default",
        "-S",
        "IST0101=VirtualService default/*",
    )
    assert out.strip() == ""
    _, out, _ = run(capsys, str(broken), "-S", "IST0101=VirtualService other.default")
    assert "IST0101" in out
    _, _, err = run(capsys, str(broken), "-S", "IST9999=Pod x.y")
    assert "Warning: Supplied message code 'IST9999' is an unknown message code" in err
    annotated = tmp_path / "annotated.yaml"
    annotated.write_text(
        BROKEN.replace(
            "metadata: {name: reviews, namespace: default}",
            "metadata: {name: reviews, namespace: default, annotations: "
            "{galley.istio.io/analyze-suppress: 'IST0132,IST0001'}}",
        )
    )
    code, out, _ = run(capsys, str(annotated))
    assert "IST0132" not in out and "IST0101" in out
    annotated.write_text(annotated.read_text().replace("'IST0132,IST0001'", "'*'"))
    assert run(capsys, str(annotated))[1].strip() == ""


def test_namespace_selection(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "vs.yaml"
    path.write_text(BROKEN.replace("namespace: default", "namespace: shop"))
    code, out, err = run(capsys, str(path))
    assert code == 0 and out.strip() == ""
    assert err == f"\u2714 No validation issues found when analyzing {path}.\n"
    assert run(capsys, str(path), "-n", "shop")[0] == 79
    assert run(capsys, str(path), "-A")[0] == 79
    unnamespaced = tmp_path / "bare.yaml"
    unnamespaced.write_text(BROKEN.replace(", namespace: default", ""))
    code, out, _ = run(capsys, str(unnamespaced), "-n", "shop")
    assert code == 79 and "VirtualService shop/reviews" in out


def test_clean_run_messages(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.yaml").write_text("")
    (tmp_path / "b.yml").write_text("")
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run(capsys, str(tmp_path))
    assert code == 0
    assert (
        err == "\u2714 No validation issues found when analyzing:\n"
        f"  - {tmp_path / 'a.yaml'}\n  - {tmp_path / 'b.yml'}\n"
    )
    code, _, err = run(capsys, str(tmp_path / "notes.txt"))
    assert (
        "Skipping file" in err
        and "No validation issues found when analyzing namespace: default." in err
    )


def test_verbose_lists_skipped_analyzers(
    capsys: pytest.CaptureFixture[str], broken: pathlib.Path
) -> None:
    _, _, err = run(capsys, str(broken), "-v")
    assert "Analyzed resources in namespace: default" in err
    assert "Skipped analyzers:\n" in err
    assert "\t virtualservice.DestinationHostAnalyzer (missing: Service)\n" in err
    assert "Executed analyzers:\n" in err
    assert "\t virtualservice.DestinationRuleAnalyzer\n" in err


def test_list_and_pick_analyzers(capsys: pytest.CaptureFixture[str], broken: pathlib.Path) -> None:
    code, out, _ = run(capsys, "-L")
    assert code == 0 and "* virtualservice.GatewayAnalyzer:\n    Checks the gateways" in out
    code, out, _ = run(
        capsys, str(broken), "--analyzer", "virtualservice.ConflictingMeshGatewayHostsAnalyzer"
    )
    assert code == 0 and out.strip() == ""
    assert run(capsys, str(broken), "--analyzer", "no.SuchAnalyzer")[0] == 64


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "xml"],
        ["--failure-threshold", "Fatal"],
        ["--output-threshold", "x"],
        ["-S", "IST0101"],
        ["-S", "a=b=c"],
        [],
    ],
)
def test_usage_errors_exit_64(
    capsys: pytest.CaptureFixture[str], broken: pathlib.Path, args: list[str]
) -> None:
    paths = [str(broken)] if args else []
    assert run(capsys, *paths, *args)[0] == 64


def test_missing_path_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.yaml"))
    assert code == 1 and "no such file or folder" in err and "Traceback" not in err


HOSTILE = {
    "garbage": b"\xff\xfe\x00garbage\x80",
    "syntax": b"kind: [unclosed\n",
    "deep": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "alias_bomb": "\n".join(
        ['a: &a ["x","x","x","x","x","x","x","x","x"]']
        + [
            f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]"
            for p, n in zip("abcde", "bcdef", strict=True)
        ]
        + ["g: [" + ",".join(["*f"] * 9) + "]", ""]
    ).encode(),
    "nan": b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: "
    b"x}\nspec: {hosts: [.nan]}\n",
    "huge_number": b"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: "
    b"{name: x}\nspec: {hosts: [a.b], ports: [{number: 1" + b"0" * 5000 + b", name: p}]}\n",
    "unknown_kind": b"apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_exit_65_and_others_are_still_analyzed(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, broken: pathlib.Path, name: str
) -> None:
    bad = tmp_path / f"{name}.yaml"
    bad.write_bytes(HOSTILE[name])
    code, out, err = run(capsys, str(bad))
    assert code == 65, err
    assert "Error(s) adding files" in err and "Traceback" not in err
    assert "could not be parsed" in err
    assert run(capsys, str(bad), "--ignore-unknown")[0] == 0
    code, out, _ = run(capsys, str(bad), str(broken))
    assert code == 79 and "IST0101" in out  # issues outrank parse errors, as in istioctl


def test_a_megabyte_host_is_analyzed_not_crashed(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BROKEN.replace("hosts: [reviews]", "hosts: [" + "a" * 1_000_000 + "]"))
    code, _, err = run(capsys, str(path))
    assert code == 79 and "Traceback" not in err


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(BROKEN))
    code, out, _ = run(capsys, "-")
    assert code == 79 and "(VirtualService default/reviews stdin:6)" in out


def test_color_levels_unless_term_is_dumb(
    capsys: pytest.CaptureFixture[str], broken: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    _, out, _ = run(capsys, str(broken), "--color")
    assert out.startswith("\033[1;31mError\033[0m [IST0101]")
    assert "\033[33mWarning\033[0m [IST0132]" in out
    monkeypatch.setenv("TERM", "dumb")
    _, out, _ = run(capsys, str(broken), "--color")
    assert out.startswith("Error [IST0101]")

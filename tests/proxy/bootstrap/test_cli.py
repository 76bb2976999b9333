"""``istio-sdk bootstrap``: a Pod's environment and files in, Envoy's JSON out."""

from __future__ import annotations

import json
import pathlib

import pytest
from proxy.bootstrap.canonical import parse

from istio_sdk.cli import main


def test_sidecar_from_env_files_and_downward_api(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(
        "# the istio-proxy container\nPOD_NAME=ratings-v1-0\nPOD_NAMESPACE=shop\n"
        'INSTANCE_IP=10.1.0.4\nPROXY_CONFIG={"concurrency": 2}\n'
    )
    labels = tmp_path / "labels"
    labels.write_text('app="ratings"\nversion="v1"\npod-template-hash="abc"\n')
    annotations = tmp_path / "annotations"
    annotations.write_text('proxy.istio.io/config="proxyAdminPort: 15100"\n')
    out = tmp_path / "envoy-rev.json"
    code = main(
        [
            "bootstrap",
            "--ignore-environment",
            "--env-file",
            str(env_file),
            "--env",
            "ISTIO_META_CLUSTER_ID=east",
            "--labels",
            str(labels),
            "--annotations",
            str(annotations),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    assert capsys.readouterr().out == ""
    doc = json.loads(out.read_text())
    assert doc["node"]["id"] == "sidecar~10.1.0.4~ratings-v1-0.shop~shop.svc.cluster.local"
    assert doc["node"]["cluster"] == "ratings.shop"
    assert doc["node"]["metadata"]["CLUSTER_ID"] == "east"
    assert doc["node"]["metadata"]["LABELS"] == {"app": "ratings", "version": "v1"}
    assert doc["node"]["metadata"]["PROXY_CONFIG"]["concurrency"] == 2
    assert doc["admin"]["address"]["socketAddress"]["portValue"] == 15100
    parse(out.read_text())  # Envoy's schema, through Google's runtime


def test_gateway_to_stdout_with_mesh_config(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh = tmp_path / "mesh"
    mesh.write_text("defaultConfig:\n  tracing:\n    zipkin: {address: 'zipkin.obs:9411'}\n")
    code = main(
        [
            "bootstrap",
            "gateway",
            "-i",
            "--env",
            "POD_NAME=gw-1",
            "--env",
            "POD_NAMESPACE=istio-system",
            "--ip",
            "10.9.0.2",
            "--mesh-config",
            str(mesh),
            "--annotation",
            "proxy.istio.io/config=concurrency: 4",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["node"]["id"] == "router~10.9.0.2~gw-1.istio-system~istio-system.svc.cluster.local"
    assert doc["tracing"]["http"]["name"] == "envoy.tracers.zipkin"
    assert doc["node"]["metadata"]["PROXY_CONFIG"]["concurrency"] == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "ENVOY_STATUS_PORT=x"], "environment variable ENVOY_STATUS_PORT"),
        (["--annotation", "proxy.istio.io/config=bogus: 1"], 'unknown field "bogus"'),
        (["--labels", "/nonexistent/labels"], "labels file /nonexistent/labels: cannot read"),
        (["--ip", "not-an-ip"], "not-an-ip"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bootstrap", "-i", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("istio-sdk bootstrap: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1


def test_garbage_files(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "annotations"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["bootstrap", "-i", "--annotations", str(binary)]) == 1
    assert "not UTF-8" in capsys.readouterr().err
    unquoted = tmp_path / "labels"
    unquoted.write_text("app=ratings\n")
    assert main(["bootstrap", "-i", "--labels", str(unquoted)]) == 1
    assert "not a quoted string" in capsys.readouterr().err


def test_pilot_agent_flags(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "-i", "--env", "POD_NAME=p", "--env", "POD_NAMESPACE=ns"]
    argv += ["--ip", "10.0.0.2", "--domain", "ns.svc.example.org", "--log-as-json"]
    argv += ["--outlier-log-path", "/dev/stdout", "--annotation"]
    argv += ['proxy.istio.io/config={"serviceCluster": ""}', "--service-cluster", "edge"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["node"]["id"] == "sidecar~10.0.0.2~p.ns~ns.svc.example.org"
    assert doc["node"]["cluster"] == "edge"
    assert doc["clusterManager"]["outlierDetection"] == {"eventLogPath": "/dev/stdout"}
    assert doc["applicationLogConfig"]["logFormat"]["jsonFormat"]["level"] == "%l"

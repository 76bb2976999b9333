"""``istio-sdk demo`` live: the bundled bookinfo on a whole mesh with real grpcio traffic."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest


def _demo(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "istio_sdk.cli", "demo", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def test_the_live_demo_shifts_reviews_and_denies_by_policy(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("grpc")
    pytest.importorskip("rich")
    env = dict(os.environ, TMPDIR=str(tmp_path))  # the workloads' folders go here
    proc = _demo("--duration", "3", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # a clean shutdown: no workload process left, their folders removed
    assert _processes_mentioning(str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []
    out = proc.stdout
    assert "validation: all valid" in out  # the summary still comes first
    shifts = re.findall(r"^shift: reviews traffic now goes to (v\d)$", out, re.MULTILINE)
    assert shifts == ["v1", "v2", "v3"]
    assert "reviews versions seen, in order: v1 -> v2 -> v3" in out
    answers = re.search(r"reviews answers: v1 (\d+), v2 (\d+), v3 (\d+)", out)
    assert answers is not None, out
    assert all(int(count) > 0 for count in answers.groups())
    assert "denied: productpage -> details by Mixer (" in out
    assert re.search(r"denied by Mixer rule: [1-9]\d*$", out, re.MULTILINE)
    # grpcio's ratings server refused the call: the RBAC filter Pilot built from the policy
    assert "denied: productpage -> ratings by AuthorizationPolicy (" in out
    assert re.search(r"denied by AuthorizationPolicy: [1-9]\d*$", out, re.MULTILINE)
    # mutual TLS: reviews saw productpage's SPIFFE identity from Citadel's certificate
    assert "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage" in out
    assert "certificates issued by Citadel: 6" in out
    assert out.rstrip().endswith("demo: ok")


def test_without_grpcio_the_demo_says_so_and_fails(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "grpc"
    blocker.mkdir()
    (blocker / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'grpc'\", name='grpc')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    proc = _demo("--duration", "3", env=env)
    assert proc.returncode != 0
    assert "demo: ok" not in proc.stdout
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1, proc.stderr
    assert "grpcio" in errors[0] and "grpc is missing" in errors[0]

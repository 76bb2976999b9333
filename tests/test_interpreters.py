"""The noxfile's choice of interpreter (.ci/interpreters.py): never a silent skip."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("interpreters", ROOT / ".ci" / "interpreters.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


interpreters = _load()


def _never(version: str) -> str | None:
    raise AssertionError(f"probed {version} although nox's own interpreter is supported")


@pytest.mark.parametrize("running", [(3, 11), (3, 12), (3, 13)])
def test_the_interpreter_nox_runs_under_wins_when_supported(running: tuple[int, int]) -> None:
    chosen = interpreters.choose_python(running, "/opt/py/bin/python", _never)
    assert chosen == ("/opt/py/bin/python", f"{running[0]}.{running[1]}")


def test_otherwise_the_first_supported_version_present_is_used() -> None:
    present = {"3.12": "/usr/bin/python3.12", "3.13": "/usr/bin/python3.13"}
    asked: list[str] = []

    def probe(version: str) -> str | None:
        asked.append(version)
        return present.get(version)

    assert interpreters.choose_python((3, 10), "/x/python3.10", probe) == (
        "/usr/bin/python3.12",
        "3.12",
    )
    assert asked == ["3.11", "3.12"]
    only_313 = {"3.13": "/usr/bin/python3.13"}
    assert interpreters.choose_python((3, 14), "/x", only_313.get) == (
        "/usr/bin/python3.13",
        "3.13",
    )


def test_no_supported_interpreter_is_none() -> None:
    assert interpreters.choose_python((3, 10), "/x", lambda version: None) is None
    assert interpreters.SUPPORTED == ("3.11", "3.12", "3.13")


def _fake_python(folder: pathlib.Path, version: str, body: str) -> None:
    script = folder / f"python{version}"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


@pytest.mark.skipif(os.name != "posix", reason="shell-script stand-ins for interpreters")
def test_probe_rejects_shims_that_fail_and_interpreters_of_another_version(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pyenv shim for a version that is installed but not selected exits non-zero.
    _fake_python(tmp_path, "3.12", "echo 'pyenv: python3.12: command not found' >&2; exit 127")
    _fake_python(tmp_path, "3.13", "printf '/usr/bin/python3.10\\n3.10\\n'")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert interpreters.probe_path("3.12") is None
    assert interpreters.probe_path("3.13") is None
    assert interpreters.probe_path("3.11") is None  # not on PATH at all


def test_probe_finds_the_real_executable_behind_a_name(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (tmp_path / f"python{version}").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(tmp_path))
    found = interpreters.probe_path(version)
    assert found is not None
    assert os.path.samefile(found, sys.executable)

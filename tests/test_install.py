"""The built wheel, installed into a fresh virtualenv, works from outside the checkout.

The ``tests`` nox session builds the wheel with ``python -m build`` and passes its path in
``ISTIO_SDK_WHEEL``, so this is the wheel a user would install. Run alone (no variable), the
test builds one itself when ``build`` is importable; in CI a missing wheel is a failure.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from istio_sdk import __version__

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _wheel(tmp_path: pathlib.Path) -> pathlib.Path:
    given = os.environ.get("ISTIO_SDK_WHEEL")
    if given:
        return pathlib.Path(given)
    if os.environ.get("CI"):
        pytest.fail("ISTIO_SDK_WHEEL is not set: CI must test the wheel it built")
    pytest.importorskip("build", reason="set ISTIO_SDK_WHEEL or install 'build'")
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("istio_sdk-*.whl")
    return wheel


def _uv() -> str | None:
    beside = pathlib.Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _fresh_venv_with(wheel: pathlib.Path, where: pathlib.Path) -> pathlib.Path:
    """A new virtualenv at ``where`` holding the wheel and its dependencies; its bin folder."""
    uv = _uv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if uv is not None:
        subprocess.run(
            [uv, "venv", "--quiet", "--python", sys.executable, str(where)], check=True, env=env
        )
        python = where / "bin" / "python"
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(python), str(wheel)],
            check=True,
            env=env,
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, env=env)
        python = where / "bin" / "python"
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, env=env
        )
    return where / "bin"


@pytest.mark.skipif(os.name != "posix", reason="virtualenv layout (bin/) is POSIX's")
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: pathlib.Path) -> None:
    wheel = _wheel(tmp_path)
    assert wheel.name.startswith(f"istio_sdk-{__version__}-"), wheel
    bin_dir = _fresh_venv_with(wheel, tmp_path / "venv")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=outside, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    imported = run(str(bin_dir / "python"), "-c", "import istio_sdk; print(istio_sdk.__file__)")
    assert imported.returncode == 0, imported.stderr
    location = pathlib.Path(imported.stdout.strip()).resolve()
    assert location.is_relative_to((tmp_path / "venv").resolve()), location  # not the checkout

    version = run(str(bin_dir / "istio-sdk"), "--version")
    assert (version.returncode, version.stdout) == (0, f"istio-sdk {__version__}\n")

    demo = run(str(bin_dir / "istio-sdk"), "demo", "--summary-only")
    assert demo.returncode == 0, demo.stderr
    assert "Loaded 49 resources from 10 files; validation: all valid" in demo.stdout
    assert demo.stderr == ""


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    (command,) = [
        line.split("#", 1)[0].strip()
        for line in readme.splitlines()
        if line.startswith("nox -s ") and "as CI runs them" in line
    ]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci, f".ci/run does not run the README's test command {command!r}"

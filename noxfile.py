"""Developer workflows for istio-sdk: ``nox -l`` lists them.

The README's test command is
``nox -s lint typecheck codegen_check tests envoy_validate``; ``.ci/run`` runs exactly that.
Hypothesis uses the ``ci`` profile in CI (set by ``CI=true``) and ``dev`` here.

Every session runs on one interpreter: the Python nox runs under when it is a supported
version (3.11 to 3.13), else the first of those found on PATH (``.ci/interpreters.py``). With
none, every session fails and nox exits non-zero; it never skips silently.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import tempfile
from collections.abc import Callable

import nox

ROOT = pathlib.Path(__file__).resolve().parent


def _load_interpreters() -> object:
    # .ci/ is not a package and nox does not put the noxfile's folder on sys.path.
    spec = importlib.util.spec_from_file_location("interpreters", ROOT / ".ci" / "interpreters.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_interpreters = _load_interpreters()
SUPPORTED: tuple[str, ...] = getattr(_interpreters, "SUPPORTED")  # noqa: B009
_CHOICE: tuple[str, str] | None = getattr(_interpreters, "session_python")()  # noqa: B009
PYTHON = _CHOICE[0] if _CHOICE else None
NO_PYTHON = (
    f"no supported Python found: istio-sdk needs one of {', '.join(SUPPORTED)} "
    "(nox's own interpreter, or pythonX.Y on PATH)"
)

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
if _CHOICE is not None:
    # One folder of virtualenvs per Python version: nox would otherwise reuse a session's
    # virtualenv built by another interpreter.
    nox.options.envdir = str(ROOT / ".nox" / f"py{_CHOICE[1]}")
nox.options.sessions = ["lint", "typecheck", "codegen_check", "tests", "envoy_validate"]

SessionFunc = Callable[[nox.Session], None]


def session(func: SessionFunc) -> SessionFunc:
    """``nox.session`` on the chosen interpreter; without one, a session that fails loudly."""
    if PYTHON is not None:
        return nox.session(python=PYTHON)(func)

    @functools.wraps(func)
    def missing(session: nox.Session) -> None:
        session.error(NO_PYTHON)

    return nox.session(venv_backend="none")(missing)


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


def _build_wheel(session: nox.Session) -> pathlib.Path:
    """Build the wheel a user would install (``python -m build``) and return its path."""
    session.install("build")
    outdir = pathlib.Path(session.create_tmp()) / "dist"
    for old in outdir.glob("*.whl"):
        old.unlink()
    session.run("python", "-m", "build", "--wheel", "--outdir", str(outdir), str(ROOT))
    (wheel,) = outdir.glob("istio_sdk-*.whl")
    return wheel


@session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest arguments after --).

    The wheel is built first: tests/test_install.py installs it into a fresh virtualenv and
    runs the command from outside the checkout.
    """
    _install(session, "test")
    env = {
        "HYPOTHESIS_PROFILE": "ci" if os.environ.get("CI") else "dev",
        "ISTIO_SDK_WHEEL": str(_build_wheel(session)),
    }
    session.run("pytest", *session.posargs, env=env)


@session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check of hand-written code."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@session
def fmt(session: nox.Session) -> None:
    """Apply ruff's formatting and autofixes."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "--fix", ".")
    session.run("ruff", "format", ".")


@session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over hand-written code (the generated package is excluded)."""
    _install(session, "typecheck", "test", "codegen")
    session.run("mypy")
    session.run("mypy", ".ci/interpreters.py")  # outside the package, so named here


@session
def codegen(session: nox.Session) -> None:
    """Regenerate src/istio_sdk/api from protos/ and Envoy's published descriptors."""
    _install(session, "codegen")
    session.run("python", "codegen/generate.py")


@session
def codegen_check(session: nox.Session) -> None:
    """Fail when regenerating would change src/istio_sdk/api."""
    _install(session, "codegen")
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "api"
        session.run("python", "codegen/generate.py", "--out", str(out))
        session.run(
            "python", "codegen/compare.py", str(out), str(ROOT / "src" / "istio_sdk" / "api")
        )


@session
def bench(session: nox.Session) -> None:
    """Benchmarks: codec against upb, import time, and the component figures."""
    _install(session, "test")
    session.run("python", "-m", "benchmarks", *session.posargs)


@session
def docs(session: nox.Session) -> None:
    """Run every example in docs/ (the docs are tested, not just written)."""
    _install(session, "test")
    session.run("pytest", "tests/test_docs.py", "-q")


@session
def demo(session: nox.Session) -> None:
    """The README's first command: the bundled bookinfo, summarised, then live on the mesh."""
    session.install(".[demo]")  # as a user installs it, not editable
    session.run("istio-sdk", "demo")


@session
def envoy_validate(session: nox.Session) -> None:
    """Pilot's generated xDS resources against Envoy's own rules (xds-protos + PGV).

    A session of its own because protoc-gen-validate needs protobuf < 7 while the main test
    environment has protobuf 7; in the ``tests`` session these tests skip.
    """
    _install(session, "envoy-validate")
    env = {"HYPOTHESIS_PROFILE": "ci" if os.environ.get("CI") else "dev"}
    session.run("pytest", "tests/pilot/envoy_validate/", *session.posargs, env=env)

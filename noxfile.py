"""Developer workflows for istio-sdk: ``nox -l`` lists them.

The README's test command is
``nox -s lint typecheck codegen_check tests envoy_validate``; ``.ci/run`` runs exactly that.
Hypothesis uses the ``ci`` profile in CI (set by ``CI=true``) and ``dev`` here.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import nox

ROOT = pathlib.Path(__file__).resolve().parent
PYTHON = "3.11"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "codegen_check", "tests", "envoy_validate"]


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest arguments after --)."""
    _install(session, "test")
    env = {"HYPOTHESIS_PROFILE": "ci" if os.environ.get("CI") else "dev"}
    session.run("pytest", *session.posargs, env=env)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and format check of hand-written code."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def fmt(session: nox.Session) -> None:
    """Apply ruff's formatting and autofixes."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "--fix", ".")
    session.run("ruff", "format", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over hand-written code (the generated package is excluded)."""
    _install(session, "typecheck", "test", "codegen")
    session.run("mypy")


@nox.session(python=PYTHON)
def codegen(session: nox.Session) -> None:
    """Regenerate src/istio_sdk/api from protos/ and Envoy's published descriptors."""
    _install(session, "codegen")
    session.run("python", "codegen/generate.py")


@nox.session(python=PYTHON)
def codegen_check(session: nox.Session) -> None:
    """Fail when regenerating would change src/istio_sdk/api."""
    _install(session, "codegen")
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "api"
        session.run("python", "codegen/generate.py", "--out", str(out))
        session.run(
            "python", "codegen/compare.py", str(out), str(ROOT / "src" / "istio_sdk" / "api")
        )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: codec against upb, import time, and the component figures."""
    _install(session, "test")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Run every example in docs/ (the docs are tested, not just written)."""
    _install(session, "test")
    session.run("pytest", "tests/test_docs.py", "-q")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The README's first command: load, validate and summarise examples/."""
    _install(session)
    session.run("istio-sdk", "demo")


@nox.session(python=PYTHON)
def envoy_validate(session: nox.Session) -> None:
    """Pilot's generated xDS resources against Envoy's own rules (xds-protos + PGV).

    A session of its own because protoc-gen-validate needs protobuf < 7 while the main test
    environment has protobuf 7; in the ``tests`` session these tests skip.
    """
    _install(session, "envoy-validate")
    env = {"HYPOTHESIS_PROFILE": "ci" if os.environ.get("CI") else "dev"}
    session.run("pytest", "tests/pilot/envoy_validate/", *session.posargs, env=env)

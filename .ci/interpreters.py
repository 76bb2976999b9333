"""Which Python the nox sessions run on: the first supported interpreter that is present.

Kept apart from ``noxfile.py`` (and free of ``nox`` imports) so the test suite can check the
choice without nox installed. nox skips a session whose interpreter is missing and still exits
0 outside CI, so pinning one version made both README commands do nothing on a machine with
another supported Python; the noxfile instead asks :func:`choose_python` and fails every
session loudly when it returns ``None``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

SUPPORTED: tuple[str, ...] = ("3.11", "3.12", "3.13")
"""Versions the package supports, in order of preference when nox's own is not one of them."""

_PROBE = "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"


def choose_python(
    running: tuple[int, int],
    running_executable: str,
    probe: Callable[[str], str | None],
    supported: Sequence[str] = SUPPORTED,
) -> tuple[str, str] | None:
    """``(path, "X.Y")`` of the interpreter for the sessions, or ``None`` when none is present.

    The interpreter nox itself runs under wins when it is supported (no lookup, and it is the
    one the user evidently has); otherwise the first version in ``supported`` for which
    ``probe(version)`` finds a working interpreter.
    """
    version = f"{running[0]}.{running[1]}"
    if version in supported:
        return running_executable, version
    for version in supported:
        found = probe(version)
        if found is not None:
            return found, version
    return None


def probe_path(version: str) -> str | None:
    """The real executable behind ``python<version>`` on PATH, if it runs and is that version.

    Running it matters: a pyenv shim exists for every installed version but fails for the
    versions that are not selected.
    """
    command = shutil.which(f"python{version}")
    if command is None:
        return None
    try:
        result = subprocess.run(
            [command, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) != 2 or lines[1] != version:
        return None
    return lines[0]


def session_python() -> tuple[str, str] | None:
    """:func:`choose_python` for this process and this machine."""
    return choose_python(
        (sys.version_info.major, sys.version_info.minor), sys.executable, probe_path
    )

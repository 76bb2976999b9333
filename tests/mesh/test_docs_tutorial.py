"""docs/mesh.md's tutorial test file runs, as a user runs it, through pytester."""

from __future__ import annotations

import pathlib
import re

import pytest
from support.plugin_run import run_with_plugin

pytest_plugins = ["pytester"]

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "mesh.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def fenced(language: str, first_line: str | None = None) -> str:
    for lang, body in FENCE.findall(DOC.read_text()):
        if lang == language and (first_line is None or body.startswith(first_line)):
            return str(body)
    raise AssertionError(f"docs/mesh.md has no ```{language} block starting {first_line!r}")


def test_the_tutorial_test_file_passes(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"istio/reviews": fenced("yaml")})
    code = fenced("python", "# test_reviews_config.py")
    pytester.makepyfile(test_reviews_config=code)
    result = run_with_plugin(pytester)
    result.assert_outcomes(passed=4)

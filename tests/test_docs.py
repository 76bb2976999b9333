"""Every ```python block in docs/*.md and README.md runs.

The blocks of one file run in order in one fresh interpreter (a later block may use names from
an earlier one), with no network and a time limit; blocks fenced as ```text or ```sh are prose.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(path: pathlib.Path) -> list[str]:
    return _BLOCK.findall(path.read_text())


@pytest.mark.parametrize("doc", [d for d in DOCS if _blocks(d)], ids=lambda p: p.name)
def test_python_examples_run(doc: pathlib.Path, tmp_path: pathlib.Path) -> None:
    script = "\n\n".join(_blocks(doc))
    target = tmp_path / f"{doc.stem}_examples.py"
    target.write_text(script)
    proc = subprocess.run(
        [sys.executable, str(target)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{doc.name} examples failed:\n{proc.stdout}\n{proc.stderr}"

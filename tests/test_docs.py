"""Every ```python block in docs/*.md and README.md runs, and prints what the docs claim.

The blocks of one file run in order in one fresh interpreter (a later block may use names from
an earlier one), with no network and a time limit; blocks fenced as ```text or ```sh are prose.

Claimed output is checked two ways:

- an ```output block right after a ```python block (no other fenced block between) is exactly
  what that block prints;
- a trailing comment on a ``print(...)`` statement is what that call prints, every time it
  runs: ``print(vs.kind)  # VirtualService`` (a leading ``-> `` is allowed and ignored).

In both, ``...`` stands for any text (as in doctest's ELLIPSIS), for ports, times and ids.
"""

from __future__ import annotations

import ast
import io
import pathlib
import re
import subprocess
import sys
import tokenize

import attrs
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile("\x1e([^\x1e\n]*)\x1e\n")


@attrs.frozen
class Block:
    code: str
    line: int  # line of the block's first code line in the Markdown file
    output: str | None  # the ```output block that follows it, if any
    output_line: int


@attrs.frozen
class PrintClaim:
    line: int  # in the Markdown file
    expected: str


def blocks(path: pathlib.Path) -> list[Block]:
    """The ```python blocks of a Markdown file, each with the ```output block after it."""
    text = path.read_text()
    fences = [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2) for m in _FENCE.finditer(text)
    ]
    found: list[Block] = []
    for index, (language, code, line) in enumerate(fences):
        if language != "python":
            continue
        after = fences[index + 1] if index + 1 < len(fences) else None
        if after is not None and after[0] == "output":
            found.append(Block(code, line, after[1], after[2]))
        else:
            found.append(Block(code, line, None, 0))
    return found


def _comments(code: str) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return {t.start[0]: t.string for t in tokens if t.type == tokenize.COMMENT}


def print_claims(code: str) -> list[tuple[ast.stmt, str]]:
    """``print(...)`` statements that start their line and end in a comment: (stmt, claim)."""
    comments = _comments(code)
    lines = code.splitlines()
    claims: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(ast.parse(code)):
        if not (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "print"
        ):
            continue
        comment = comments.get(node.end_lineno or node.lineno)
        start = lines[node.lineno - 1]
        if comment is None or len(start) - len(start.lstrip()) != node.col_offset:
            continue
        claim = comment.lstrip("#").strip()
        claims.append((node, claim.removeprefix("-> ")))
    return claims


def instrument(
    doc_blocks: list[Block],
) -> tuple[str, dict[int, PrintClaim]]:
    """One script: each block behind a marker, each claimed print between two markers."""
    parts: list[str] = []
    claims: dict[int, PrintClaim] = {}
    for index, block in enumerate(doc_blocks):
        lines = block.code.splitlines()
        found = print_claims(block.code)
        # Insert from the bottom up so earlier line numbers stay valid.
        for node, expected in sorted(found, key=lambda pair: -pair[0].lineno):
            key = len(claims)
            claims[key] = PrintClaim(block.line + node.lineno - 1, expected)
            indent = " " * node.col_offset
            end = node.end_lineno or node.lineno
            lines.insert(end, f'{indent}print("\\x1eend:{key}\\x1e", flush=True)')
            lines.insert(node.lineno - 1, f'{indent}print("\\x1estart:{key}\\x1e", flush=True)')
        parts.append(f'print("\\x1eblock:{index}\\x1e", flush=True)')
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n", claims


def split_output(stdout: str) -> tuple[dict[int, str], dict[int, list[str]]]:
    """What each block printed, and what each claimed print printed (once per run)."""
    by_block: dict[int, str] = {}
    by_claim: dict[int, list[str]] = {}
    block = -1
    open_claims: list[int] = []
    pieces = _MARK.split(stdout)
    for position, piece in enumerate(pieces):
        if position % 2 == 0:  # text
            if block >= 0:
                by_block[block] = by_block.get(block, "") + piece
            for key in open_claims:
                by_claim[key][-1] += piece
            continue
        kind, _, number = piece.partition(":")
        if kind == "block":
            block = int(number)
        elif kind == "start":
            open_claims.append(int(number))
            by_claim.setdefault(int(number), []).append("")
        elif kind == "end":
            open_claims.remove(int(number))
    return by_block, by_claim


def matches(expected: str, actual: str) -> bool:
    """``actual`` equals ``expected``, where ``...`` in ``expected`` stands for any text."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, flags=re.S) is not None


def run_doc(doc: pathlib.Path, tmp_path: pathlib.Path) -> list[str]:
    """Run a Markdown file's examples; return every way their output differs from the docs."""
    doc_blocks = blocks(doc)
    script, claims = instrument(doc_blocks)
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
    by_block, by_claim = split_output(proc.stdout)
    problems: list[str] = []
    for key, claim in claims.items():
        runs = by_claim.get(key)
        if not runs:
            problems.append(f"{doc.name}:{claim.line}: this print never ran")
        for printed in runs or ():
            if not matches(claim.expected + "\n", printed):
                problems.append(
                    f"{doc.name}:{claim.line}: printed {printed!r}, the comment says "
                    f"{claim.expected!r}"
                )
    for index, block in enumerate(doc_blocks):
        if block.output is not None and not matches(block.output, by_block.get(index, "")):
            problems.append(
                f"{doc.name}:{block.output_line}: the block above printed\n"
                f"{by_block.get(index, '')}but the ```output block says\n{block.output}"
            )
    return problems


@pytest.mark.parametrize("doc", [d for d in DOCS if blocks(d)], ids=lambda p: p.name)
def test_python_examples_run_and_print_what_the_docs_say(
    doc: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    problems = run_doc(doc, tmp_path)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_wrong_claims(tmp_path: pathlib.Path) -> None:
    doc = tmp_path / "claims.md"
    doc.write_text(
        "```python\n"
        "for word in ['a', 'b']:\n"
        "    print(word.upper())  # A\n"
        "print('port', 15010)  # -> port ...\n"
        "print(1, 2, sep=',')  # 1,2\n"
        "```\n\n"
        "Prose between.\n\n"
        "```output\nA\nB\nport 15010\n1,3\n```\n\n"
        "```python\ndef never() -> None:\n    print('x')  # x\n```\n"
    )
    assert sorted(run_doc(doc, tmp_path)) == [
        "claims.md:11: the block above printed\nA\nB\nport 15010\n1,2\n"
        "but the ```output block says\nA\nB\nport 15010\n1,3\n",
        "claims.md:19: this print never ran",
        "claims.md:3: printed 'B\\n', the comment says 'A'",
    ]


def test_the_checker_accepts_true_claims(tmp_path: pathlib.Path) -> None:
    doc = tmp_path / "ok.md"
    doc.write_text(
        "```python\nimport asyncio\n\n\nasync def main() -> None:\n"
        "    print('pushed', 3,\n          'clusters')  # pushed 3 clusters\n\n\n"
        "asyncio.run(main())\nprint('port', 40123)\n```\n\n"
        "```output\npushed 3 clusters\nport ...\n```\n"
    )
    assert run_doc(doc, tmp_path) == []

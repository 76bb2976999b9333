"""Compare a fresh codegen output with the committed one; exit 1 and show what differs."""

from __future__ import annotations

import difflib
import pathlib
import sys


def tree(root: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    fresh, committed = (pathlib.Path(a) for a in sys.argv[1:3])
    a, b = tree(fresh), tree(committed)
    problems = 0
    for name in sorted(set(a) | set(b)):
        if name not in b:
            print(f"missing from the committed tree: {name}")
        elif name not in a:
            print(f"not produced by codegen any more: {name}")
        elif a[name] != b[name]:
            print(f"differs: {name}")
            diff = difflib.unified_diff(
                b[name].decode(errors="replace").splitlines(),
                a[name].decode(errors="replace").splitlines(),
                "committed/" + name,
                "regenerated/" + name,
                lineterm="",
                n=1,
            )
            for i, line in enumerate(diff):
                if i >= 40:
                    print("  ...")
                    break
                print("  " + line)
        else:
            continue
        problems += 1
    if problems:
        print(f"{problems} generated file(s) out of date: run `nox -s codegen` and commit.")
        return 1
    print(f"generated code is up to date ({len(a)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every ``benchmarks/bench_*.py`` module's ``main()`` in name order.

``python -m benchmarks`` runs all of them; ``python -m benchmarks codec pilot`` runs only
``bench_codec`` and ``bench_pilot``. Arguments starting with ``-`` (``--quick``) are left for
the modules, which read ``sys.argv`` themselves. Exits non-zero if a benchmark raised.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import time
import traceback
from collections.abc import Sequence

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


def discover() -> list[str]:
    """Names of the benchmark modules in this package, sorted (``bench_codec``, ...)."""
    return sorted(p.stem for p in PACKAGE_DIR.glob("bench_*.py"))


def select(available: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Pick modules by name; ``codec`` and ``bench_codec`` both mean ``bench_codec``."""
    if not wanted:
        return list(available)
    chosen = []
    for name in wanted:
        module = name if name.startswith("bench_") else f"bench_{name}"
        if module not in available:
            raise SystemExit(f"unknown benchmark {name!r}; available: {', '.join(available)}")
        chosen.append(module)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    failures = 0
    wanted = [arg for arg in args if not arg.startswith("-")]
    for name in select(discover(), wanted):
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            module.main()
        except Exception:
            failures += 1
            traceback.print_exc()
            print(f"== {name} FAILED ==", flush=True)
            continue
        print(f"== {name} done in {time.perf_counter() - started:.1f} s ==\n", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""``istio-sdk validate -f FILE [-f FILE ...]``: the schema and Istio's own rules, on YAML/JSON.

Prints one line per problem (level, file, document index, line, kind namespace/name, field
path, message). Istio's warnings are printed as warnings and never fail the run, as with
``istioctl validate``. Exit codes: 0 when no document has an error (warnings allowed), 1 when
one does, 64 on a usage error (no ``-f``, a file that cannot be read). ``-f -`` reads stdin; a
folder is read recursively.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import NoReturn

from istio_sdk.cli._command import Command, CommandError

EXIT_USAGE = 64  # EX_USAGE from sysexits.h


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="YAML or JSON file, folder (read recursively) or - for stdin; repeatable",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print problems only, no summary line"
    )
    parser.add_argument(
        "--no-warnings", action="store_true", help="print errors only, not Istio's warnings"
    )

    def usage_error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message}\n")

    parser.error = usage_error  # type: ignore[method-assign]


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.config import ConfigError
    from istio_sdk.config._io import read_source
    from istio_sdk.config._validate import validate_text

    sources: list[tuple[str, str]] = []
    for name in args.files:
        if name == "-":
            sources.append(("<stdin>", sys.stdin.read()))
            continue
        path = pathlib.Path(name)
        if not path.exists():
            raise CommandError(f"{name}: no such file or folder", exit_code=EXIT_USAGE)
        try:
            sources.extend(read_source(path))
        except OSError as exc:
            raise CommandError(f"{name}: cannot read: {exc}", exit_code=EXIT_USAGE) from exc
        except ConfigError as exc:  # not UTF-8, or too large to read
            raise CommandError(f"cannot read: {exc}", exit_code=EXIT_USAGE) from exc
    resources = errors = warnings = 0
    for source, text in sources:
        loaded, found = validate_text(text, source)
        resources += len(loaded)
        for problem in found:
            if problem.is_error:
                errors += 1
            else:
                warnings += 1
                if args.no_warnings:
                    continue
            print(f"{problem.level}: {problem}")
    if not args.quiet:
        verdict = "all valid" if errors == 0 else f"{errors} error(s)"
        if warnings:
            verdict += f", {warnings} warning(s)"
        print(
            f"checked {resources} resource(s) in {len(sources)} file(s): {verdict}",
            file=sys.stderr,
        )
    return 0 if errors == 0 else 1


COMMAND = Command(
    name="validate",
    help="check Istio YAML/JSON files against the schema and Istio's validation rules",
    description=(
        "Check Istio YAML/JSON files against the schema and Istio's own validation rules. "
        "Prints one line per error or warning; exits 0 when no document has an error "
        "(warnings allowed), 1 when one does, 64 on a usage error."
    ),
    run=_run,
    configure=_configure,
)

"""``istio-sdk validate -f FILE [-f FILE ...]``: schema-level checks of Istio YAML/JSON.

Prints one line per problem (file, document index, line, kind namespace/name, field path,
problem) and exits 0 when every document is valid, 1 otherwise. ``-f -`` reads stdin; a
folder is read recursively.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from istio_sdk.cli._command import Command, CommandError


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
            raise CommandError(f"{name}: no such file or folder")
        try:
            sources.extend(read_source(path))
        except OSError as exc:
            raise CommandError(f"{name}: cannot read: {exc}") from exc
        except ConfigError as exc:  # not UTF-8, or too large to read
            raise CommandError(f"cannot read: {exc}") from exc
    resources = problems = 0
    for source, text in sources:
        loaded, found = validate_text(text, source)
        resources += len(loaded)
        problems += len(found)
        for problem in found:
            print(problem)
    if not args.quiet:
        verdict = "all valid" if problems == 0 else f"{problems} problem(s)"
        print(
            f"checked {resources} resource(s) in {len(sources)} file(s): {verdict}",
            file=sys.stderr,
        )
    return 0 if problems == 0 else 1


COMMAND = Command(
    name="validate",
    help="check Istio YAML/JSON files against the schema",
    description=(
        "Check Istio YAML/JSON files against the schema. Prints one line per problem; "
        "exits 0 when every document is valid, 1 otherwise."
    ),
    run=_run,
    configure=_configure,
)

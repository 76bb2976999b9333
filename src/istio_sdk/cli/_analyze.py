"""``istio-sdk analyze PATH...``: ``istioctl analyze --use-kube=false`` over files and folders.

Prints the messages as istioctl does (``Error [IST0101] (VirtualService ns/name file:line)
...``, or ``-o json|yaml``), keeps those on resources in ``-n NAMESPACE`` (default ``default``;
``-A`` for all namespaces; cluster-scoped ones always), and exits as istioctl does: 79 when a
message reaches ``--failure-threshold`` (default Error; only with ``-o log``), 65 when a file
did not parse, 64 on a usage error, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, NoReturn, TextIO

from istio_sdk.cli._command import Command, CommandError

if TYPE_CHECKING:
    from istio_sdk.galley.analysis import Level, Message

EXIT_ISSUES = 79
EXIT_PARSE = 65
EXIT_USAGE = 64


def _configure(parser: argparse.ArgumentParser) -> None:
    def usage_error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message}\n")

    parser.error = usage_error  # type: ignore[method-assign]  # istioctl: 64 for a bad flag
    parser.add_argument("paths", nargs="*", metavar="PATH", help="file, folder (recursive) or -")
    parser.add_argument(
        "-n", "--namespace", default="", help="namespace to report on (default: default)"
    )
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="report on every namespace"
    )
    parser.add_argument("-o", "--output", default="log", help="log, json or yaml (default: log)")
    parser.add_argument(
        "--failure-threshold",
        default="Error",
        help="exit 79 when a message is at this level or worse: Info, Warning, Error",
    )
    parser.add_argument(
        "--output-threshold",
        default="Info",
        help="print messages at this level or worse: Info, Warning, Error",
    )
    parser.add_argument(
        "-S",
        "--suppress",
        action="append",
        default=[],
        metavar="CODE=RESOURCE",
        help="suppress a code on resources ('IST0103=Pod mypod.testing', * globs); repeatable",
    )
    parser.add_argument(
        "--analyzer", action="append", default=None, metavar="NAME", help="run only this analyzer"
    )
    parser.add_argument("-L", "--list-analyzers", action="store_true", help="list the analyzers")
    parser.add_argument(
        "--ignore-unknown", action="store_true", help="do not exit 65 when a file does not parse"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list executed and skipped analyzers"
    )
    parser.add_argument(
        "--color", action="store_true", help="colour the levels (default: only on a terminal)"
    )


class _Usage(CommandError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_USAGE)


def _level(text: str, flag: str) -> Level:
    from istio_sdk.galley.analysis import Level

    try:
        return Level.parse(text)
    except ValueError as exc:
        raise _Usage(f"{flag}: {exc}") from None


_COLORS = {"Error": "\033[1;31m", "Warning": "\033[33m"}


def _render_log(messages: list[Message], color: bool) -> str:
    lines = []
    for message in messages:
        line = str(message)
        level = message.level.value
        if color and level in _COLORS:
            line = f"{_COLORS[level]}{level}\033[0m{line[len(level) :]}"
        lines.append(line)
    return "\n".join(lines)


def _list(out: TextIO) -> None:
    from istio_sdk.galley.analysis import iter_analyzers

    out.write("Available analyzers:\n")
    for analyzer in iter_analyzers():
        out.write(f"* {analyzer.name}:\n    {analyzer.description}\n")


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.galley.analysis import (
        KNOWN_CODES,
        Suppression,
        analyze,
        load_for_analysis,
    )

    output = args.output.lower()
    if output not in ("log", "json", "yaml"):
        raise _Usage(f"{args.output} not a valid option for format: log, json or yaml")
    failure = _level(args.failure_threshold, "--failure-threshold")
    threshold = _level(args.output_threshold, "--output-threshold")
    if args.list_analyzers:
        _list(sys.stdout)
        return 0
    suppressions = []
    for text in args.suppress:
        try:
            rule = Suppression.parse(text)
        except ValueError as exc:
            raise _Usage(str(exc)) from None
        if rule.code not in KNOWN_CODES:
            print(
                f"Warning: Supplied message code '{rule.code}' is an unknown message code and "
                "will not have any effect.",
                file=sys.stderr,
            )
        suppressions.append(rule)
    if not args.paths:
        raise _Usage("no files to analyze (give files, folders or -)")
    stdin_text = sys.stdin.read() if "-" in args.paths else None
    try:
        loaded = load_for_analysis(args.paths, stdin_text=stdin_text)
    except FileNotFoundError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    for name in loaded.skipped:
        print(
            f"Skipping file {name}, recognized file extensions are: [.json .yaml .yml]",
            file=sys.stderr,
        )
    for problem in loaded.problems:
        print(f"Error(s) adding files: {problem}", file=sys.stderr)
    namespace = args.namespace or "default"
    try:
        result = analyze(
            loaded.resources,
            namespace=namespace,
            suppressions=suppressions,
            analyzers=args.analyzer,
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    target = "all namespaces" if args.all_namespaces else f"namespace: {namespace}"
    if args.verbose:
        print(f"Analyzed resources in {target}", file=sys.stderr)
        for title, names in (("Skipped", result.skipped), ("Executed", result.executed)):
            if names:
                print(f"{title} analyzers:", file=sys.stderr)
                for name in names:
                    print(f"\t {name}", file=sys.stderr)
        print(file=sys.stderr)
    kept = [
        m
        for m in result.messages
        if args.all_namespaces or m.origin is None or m.origin.namespace in ("", namespace)
    ]
    shown = [m for m in kept if m.level.at_least(threshold)]
    if output == "log":
        # istioctl colours the levels on a terminal, unless TERM is dumb
        wanted = args.color or sys.stdout.isatty()
        color = wanted and os.environ.get("TERM", "").lower() != "dumb"
        print(_render_log(list(shown), color))
    else:
        objects = [m.to_dict("istioctl-analyze") for m in shown]
        if output == "json":
            print(json.dumps(objects, indent="\t", ensure_ascii=False, sort_keys=True))
        else:
            import yaml

            print(yaml.safe_dump(objects, allow_unicode=True, sort_keys=True), end="")
    if not shown:
        if not loaded.problems:
            files = list(loaded.files)
            if len(files) > 1:
                listing = "\n  - ".join(files)
                print(
                    f"\u2714 No validation issues found when analyzing:\n  - {listing}",
                    file=sys.stderr,
                )
            elif files:
                print(
                    f"\u2714 No validation issues found when analyzing {files[0]}.", file=sys.stderr
                )
            else:
                print(
                    f"\u2714 No validation issues found when analyzing {target}.", file=sys.stderr
                )
        else:
            count = len({p.source for p in loaded.problems})
            noun = "file" if count == 1 else "files"
            print(
                f"No validation issues found when analyzing {target} "
                f"(but {count} {noun} could not be parsed).",
                file=sys.stderr,
            )
    if output != "log":
        return 0
    if any(m.level.at_least(failure) for m in kept):
        return EXIT_ISSUES
    if loaded.problems and not args.ignore_unknown:
        return EXIT_PARSE
    return 0


COMMAND = Command(
    name="analyze",
    help="analyze Istio configuration files as istioctl analyze does",
    description=(
        "Analyze Istio configuration (and the Kubernetes Services, Pods and Namespaces given "
        "with it) and print istioctl's validation messages. Exit codes: 79 issues at or over "
        "--failure-threshold, 65 a file did not parse, 64 usage error."
    ),
    run=_run,
    configure=_configure,
)

"""The ``istio-sdk`` command line.

Each subcommand lives in its own module under ``istio_sdk.cli`` and exposes a module-level
``COMMAND`` (a :class:`~istio_sdk.cli._command.Command`). To add a subcommand, write the module
and add one line to :data:`COMMAND_MODULES`; :func:`main` builds the argparse tree from that list.
Command modules keep their heavy imports inside ``run`` so ``istio-sdk --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from istio_sdk._version import __version__
from istio_sdk.cli._command import Command, CommandError

__all__ = ["COMMAND_MODULES", "Command", "CommandError", "build_parser", "load_commands", "main"]

# The subcommand registry: one module per command, listed in the order `--help` shows them.
COMMAND_MODULES: tuple[str, ...] = (
    "istio_sdk.cli._version_command",
    "istio_sdk.cli._validate",
    "istio_sdk.cli._demo",
    "istio_sdk.cli._agent",
    "istio_sdk.cli._serve",
    "istio_sdk.cli._proxy_config",
    "istio_sdk.cli._bootstrap",
    "istio_sdk.cli._iptables",
    "istio_sdk.cli._inject",
    "istio_sdk.cli._analyze",
)


def load_commands(modules: Sequence[str] = COMMAND_MODULES) -> list[Command]:
    """Import every command module and return their ``COMMAND`` objects.

    Raises :class:`TypeError` when a module does not define a ``COMMAND`` of the right type and
    :class:`ValueError` when two modules claim the same command name.
    """
    commands: list[Command] = []
    seen: dict[str, str] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        command = getattr(module, "COMMAND", None)
        if not isinstance(command, Command):
            raise TypeError(f"{module_name} does not define COMMAND = Command(...)")
        if command.name in seen:
            raise ValueError(
                f"command {command.name!r} is defined by both {seen[command.name]} "
                f"and {module_name}"
            )
        seen[command.name] = module_name
        commands.append(command)
    return commands


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """Build the ``istio-sdk`` argument parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="istio-sdk",
        description="Istio's mesh control plane, programmable from Python.",
        allow_abbrev=False,  # a prefix of a flag is not that flag (as in Istio's own tools)
    )
    parser.add_argument("--version", action="version", version=f"istio-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in load_commands() if commands is None else commands:
        child = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            allow_abbrev=False,
        )
        command.configure(child)
        child.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``istio-sdk`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    The console script calls this and exits with the result. Exit codes: 0 success, 1 the
    command found problems (for example invalid resources) or a server could not be reached,
    2 usage errors. When the reader of stdout goes away (``istio-sdk demo | head``) the
    command stops quietly with exit code 1, as Python's documentation recommends for EPIPE.
    """
    try:
        code = _dispatch(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a closed pipe shows up here rather than at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return 1
    return code


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        sys.stdout.flush()  # --help and --version text, before SystemExit ends the process
        raise
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        code: int = run(args)
    except CommandError as exc:
        print(f"istio-sdk {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the flush at interpreter exit cannot fail again."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return  # not a real file (pytest's capture, a StringIO): nothing will flush it
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)

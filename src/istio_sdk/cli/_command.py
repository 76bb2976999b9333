"""What a subcommand module provides: a name, help text, an argparse hook and a run function."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import attrs


class CommandError(Exception):
    """A failure the user can fix; ``main`` prints it and exits with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """Default ``configure`` for commands that take no arguments."""


@attrs.frozen
class Command:
    """One ``istio-sdk`` subcommand.

    ``configure`` adds the command's arguments to its subparser; ``run`` receives the parsed
    namespace and returns the process exit code.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    configure: Callable[[argparse.ArgumentParser], None] = _no_arguments
    description: str = ""

"""``istio-sdk version``: print the package version and the runtime it runs on."""

from __future__ import annotations

import argparse
import platform

from istio_sdk._version import __version__
from istio_sdk.cli._command import Command


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--short", action="store_true", help="print only the version number")


def _run(args: argparse.Namespace) -> int:
    if args.short:
        print(__version__)
    else:
        print(f"istio-sdk {__version__} (Python {platform.python_version()})")
    return 0


COMMAND = Command(
    name="version", help="print the istio-sdk version", run=_run, configure=_configure
)

"""Passes run over the betterproto2 output after it is written (see generate.py).

Each pass takes the output folder and the CodeGeneratorRequest (the descriptors of every
generated file) and may add or rewrite generated modules. Passes must be deterministic.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from fastcodec import fastcodec_pass
from field_rules import write_field_behavior
from google.protobuf.compiler import plugin_pb2
from lazy_imports import lazy_imports_pass
from lazy_services import lazy_services_pass
from static_init import static_init_pass

Pass = Callable[[pathlib.Path, plugin_pb2.CodeGeneratorRequest], None]

# static_init_pass rewrites the message classes, lazy_services_pass moves the services out,
# lazy_imports_pass defers imports used only in functions;
# fastcodec_pass imports the finished output, so it stays last.
PASSES: list[Pass] = [
    write_field_behavior,
    static_init_pass,
    lazy_services_pass,
    lazy_imports_pass,
    fastcodec_pass,
]


def run_passes(out: pathlib.Path, request: plugin_pb2.CodeGeneratorRequest) -> None:
    for step in PASSES:
        step(out, request)

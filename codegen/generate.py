"""Regenerate ``src/istio_sdk/api`` from ``protos/`` and Envoy's published descriptors.

Run through ``nox -s codegen``. The steps:

1. compile ``protos/`` (the Istio API, written in this project) with grpcio-tools' protoc
   into a FileDescriptorSet;
2. take the Envoy v3 file descriptors that ``xds-protos`` ships (``_pb2`` modules carry
   ``DESCRIPTOR``), walk their dependencies from the roots in ``envoy_roots.txt`` and collect
   the closed set of files, in dependency order;
3. hand all of it to betterproto2's compiler plugin as one CodeGeneratorRequest, so a single
   message pool (and ``google.protobuf.Any``) covers Istio and Envoy types together;
4. write the plugin's files below ``src/istio_sdk/api`` (replacing what was there), then run
   the post-processing passes (``postprocess.py``) that add the fast codec.

The output only depends on the inputs, so ``nox -s codegen_check`` can regenerate into a
temporary folder and compare.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
ENVOY_ROOTS = pathlib.Path(__file__).resolve().parent / "envoy_roots.txt"
DEFAULT_OUT = ROOT / "src" / "istio_sdk" / "api"
PLUGIN_OPTIONS = "client_generation=async,server_generation=async"


def istio_proto_files() -> list[str]:
    return sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))


def compile_istio_protos() -> descriptor_pb2.FileDescriptorSet:
    """Compile protos/ with only protoc's bundled well-known types on the include path."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "istio.pb"
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *istio_proto_files(),
        ]
        subprocess.run(cmd, check=True, cwd=PROTOS)
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def envoy_root_modules() -> list[str]:
    names = []
    for raw in ENVOY_ROOTS.read_text().splitlines():
        name = raw.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def envoy_file_descriptors() -> list[_descriptor.FileDescriptor]:
    """The closed, dependency-ordered set of files reachable from the Envoy roots."""
    seen: dict[str, _descriptor.FileDescriptor] = {}

    def visit(fd: _descriptor.FileDescriptor) -> None:
        if fd.name in seen:
            return
        for dep in fd.dependencies:
            visit(dep)
        seen[fd.name] = fd

    for module in envoy_root_modules():
        visit(importlib.import_module(module).DESCRIPTOR)
    return list(seen.values())


def build_request() -> plugin_pb2.CodeGeneratorRequest:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    order: list[str] = []
    for proto in compile_istio_protos().file:
        files[proto.name] = proto
        order.append(proto.name)
    for fd in envoy_file_descriptors():
        if fd.name in files:
            # google/protobuf/* and google/rpc/status.proto: ours (or protoc's) are
            # wire-identical to the published ones; keep one copy.
            continue
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        # The plugin requires source_code_info, as protoc always sends one.
        proto.source_code_info.SetInParent()
        files[proto.name] = proto
        order.append(proto.name)
    request = plugin_pb2.CodeGeneratorRequest(parameter=PLUGIN_OPTIONS)
    for name in order:
        request.proto_file.append(files[name])
        request.file_to_generate.append(name)
    return request


def run_plugin(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    plugin = shutil.which("protoc-gen-python_betterproto2")
    if plugin is None:
        candidate = pathlib.Path(sys.executable).parent / "protoc-gen-python_betterproto2"
        if not candidate.exists():
            raise SystemExit(
                "protoc-gen-python_betterproto2 not found: install betterproto2-compiler"
            )
        plugin = str(candidate)
    env = dict(os.environ)
    # The plugin formats its output with ruff: make the interpreter's bin dir visible.
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The plugin formats with `ruff format -`, which reads the ruff settings of its working
    # directory: run it from the project root so the output does not depend on where we are.
    proc = subprocess.run(
        [plugin],
        input=request.SerializeToString(),
        capture_output=True,
        env=env,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        raise SystemExit(f"betterproto2 plugin failed with exit code {proc.returncode}")
    response = plugin_pb2.CodeGeneratorResponse.FromString(proc.stdout)
    if response.error:
        raise SystemExit(f"betterproto2 plugin error: {response.error}")
    return response


HEADER_NOTE = (
    "# Generated by istio-sdk codegen from protos/ and xds-protos descriptors. Do not edit.\n"
)


def generate(out: pathlib.Path) -> None:
    request = build_request()
    response = run_plugin(request)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for item in sorted(response.file, key=lambda f: f.name):
        path = out / item.name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = item.content
        if item.name.endswith(".py") and content:
            content = HEADER_NOTE + content
        path.write_text(content)
    (out / "__init__.py").write_text(
        HEADER_NOTE
        + '"""Generated protobuf classes for the Istio and Envoy APIs (betterproto2).\n\n'
        + "Modules mirror proto packages: ``istio_sdk.api.istio.networking.v1alpha3``,\n"
        + "``istio_sdk.api.envoy.config.cluster.v3`` and so on. Import the package you need;\n"
        + 'nothing is imported eagerly.\n"""\n'
    )
    from postprocess import run_passes  # codegen/ is on sys.path (see main)

    run_passes(out, request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    generate(args.out)
    print(f"generated {sum(1 for _ in args.out.rglob('*.py'))} modules in {args.out}")


if __name__ == "__main__":
    main()

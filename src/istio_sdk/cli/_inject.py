"""``istio-sdk kube-inject -f FILE``: Istio's sidecar injected into Kubernetes YAML.

As ``istioctl kube-inject``: reads a multi-document YAML stream (``-f -`` for stdin), injects
every Pod, Pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
ReplicationController) and List of them, and writes the stream to stdout (or ``-o FILE``);
other documents pass through. ``--valuesFile`` (Helm values or an IstioOperator),
``--meshConfigFile`` (mesh config), ``--revision`` and ``--native-sidecars`` set what istiod's
ConfigMaps would. Skipped objects (host networking, injection disabled) are reported on stderr.

Exit codes: 0 injected; 1 an object cannot be injected (a malformed Pod, an annotation istiod
refuses); 64 input that is not usable at all (not YAML, over the size or nesting limits, a
file that cannot be read, settings that are not a mapping).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from istio_sdk.cli._command import Command, CommandError

EX_USAGE = 64


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="input YAML ('-' for stdin)"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--valuesFile", metavar="FILE", help="Helm values (or an IstioOperator with spec.values)"
    )
    parser.add_argument(
        "--meshConfigFile", metavar="FILE", help="mesh config (defaultConfig, trustDomain, ...)"
    )
    parser.add_argument("--revision", default="", help="the control plane revision (istio.io/rev)")
    parser.add_argument(
        "--native-sidecars",
        action="store_true",
        help="istio-proxy as a Kubernetes native sidecar (an init container, restartPolicy Always)",
    )


def _read(name: str, what: str) -> tuple[str, str]:
    from istio_sdk.config import ConfigError
    from istio_sdk.config._io import decode_text, read_file
    from istio_sdk.config._limits import DEFAULT_LIMITS

    try:
        if name == "-":
            data = sys.stdin.buffer.read(DEFAULT_LIMITS.max_bytes + 1)
            if len(data) > DEFAULT_LIMITS.max_bytes:
                raise CommandError(
                    f"stdin: more than {DEFAULT_LIMITS.max_bytes} bytes", exit_code=EX_USAGE
                )
            return "<stdin>", decode_text(data, "<stdin>")
        return name, decode_text(read_file(pathlib.Path(name)), name)
    except OSError as exc:
        raise CommandError(
            f"cannot read {what} {name}: {exc.strerror}", exit_code=EX_USAGE
        ) from None
    except ConfigError as exc:
        raise CommandError(str(exc), exit_code=EX_USAGE) from None


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.config import ConfigError
    from istio_sdk.proxy.inject import InjectionError
    from istio_sdk.proxy.inject.documents import inject_yaml, load_settings

    values = _read(args.valuesFile, "values file") if args.valuesFile else None
    mesh = _read(args.meshConfigFile, "mesh config file") if args.meshConfigFile else None
    source, text = _read(args.filename, "input")
    try:
        settings = load_settings(
            values_text=values[1] if values else None,
            values_source=values[0] if values else "values",
            mesh_text=mesh[1] if mesh else None,
            mesh_source=mesh[0] if mesh else "mesh config",
            revision=args.revision,
            native_sidecars=args.native_sidecars,
        )
    except InjectionError as exc:
        raise CommandError(str(exc), exit_code=EX_USAGE) from None
    try:
        result = inject_yaml(text, settings, source=source)
    except ConfigError as exc:
        raise CommandError(str(exc), exit_code=EX_USAGE) from None
    except InjectionError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    if args.output:
        try:
            pathlib.Path(args.output).write_text(result.text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc.strerror}", exit_code=1) from None
    else:
        sys.stdout.write(result.text)
    return 0


COMMAND = Command(
    name="kube-inject",
    help="inject Istio's sidecar into Kubernetes YAML (as istioctl kube-inject)",
    description=__doc__.split("\n\n")[1] if __doc__ else "",
    configure=_configure,
    run=_run,
)

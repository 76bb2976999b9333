"""``istio-sdk bootstrap [sidecar|gateway|router|waypoint]``: the bootstrap pilot-agent writes.

Reads what pilot-agent reads: the process environment (``POD_NAME``, ``POD_NAMESPACE``,
``INSTANCE_IP``, ``PROXY_CONFIG``, ``ISTIO_META_*``, ...; ``--ignore-environment`` starts from
nothing, ``--env KEY=VALUE`` and ``--env-file FILE`` add to it), the Pod's labels and
annotations (downward-API files with ``--labels``/``--annotations``, or ``--annotation
KEY=VALUE``) and the mesh config file (``--mesh-config``). Prints the bootstrap as proto3 JSON
(what ``envoy -c`` reads) or writes it to ``-o FILE``. Bad input exits 1 with one line naming
the variable, annotation or file at fault.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from istio_sdk.cli._command import Command, CommandError

_ROLES = ("sidecar", "gateway", "router", "waypoint")
_MAX_FILE = 1 << 20


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "role",
        nargs="?",
        default="sidecar",
        choices=_ROLES,
        help="what the proxy is (default sidecar; a gateway's node type is router)",
    )
    parser.add_argument(
        "-i",
        "--ignore-environment",
        action="store_true",
        help="start from an empty environment instead of this process's",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable"
    )
    parser.add_argument(
        "--env-file", action="append", default=[], metavar="FILE", help="KEY=VALUE lines"
    )
    parser.add_argument("--labels", metavar="FILE", help="the Pod's labels (downward-API file)")
    parser.add_argument(
        "--annotations", metavar="FILE", help="the Pod's annotations (downward-API file)"
    )
    parser.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Pod annotation, e.g. proxy.istio.io/config='concurrency: 2'",
    )
    parser.add_argument("--mesh-config", metavar="FILE", help="mesh config file (defaultConfig)")
    parser.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="IP",
        help="the proxy's IP addresses (default: INSTANCE_IP); repeatable",
    )
    parser.add_argument(
        "--service-cluster",
        default="istio-proxy",
        metavar="NAME",
        help="the node's cluster when ProxyConfig names none (pilot-agent's --serviceCluster)",
    )
    parser.add_argument(
        "--domain",
        default="",
        metavar="DOMAIN",
        help="DNS domain (default NAMESPACE.svc.cluster.local)",
    )
    parser.add_argument(
        "--outlier-log-path", default="", metavar="PATH", help="outlier detection event log"
    )
    parser.add_argument("--log-as-json", action="store_true", help="Envoy logs JSON lines")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")


def _read(path: str, what: str) -> str:
    try:
        data = pathlib.Path(path).read_bytes()[: _MAX_FILE + 1]
    except OSError as exc:
        raise CommandError(f"{what} {path}: cannot read: {exc.strerror}", exit_code=1) from exc
    if len(data) > _MAX_FILE:
        raise CommandError(f"{what} {path}: larger than {_MAX_FILE} bytes", exit_code=1)
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise CommandError(f"{what} {path}: not UTF-8 ({exc.reason})", exit_code=1) from exc


def _pairs(items: list[str], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"{what} {item!r:.80}: expected KEY=VALUE")
        result[key] = value
    return result


def _env_file(path: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for number, raw in enumerate(_read(path, "env file").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise CommandError(f"env file {path}:{number}: expected KEY=VALUE", exit_code=1)
        result[key] = value
    return result


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.proxy.bootstrap import (
        BootstrapError,
        ProxyRole,
        bootstrap_for_pod,
        bootstrap_to_json,
        parse_downward_api,
    )

    env = {} if args.ignore_environment else dict(os.environ)
    for path in args.env_file:
        env.update(_env_file(path))
    env.update(_pairs(args.env, "--env"))
    try:
        labels = (
            parse_downward_api(_read(args.labels, "labels file"), args.labels)
            if args.labels
            else None
        )
        annotations = (
            parse_downward_api(_read(args.annotations, "annotations file"), args.annotations)
            if args.annotations
            else None
        )
        extra = _pairs(args.annotation, "--annotation")
        if extra:
            annotations = {**(annotations or {}), **extra}
        mesh_config = _read(args.mesh_config, "mesh config") if args.mesh_config else None
        result = bootstrap_for_pod(
            env,
            ProxyRole(args.role),
            annotations=annotations,
            labels=labels,
            mesh_config=mesh_config,
            instance_ips=tuple(args.ip) if args.ip else None,
            service_cluster=args.service_cluster,
            dns_domain=args.domain,
            outlier_log_path=args.outlier_log_path,
            log_as_json=args.log_as_json,
        )
    except BootstrapError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    text = bootstrap_to_json(result) + "\n"
    if args.output:
        try:
            pathlib.Path(args.output).write_text(text)
        except OSError as exc:
            raise CommandError(f"{args.output}: cannot write: {exc.strerror}", exit_code=1) from exc
    else:
        sys.stdout.write(text)
    return 0


COMMAND = Command(
    name="bootstrap",
    help="print the Envoy bootstrap pilot-agent writes for a Pod",
    description=__doc__,
    configure=_configure,
    run=_run,
)

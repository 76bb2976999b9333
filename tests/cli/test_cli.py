"""The istio-sdk command: registry, --help, version, validate and demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from istio_sdk import __version__
from istio_sdk.cli import COMMAND_MODULES, Command, build_parser, load_commands, main

VALID = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"""

INVALID = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ok, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {subset: v1}
---
apiVersion: networking.istio.io/v1
kind: Frobnicator
metadata: {name: what, namespace: shop}
"""


def test_every_registered_module_provides_a_command() -> None:
    commands = load_commands()
    names = [c.name for c in commands]
    assert names[:3] == ["version", "validate", "demo"]  # other engineers' commands follow
    assert len(set(names)) == len(COMMAND_MODULES) == len(commands)
    assert all(c.help for c in commands)


def test_registry_rejects_duplicates_and_modules_without_command() -> None:
    with pytest.raises(ValueError, match="'version' is defined by both"):
        load_commands(["istio_sdk.cli._version_command", "istio_sdk.cli._version_command"])
    with pytest.raises(TypeError, match="does not define COMMAND"):
        load_commands(["istio_sdk.cli._command"])


def test_a_new_command_plugs_in_with_one_object() -> None:
    def run(args: argparse.Namespace) -> int:
        return 7 if args.flag else 0

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--flag", action="store_true")

    parser = build_parser([Command(name="probe", help="test", run=run, configure=configure)])
    args = parser.parse_args(["probe", "--flag"])
    assert args._run(args) == 7


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in load_commands():
        assert command.name in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: istio-sdk" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"istio-sdk {__version__} (Python ")
    assert main(["version", "--short"]) == 0
    assert capsys.readouterr().out == f"{__version__}\n"


def test_validate_valid_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(VALID)
    assert main(["validate", "-f", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "checked 1 resource(s) in 1 file(s): all valid" in captured.err


def test_validate_reports_one_line_per_problem(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID)
    assert main(["validate", "-f", str(good), "-f", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"error: {bad}[1]:17: VirtualService shop/reviews: "
        "spec.http[0].route[0].destination.host: missing required field",
        f"error: {bad}[1]:17: VirtualService shop/reviews: "
        "spec.http[0].route[0].destination.host: empty domain name not allowed",
        f"error: {bad}[2]:20: Frobnicator shop/what: kind: "
        "unknown kind 'Frobnicator' in apiVersion 'networking.istio.io/v1'",
    ]


def test_validate_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", "/nonexistent/file.yaml"]) == 64
    assert "no such file" in capsys.readouterr().err


def test_validate_requires_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 64
    assert "the following arguments are required: -f/--filename" in capsys.readouterr().err


def test_demo_summarises_the_bundled_mesh(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--summary-only"]) == 0
    out = capsys.readouterr().out
    assert "validation: all valid, 1 warning(s)" in out  # every EnvoyFilter gets Istio's warning
    assert "  warning: " in out and "EnvoyFilter exposes internal implementation details" in out
    for expected in (
        "VirtualService",
        "DestinationRule",
        "bookinfo/bookinfo-gateway",
        "istio=ingressgateway",
        "reviews (v1) 80%",
        "ISTIO_MUTUAL",
        "www.googleapis.com",
        "rule istio-system/promhttp",
    ):
        assert expected in out, expected


def test_demo_on_a_folder_with_problems(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(INVALID)
    assert main(["demo", "--summary-only", "--path", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "3 problem(s)" in out
    assert "Gateway" in out  # what loaded is still summarised


def test_top_level_examples_are_the_bundled_ones() -> None:
    root = pathlib.Path(__file__).resolve().parents[2]
    bundled = root / "src" / "istio_sdk" / "examples"
    top = root / "examples"
    if not top.exists():
        pytest.skip("not running from a checkout")
    names = sorted(p.name for p in bundled.iterdir())
    assert sorted(p.name for p in top.iterdir()) == names
    for name in names:
        assert (top / name).read_bytes() == (bundled / name).read_bytes()


def test_console_script_validate(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(INVALID)
    script = shutil.which("istio-sdk")
    fallback = "import sys; from istio_sdk.cli import main; sys.exit(main())"
    command = [script] if script else [sys.executable, "-c", fallback]
    proc = subprocess.run(
        [*command, "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "missing required field" in proc.stdout
    assert "3 error(s)" in proc.stderr


def test_validate_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(INVALID))
    assert main(["validate", "-q", "-f", "-"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("error: <stdin>[1]:17: VirtualService shop/reviews: ")
    assert captured.err == ""


def test_proxy_config_follows_the_route_names_listeners_load_over_rds() -> None:
    from istio_sdk.api.envoy.config.listener.v3 import FilterChain, Listener
    from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
    from istio_sdk.cli._proxy_config import referenced_routes
    from istio_sdk.pilot.translate._common import hcm_filter, tcp_proxy_filter

    manager = hcm.HttpConnectionManager(stat_prefix="in", rds=hcm.Rds(route_config_name="9080"))
    listener = Listener(
        name="0.0.0.0_9080",
        filter_chains=[
            FilterChain(filters=[hcm_filter(manager)]),
            FilterChain(filters=[tcp_proxy_filter("tcp", "outbound|3306||db")]),
        ],
    )
    assert referenced_routes({listener.name: listener}) == {"9080"}


# -- errors a user sees on the command line (run as a subprocess, as a shell would) ---------


def _cli(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    options: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 60}
    options.update(kwargs)
    return subprocess.run([sys.executable, "-m", "istio_sdk.cli", *argv], check=False, **options)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening) for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("argv", [["demo", "--summary-only"], ["validate", "-f", "-"], ["version"]])
def test_output_into_a_closed_pipe_exits_quietly(argv: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes: `istio-sdk demo | head`
    try:
        proc = _cli(
            *argv,
            stdout=write_end,
            stderr=subprocess.PIPE,
            capture_output=False,
            input=VALID.replace("reviews", "x" * 70_000),
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "localhost",
            "--ca-address wants HOST:PORT (for example 127.0.0.1:15010), got 'localhost'",
        ),
        (
            "localhost:",
            "--ca-address wants HOST:PORT (for example 127.0.0.1:15010), got 'localhost:'",
        ),
        (":15012", "--ca-address wants HOST:PORT (for example 127.0.0.1:15010), got ':15012'"),
        (
            "::1:15012",
            "--ca-address wants HOST:PORT (for example 127.0.0.1:15010), got '::1:15012'",
        ),
        (
            "host:http",
            "--ca-address wants HOST:PORT (for example 127.0.0.1:15010), got 'host:http'",
        ),
        ("host:99999", "--ca-address: port 99999 is out of range (1-65535)"),
        ("[zz]:1", "--ca-address: 'zz' is not an IPv6 address"),
    ],
)
def test_an_address_without_a_usable_port_is_a_one_line_usage_error(
    tmp_path: pathlib.Path, value: str, message: str
) -> None:
    proc = _cli("agent", f"--ca-address={value}", f"--ca-root={tmp_path / 'root.pem'}")
    assert proc.stderr == f"istio-sdk agent: error: {message}\n"
    assert proc.returncode == 2


def test_parse_address_accepts_names_ipv4_and_bracketed_ipv6() -> None:
    from istio_sdk.cli._address import parse_address

    assert parse_address("--xds", "istiod.istio-system:15010") == ("istiod.istio-system", 15010)
    assert parse_address("--xds", "127.0.0.1:1") == ("127.0.0.1", 1)
    assert parse_address("--xds", "[::1]:15010") == ("::1", 15010)


def test_a_bad_root_certificate_is_a_one_line_error(tmp_path: pathlib.Path) -> None:
    for name, content in (("text.pem", b"not a certificate\n"), ("bin.pem", bytes(range(256)))):
        root = tmp_path / name
        root.write_bytes(content)
        proc = _cli("agent", "--once", f"--output-dir={tmp_path}", f"--ca-root={root}")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("istio-sdk agent: error: ")
        assert str(root) in proc.stderr
        assert proc.stderr.count("\n") == 1


async def test_check_reachable_names_the_refused_address(refused_port: int) -> None:
    from istio_sdk.cli._address import check_reachable
    from istio_sdk.cli._command import CommandError

    with pytest.raises(CommandError) as caught:
        await check_reachable("--xds", "127.0.0.1", refused_port)
    assert str(caught.value) == (
        f"--xds 127.0.0.1:{refused_port}: cannot connect: Connection refused"
    )
    assert caught.value.exit_code == 1


async def test_check_reachable_passes_when_something_listens() -> None:
    from istio_sdk.cli._address import check_reachable

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        await check_reachable("--xds", "127.0.0.1", port)


def test_proxy_config_without_a_port_is_a_one_line_usage_error() -> None:
    proc = _cli("proxy-config", "clusters", "--xds", "localhost", "--node", "sidecar~1~a.b~b.c")
    assert proc.stderr == (
        "istio-sdk proxy-config: error: "
        "--xds wants HOST:PORT (for example 127.0.0.1:15010), got 'localhost'\n"
    )
    assert proc.returncode == 2


def test_proxy_config_to_a_refused_address_fails_at_once(refused_port: int) -> None:
    # With --timeout 300, waiting for the client's timeout hits the subprocess's (30 s) instead.
    proc = _cli(
        "proxy-config",
        "clusters",
        f"--xds=127.0.0.1:{refused_port}",
        "--node=n",
        "--timeout=300",
        timeout=30,
    )
    assert proc.stderr == (
        f"istio-sdk proxy-config: error: --xds 127.0.0.1:{refused_port}: "
        "cannot connect: Connection refused\n"
    )
    assert proc.returncode == 1


# -- serve: a bad start-up file is refused with one line naming it -------------------------------

SERVE = "import sys; from istio_sdk.cli import main; sys.exit(main())"


def _alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("deep.json", "[" * 2000 + "]" * 2000, "deep.json[0]: document is nested deeper than 100"),
        ("digits.json", '{"a": ' + "1" * 5000 + "}", "digits.json[0]: integer has more than"),
        ("bomb.yaml", _alias_bomb(), "bomb.yaml[0]:6: aliases expand to more than 100000 nodes"),
        ("typo.yaml", VALID.replace("hosts:", "hostz:"), "typo.yaml[0]:5: VirtualService shop"),
    ],
)
def test_serve_refuses_a_bad_start_up_file(
    tmp_path: pathlib.Path, name: str, content: str, message: str
) -> None:
    (tmp_path / "good.yaml").write_text(VALID)
    (tmp_path / name).write_text(content)
    proc = subprocess.run(
        [sys.executable, "-c", SERVE, "serve", "--config", str(tmp_path), "--xds-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""  # it never said it listens
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"istio-sdk serve: error: invalid config: {tmp_path / name}"), line
    assert message in line


def test_serve_counts_the_other_problems_in_its_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(INVALID)  # three problems
    (tmp_path / "b.json").write_text('{"a": NaN}')
    assert main(["serve", "--config", str(tmp_path), "--xds-port", "0"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"istio-sdk serve: error: invalid config: {tmp_path / 'a.yaml'}[1]:")
    assert line.endswith(f"(and 3 more; `istio-sdk validate -f {tmp_path}` lists them)")


def test_serve_reports_a_taken_port_in_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--config", str(tmp_path), "--xds-port", str(port)])
    assert code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"istio-sdk serve: error: cannot listen on 127.0.0.1:{port} for xDS: ")


def test_validate_reports_a_non_utf8_file_in_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"kind: caf\xe9\n")
    assert main(["validate", "-f", str(path)]) == 64
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"istio-sdk validate: error: cannot read: {path}: not UTF-8 text: byte 0xe9 at offset 9"
    )

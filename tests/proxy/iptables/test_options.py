"""istio-iptables' flags, environment variables and defaults; bad input gets one clear line."""

from __future__ import annotations

import ipaddress
import pathlib
import re

import pytest

from istio_sdk.cli import main
from istio_sdk.proxy.iptables import (
    ALL,
    CaptureConfig,
    InterceptionMode,
    IptablesConfigError,
    IptablesError,
    apply_rules,
    build_rules,
    cleanup_rules,
    config_from_options,
    iptables_state,
)
from istio_sdk.proxy.iptables._host import read_resolv_conf, wants_ipv6

GOLDEN = pathlib.Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _no_host_iptables(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run as root in CI, outside any network namespace: no iptables is findable,
    so a dry run that stopped being dry fails with "iptables not found" instead of rewriting
    the host's rules. Tests that need binaries pass stand-ins with ``path=``."""
    monkeypatch.setattr("istio_sdk.proxy.iptables._apply._SBIN", ())
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("NETWORK_NAMESPACE", raising=False)  # main() would setns pytest itself


def golden_restore(name: str) -> str:
    """Istio's golden file without the iptables-save calls around the restore input."""
    lines = (GOLDEN / f"{name}.golden").read_text().splitlines()
    return "".join(f"{line}\n" for line in lines if line not in ("iptables-save", "ip6tables-save"))


def resolve(
    values: dict[str, str | None] | None = None, env: dict[str, str] | None = None
) -> CaptureConfig:
    config, _ = config_from_options(values or {}, env or {}, ipv6=False, user_id=lambda name: None)
    return config


def test_defaults_are_istios() -> None:
    config = resolve()
    assert config == CaptureConfig()
    assert (config.proxy_port, config.inbound_capture_port, config.inbound_tunnel_port) == (
        15001,
        15006,
        15008,
    )
    assert (config.proxy_uids, config.proxy_gids) == (("1337",), ("1337",))
    assert config.inbound_interception_mode is InterceptionMode.REDIRECT
    assert (config.inbound_ports_include, config.outbound_ip_ranges_include) == ((), ())
    assert config.owner_groups_include == ALL


def test_the_proxy_user_comes_from_envoy_user() -> None:
    looked_up: list[str] = []

    def user_id(name: str) -> str | None:
        looked_up.append(name)
        return "2002"

    config, _ = config_from_options({}, {"ENVOY_USER": "envoy"}, ipv6=False, user_id=user_id)
    assert looked_up == ["envoy"]
    assert (config.proxy_uids, config.proxy_gids) == (("2002",), ("2002",))
    # -g defaults to -u, whatever -u is.
    assert resolve({"proxy-uid": "3,4"}).proxy_gids == ("3", "4")


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("INBOUND_CAPTURE_PORT", "16006", "inbound_capture_port", 16006),
        ("INBOUND_TUNNEL_PORT", "16008", "inbound_tunnel_port", 16008),
        ("PROXY_UID", "101", "proxy_uids", ("101",)),
        ("PROXY_GID", "102", "proxy_gids", ("102",)),
        (
            "ISTIO_INBOUND_INTERCEPTION_MODE",
            "TPROXY",
            "inbound_interception_mode",
            InterceptionMode.TPROXY,
        ),
        ("ISTIO_INBOUND_PORTS", "*", "inbound_ports_include", ALL),
        ("ISTIO_LOCAL_EXCLUDE_PORTS", "15020,15021", "inbound_ports_exclude", ("15020", "15021")),
        ("ISTIO_EXCLUDE_INTERFACES", "eth9", "exclude_interfaces", ("eth9",)),
        ("ISTIO_SERVICE_CIDR", "*", "outbound_ip_ranges_include", ALL),
        (
            "ISTIO_SERVICE_EXCLUDE_CIDR",
            "10.96.0.0/12",
            "outbound_ip_ranges_exclude",
            (ipaddress.ip_interface("10.96.0.0/12"),),
        ),
        ("ISTIO_OUTBOUND_PORTS", "8000:8100", "outbound_ports_include", ("8000:8100",)),
        ("ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE", "25", "outbound_ports_exclude", ("25",)),
        ("KUBE_VIRT_INTERFACES", "tap0", "kube_virt_interfaces", ("tap0",)),
        ("ISTIO_INBOUND_TPROXY_MARK", "7", "inbound_tproxy_mark", 7),
        ("ISTIO_INBOUND_TPROXY_ROUTE_TABLE", "8", "inbound_tproxy_route_table", 8),
        ("REDIRECT_DNS", "true", "redirect_dns", True),
        ("ISTIO_META_DNS_CAPTURE", "true", "redirect_dns", True),
        ("DROP_INVALID", "1", "drop_invalid", True),
        ("INVALID_DROP", "true", "drop_invalid", True),
        ("CAPTURE_ALL_DNS", "T", "capture_all_dns", True),
        ("ISTIO_OUTBOUND_OWNER_GROUPS", "java,202", "owner_groups_include", ("java", "202")),
        ("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "888", "owner_groups_exclude", ("888",)),
        (
            "ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR",
            "127.0.0.1/8",
            "host_ipv4_loopback_cidr",
            "127.0.0.1/8",
        ),
    ],
)
def test_istios_environment_variables(
    variable: str, value: str, field: str, expected: object
) -> None:
    env = {variable: value}
    if field == "redirect_dns":
        env["CAPTURE_ALL_DNS"] = "true"  # no resolv.conf needed
    assert getattr(resolve(env=env), field) == expected


def test_the_command_line_beats_the_extra_variable_which_beats_the_own_one() -> None:
    env = {"DROP_INVALID": "false", "INVALID_DROP": "true"}
    assert resolve(env=env).drop_invalid is True
    assert resolve({"drop-invalid": "false"}, env).drop_invalid is False
    assert resolve(
        {"istio-inbound-ports": "80"}, {"ISTIO_INBOUND_PORTS": "*"}
    ).inbound_ports_include == ("80",)
    # -p has no variable in Istio.
    assert resolve(env={"ENVOY_PORT": "9"}).proxy_port == 15001


def test_redirect_dns_reads_the_servers_from_resolv_conf(tmp_path: pathlib.Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# c\nnameserver 10.0.0.10\nnameserver fd00::a\nnameserver fe80::1%eth0\n"
        "nameserver junk\noptions ndots:5\n"
    )
    assert read_resolv_conf(resolv) == (["10.0.0.10"], ["fd00::a"])
    config, _ = config_from_options({"redirect-dns": "true"}, {}, ipv6=True, resolv_conf=resolv)
    assert (config.dns_servers_v4, config.dns_servers_v6) == (("10.0.0.10",), ("fd00::a",))
    with pytest.raises(IptablesConfigError, match="failed to load"):
        config_from_options({"redirect-dns": "true"}, {}, ipv6=False, resolv_conf=tmp_path / "none")
    # past 1 MiB is refused, not read into memory (a mistaken --resolv-conf /dev/zero; a
    # regular file here, so that a regression fails instead of filling the memory)
    big = tmp_path / "big"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(IptablesConfigError, match="larger than 1048576 bytes"):
        read_resolv_conf(big)


def test_ipv6_is_decided_like_istio() -> None:
    v4, v6 = ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("fd00::3")
    loop, link = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("fe80::1")
    assert wants_ipv6([loop, v4, link, v6], dual_stack=False) is False
    assert wants_ipv6([loop, v4, link, v6], dual_stack=True) is True
    assert wants_ipv6([link, v6], dual_stack=False) is True
    with pytest.raises(IptablesConfigError, match="no valid local IP address"):
        wants_ipv6([loop, link], dual_stack=True)
    config, _ = config_from_options({"dual-stack": "true"}, {}, local_addresses=lambda: [v4, v6])
    assert config.enable_ipv6 is True


BAD = [
    (["-p", "http"], "-p/--envoy-port: 'http' is not a port number"),
    (["-z", "70000"], "-z/--inbound-capture-port: '70000' is not a port number"),
    (["-p", "0"], "port 0 cannot be listened on"),
    (["-b", "80,abc"], "-b/--istio-inbound-ports: 'abc' is not a port number"),
    (["-q", "90:80"], "runs backwards"),
    (["-d", "*"], "-d/--istio-local-exclude-ports: '*' is not a port number"),
    (["-i", "10.0.0.0"], "-i/--istio-service-cidr: '10.0.0.0' is not a CIDR"),
    (["-x", "*"], "-x/--istio-service-exclude-cidr: '*' is not allowed here"),
    (["-x", "10.0.0.0/33"], "is not a CIDR"),
    # Python's ipaddress keeps any text after '%' as an IPv6 scope id: rules inside a CIDR
    (
        ["-x", "fe80::1%x -j ACCEPT\n-A OUTPUT -j DROP\n#/128"],
        "-x/--istio-service-exclude-cidr: 'fe80::1%x -j ACCEPT\\n-A OUTPUT -j DROP\\n#/128' has",
    ),
    (["-i", "fd00::1%eth0/64"], "-i/--istio-service-cidr: 'fd00::1%eth0/64' has a scope id"),
    (["-m", "NAT"], "'NAT' is not REDIRECT or TPROXY"),
    (
        ["-u", "1337\n-A OUTPUT -j DROP"],
        "-u/--proxy-uid: '1337\\n-A OUTPUT -j DROP' is not a valid name",
    ),
    (["-u", ""], None),  # empty means the default, as in Istio
    (["-c", "a-very-long-interface-name"], "-c/--istio-exclude-interfaces"),
    (["-k", "eth0 -j DROP"], "-k/--kube-virt-interfaces"),
    (["-t", "99999999999999999999999"], "-t/--istio-inbound-tproxy-mark"),
    (["-t", "9" * 1_000_000], "-t/--istio-inbound-tproxy-mark: '999"),
    (["-r", "NaN"], "-r/--istio-inbound-tproxy-route-table: 'NaN'"),
    (["--redirect-dns=maybe"], "--redirect-dns: 'maybe' is not true or false"),
    (["--force-iptables-binary", "ebtables"], "'ebtables' is not legacy or nft"),
    (["--cleanup", "--skip-rule-apply"], "contradict"),
    (["-p", "15006"], "proxy_port and inbound_capture_port are both 15006"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (
        ["--network-namespace", "/nonexistent/a\nb"],
        "--network-namespace: cannot open '/nonexistent/a\\nb': No such file or directory",
    ),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_bad_input_is_one_clear_line(
    argv: list[str],
    message: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        code = main(["iptables", "-n", "--no-ipv6", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    if message is None:
        assert code == 0
        return
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == (1 if "unrecognized" not in message else 2)  # + usage
    assert message in err
    assert len(err) < 300


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"proxy_uids": ""}, "proxy_uids: at least one user or group is needed"),
        ({"dns_servers_v4": ["fd00::1"]}, "dns_servers_v4: 'fd00::1' is not an IPv4 address"),
        (
            {"dns_servers_v6": ["fe80::1%x -j ACCEPT"]},
            "dns_servers_v6: 'fe80::1%x -j ACCEPT' is not an IPv6 address",
        ),
        (
            {"host_ipv4_loopback_cidr": "10.0.0.1/32"},
            "host_ipv4_loopback_cidr: expected an IPv4 loopback",
        ),
        ({"host_ipv4_loopback_cidr": "127.0.0.1/4"}, "host_ipv4_loopback_cidr: the prefix length"),
        (
            {"owner_groups_include": [str(g) for g in range(65)]},
            "owner_groups_include: at most 64 groups, got 65",
        ),
    ],
)
def test_capture_config_refuses_what_would_break_or_smuggle_rules(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(IptablesConfigError, match="^" + re.escape(message)):
        CaptureConfig(**fields)  # type: ignore[arg-type]


def test_a_missing_iptables_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(IptablesError, match=r"^iptables not found"):
        apply_rules(CaptureConfig(), path=str(tmp_path))
    with pytest.raises(IptablesError, match=r"^iptables not found"):
        cleanup_rules(path=str(tmp_path))


def test_cli_exit_code_when_iptables_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["iptables", "-i", "*", "--no-ipv6"]) == 1
    assert capsys.readouterr().err.startswith("istio-sdk iptables: error: iptables not found")


@pytest.mark.parametrize(
    ("argv", "golden"),
    [
        (["-b", "*", "-m", "TPROXY", "--ipv6"], None),
        (["-i", "*", "-k", "eth1,eth2", "--no-ipv6"], "kube-virt-interfaces"),
        (["-b", "32000,31000", "-m", "TPROXY", "--no-ipv6"], "inbound-ports-tproxy"),
        (["-c", "not-istio-nic", "--no-ipv6"], "basic-exclude-nic"),
        (["--drop-invalid", "--no-ipv6"], "drop-invalid"),
        (["-q", "32000,31000", "--ipv6"], "ipv6-outbound-ports"),
    ],
)
def test_dry_run_prints_istios_rules(
    argv: list[str],
    golden: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in (
        "ISTIO_INBOUND_PORTS",
        "ISTIO_SERVICE_CIDR",
        "DROP_INVALID",
        "INVALID_DROP",
        "ENVOY_USER",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("istio_sdk.proxy.iptables._host.user_id", lambda name: None)
    assert main(["iptables", "--dry-run", *argv]) == 0
    out = capsys.readouterr().out
    rules = "".join(line + "\n" for line in out.splitlines() if not line.startswith("#"))
    if golden is not None:
        assert rules == golden_restore(golden)
    else:
        expected = build_rules(
            CaptureConfig(
                inbound_ports_include="*", inbound_interception_mode="TPROXY", enable_ipv6=True
            )
        )
        v4, v6 = expected.restore(4), expected.restore(6)
        assert out == f"# iptables-restore --noflush\n{v4}# ip6tables-restore --noflush\n{v6}"


def test_dry_run_cleanup_prints_what_would_be_removed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iptables", "-n", "--cleanup", "-c", "eth9", "--no-ipv6", "-u", "1337"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "-D OUTPUT -o eth9 -j RETURN" in out
    assert "-D OUTPUT -j ISTIO_OUTPUT" in out
    assert out[-3:] == ["-X ISTIO_IN_REDIRECT", "-X ISTIO_OUTPUT", "COMMIT"]


def test_the_injectors_istio_init_arguments_work(capsys: pytest.CaptureFixture[str]) -> None:
    # What Istio's injection template gives istio-init, in the same order.
    argv = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", ""]
    argv += [
        "-b",
        "*",
        "-d",
        "15090,15021,15020",
        "--log_output_level=default:info",
        "--log_as_json",
    ]
    assert main(["iptables", *argv, "--dry-run", "--no-ipv6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN" in out
    assert out[-2:] == ["-A ISTIO_OUTPUT -j ISTIO_REDIRECT", "COMMIT"]


@pytest.mark.parametrize(
    ("installed", "legacy_rules", "forced", "chosen"),
    [
        (["", "-nft", "-legacy"], False, "", "iptables-nft-save"),
        (["", "-nft", "-legacy"], True, "", "iptables-legacy-save"),
        (["", "-legacy"], False, "", "iptables-save"),
        ([""], False, "", "iptables-save"),
        (["", "-nft", "-legacy"], True, "nft", "iptables-nft-save"),
        (["", "-nft", "-legacy"], False, "legacy", "iptables-legacy-save"),
    ],
)
def test_the_iptables_variant_is_chosen_like_istio(
    tmp_path: pathlib.Path, installed: list[str], legacy_rules: bool, forced: str, chosen: str
) -> None:
    from istio_sdk.proxy.iptables._apply import Completed

    for variant in installed:
        for suffix in ("", "-save", "-restore"):
            tool = tmp_path / f"iptables{variant}{suffix}"
            tool.write_text("#!/bin/sh\nexit 0\n")
            tool.chmod(0o755)
    calls: list[str] = []

    def runner(argv: object, stdin: str | None) -> Completed:
        assert isinstance(argv, list)
        calls.append(pathlib.Path(argv[0]).name)
        rules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
        legacy = calls[-1] == "iptables-legacy-save" and legacy_rules
        return Completed(0, rules if legacy else "", "")

    assert iptables_state(4, iptables_binary=forced, runner=runner, path=str(tmp_path)) == {}  # type: ignore[arg-type]
    assert calls[-1] == chosen

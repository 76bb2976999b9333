"""The rules capture real connections: two network namespaces, a veth pair, the kernel's iptables.

The "pod" namespace holds the app and the listeners a sidecar would have (15001 outbound,
15006 inbound, 15053 DNS); the "peer" namespace is the rest of the network. Addresses are
10.251.0.x, on the veth pair only, inside namespaces this module creates and always deletes.
``istio-sdk iptables`` runs inside the pod namespace, as istio-init does.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from istio_sdk.proxy.iptables import CaptureConfig, apply_rules, cleanup_rules
from istio_sdk.proxy.iptables._apply import Completed, run_command

HERE = pathlib.Path(__file__).parent
SRC = HERE.parents[2] / "src"
PROBE = HERE / "netns_probe.py"
POD_IP, PEER_IP, PEER_IP2 = "10.251.0.1", "10.251.0.2", "10.251.0.3"


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "iptables", "iptables-restore", "iptables-save"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed"
    probe = f"isdk-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], check=False, capture_output=True, text=True
    )
    if made.returncode != 0:
        return f"ip netns add fails here: {made.stderr.strip()}"
    try:
        works = subprocess.run(
            ["ip", "netns", "exec", probe, "iptables-save"],
            check=False,
            capture_output=True,
            text=True,
        )
        if works.returncode != 0:
            return f"iptables does not work in a namespace: {works.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


REASON = _why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@attrs.frozen
class Pod:
    pod: str
    peer: str

    def run(
        self, ns: str, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            check=False,
            capture_output=True,
            text=True,
            env=environ,
            timeout=30,
        )

    def iptables(
        self, *flags: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``istio-sdk iptables FLAGS`` inside the pod namespace."""
        return self.run(
            self.pod, sys.executable, "-m", "istio_sdk.cli", "iptables", *flags, env=env
        )

    def runner(self, argv: Sequence[str], stdin: str | None) -> Completed:
        """Run an iptables command inside the pod namespace (for the library calls)."""
        return run_command(["ip", "netns", "exec", self.pod, *argv], stdin)

    def probe(self, ns: str, *specs: str) -> list[dict[str, str] | None]:
        done = self.run(ns, sys.executable, str(PROBE), "probe", *specs)
        assert done.returncode == 0, done.stderr
        answers: list[dict[str, str] | None] = json.loads(done.stdout)
        return answers

    def saved(self, *, ipv6: bool = False) -> str:
        done = self.run(self.pod, "ip6tables-save" if ipv6 else "iptables-save")
        assert done.returncode == 0, done.stderr
        return done.stdout


def _serve(ns: str, name: str, *specs: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, str(PROBE), "serve", name, *specs],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    assert line == "ready\n", server.stderr.read() if server.stderr else line
    return server


@pytest.fixture(scope="module")
def netns() -> Iterator[Pod]:
    tag = uuid.uuid4().hex[:6]
    pod = Pod(f"isdk-pod-{tag}", f"isdk-peer-{tag}")
    servers: list[subprocess.Popen[str]] = []
    try:
        _ip("netns", "add", pod.pod)
        _ip("netns", "add", pod.peer)
        _ip(
            "link",
            "add",
            f"vp{tag}",
            "netns",
            pod.pod,
            "type",
            "veth",
            "peer",
            "name",
            f"vq{tag}",
            "netns",
            pod.peer,
        )
        for ns, link, addresses in (
            (pod.pod, f"vp{tag}", [POD_IP]),
            (pod.peer, f"vq{tag}", [PEER_IP, PEER_IP2]),
        ):
            for address in addresses:
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        servers.append(
            _serve(
                pod.pod,
                "pod",
                "tcp:15001",
                "tcp:15006",
                "tcp:15053",
                "udp:15053",
                "tcp:8080",
                "tcp:9000",
                "tproxy:15106",
            )
        )
        servers.append(_serve(pod.peer, "peer", "tcp:8080", "tcp:9090", "tcp:53", "udp:53"))
        yield pod
    finally:
        for server in servers:
            if server.stdin:
                server.stdin.close()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        for ns in (pod.pod, pod.peer):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.fixture
def pod(netns: Pod) -> Iterator[Pod]:
    """The namespaces, with every rule removed again after the test (even when it failed)."""
    yield netns
    cleanup_rules(CaptureConfig(inbound_interception_mode="TPROXY"), runner=netns.runner)
    for ipv6 in (False, True):
        leftover = netns.saved(ipv6=ipv6)
        if "ISTIO" in leftover or "\n-A " in leftover:
            for table in ("nat", "mangle", "raw", "filter"):
                netns.run(netns.pod, "ip6tables" if ipv6 else "iptables", "-t", table, "-F")
                netns.run(netns.pod, "ip6tables" if ipv6 else "iptables", "-t", table, "-X")


def _said(stdout: str) -> list[str]:
    """The command's report lines, whichever iptables variant (nft, legacy) it chose."""
    return [re.sub(r"^(ip6?tables)-(nft|legacy):", r"\1:", line) for line in stdout.splitlines()]


def _where(answer: dict[str, str] | None) -> str | None:
    return None if answer is None else answer["listener"]


def _seen(answer: dict[str, str] | None) -> tuple[str, str | None] | None:
    """Which listener took the connection, and the destination SO_ORIGINAL_DST recovers."""
    return None if answer is None else (answer["listener"], answer["original_dst"])


def test_outbound_goes_to_15001_with_its_original_destination(pod: Pod) -> None:
    done = pod.iptables(
        "-i", "*", "-b", "*", "-d", "9000", "-o", "9090", "-x", f"{PEER_IP2}/32", "--no-ipv6"
    )
    assert done.returncode == 0, done.stderr
    assert _said(done.stdout) == ["iptables: applied Istio rules"]
    app, proxy, excluded_port, excluded_range, dns = pod.probe(
        pod.pod,
        f"tcp:{PEER_IP}:8080",
        f"tcp@1337:{PEER_IP}:8080",
        f"tcp:{PEER_IP}:9090",
        f"tcp:{PEER_IP2}:8080",
        f"udp:{PEER_IP}:53",
    )
    assert _seen(app) == ("pod-tcp-15001", f"{PEER_IP}:8080")
    # The proxy's own traffic (UID 1337), -o ports and -x ranges reach the network as sent.
    assert _where(proxy) == "peer-tcp-8080"
    assert _where(excluded_port) == "peer-tcp-9090"
    assert _where(excluded_range) == "peer-tcp-8080"
    assert _where(dns) == "peer-udp-53"  # no --redirect-dns: DNS is not captured


def test_inbound_goes_to_15006_except_excluded_ports(pod: Pod) -> None:
    assert pod.iptables("-b", "*", "-d", "9000", "--no-ipv6").returncode == 0
    inbound, excluded = pod.probe(pod.peer, f"tcp:{POD_IP}:8080", f"tcp:{POD_IP}:9000")
    assert _seen(inbound) == ("pod-tcp-15006", f"{POD_IP}:8080")
    assert _where(excluded) == "pod-tcp-9000"
    # Without -i nothing outbound is captured.
    assert _where(pod.probe(pod.pod, f"tcp:{PEER_IP}:8080")[0]) == "peer-tcp-8080"


def test_dns_to_the_resolv_conf_servers_goes_to_15053(pod: Pod, tmp_path: pathlib.Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"search svc.cluster.local\nnameserver {PEER_IP}\n")
    done = pod.iptables("--redirect-dns", "--resolv-conf", str(resolv), "--no-ipv6")
    assert done.returncode == 0, done.stderr
    udp, tcp, agent, other = pod.probe(
        pod.pod,
        f"udp:{PEER_IP}:53",
        f"tcp:{PEER_IP}:53",
        f"udp@1337:{PEER_IP}:53",
        f"udp:{PEER_IP2}:53",
    )
    assert _where(udp) == "pod-udp-15053"
    assert _seen(tcp) == ("pod-tcp-15053", f"{PEER_IP}:53")
    assert _where(agent) == "peer-udp-53"  # the agent's upstream queries leave
    assert _where(other) == "peer-udp-53"  # a server not in resolv.conf is not captured


def test_capture_all_dns_takes_every_port_53(pod: Pod) -> None:
    env = {"ISTIO_META_DNS_CAPTURE": "true", "CAPTURE_ALL_DNS": "true"}
    assert pod.iptables("--no-ipv6", env=env).returncode == 0
    assert [_where(a) for a in pod.probe(pod.pod, f"udp:{PEER_IP2}:53", f"tcp:{PEER_IP2}:53")] == [
        "pod-udp-15053",
        "pod-tcp-15053",
    ]


def test_cleanup_removes_every_rule(pod: Pod) -> None:
    flags = (
        "-i",
        "*",
        "-b",
        "*",
        "-c",
        f"vp{pod.pod[-6:]}",
        "--drop-invalid",
        "--redirect-dns",
        "--capture-all-dns",
        "--no-ipv6",
    )
    assert pod.iptables(*flags).returncode == 0
    assert "ISTIO_OUTPUT" in pod.saved()
    done = pod.iptables("--cleanup", *flags)
    assert done.returncode == 0, done.stderr
    assert _said(done.stdout)[0] == "iptables: removed Istio rules"
    saved = pod.saved()
    assert "ISTIO" not in saved and "\n-A " not in saved, saved
    assert _where(pod.probe(pod.pod, f"tcp:{PEER_IP}:8080")[0]) == "peer-tcp-8080"
    # Cleaning up again is fine and says so.
    assert _said(pod.iptables("--cleanup", *flags).stdout)[0] == "iptables: no Istio rules"


def test_applying_twice_and_reconciling(pod: Pod) -> None:
    assert pod.iptables("-i", "*", "--no-ipv6").returncode == 0
    again = pod.iptables("-i", "*", "--no-ipv6")
    assert (again.returncode, _said(again.stdout)) == (0, ["iptables: rules already in place"])
    changed = pod.iptables("-i", "*", "-o", "9090", "--no-ipv6")
    assert changed.returncode == 1
    assert "Istio chains are already present" in changed.stderr
    assert len(changed.stderr.splitlines()) == 1
    replaced = pod.iptables("-i", "*", "-o", "9090", "--reconcile", "--no-ipv6")
    assert (replaced.returncode, _said(replaced.stdout)) == (0, ["iptables: replaced Istio rules"])
    assert _where(pod.probe(pod.pod, f"tcp:{PEER_IP}:9090")[0]) == "peer-tcp-9090"


def test_a_failure_half_way_leaves_no_rules(pod: Pod, tmp_path: pathlib.Path) -> None:
    # ip6tables-restore passes --test, then fails for real: IPv4 is already committed by then.
    fake = tmp_path / "ip6tables-restore"
    fake.write_text(
        '#!/bin/sh\nfor a; do [ "$a" = --test ] && exit 0; done\n'
        'echo "fake: ip6 failure" >&2\nexit 4\n'
    )
    fake.chmod(0o755)
    (tmp_path / "ip6tables-nft-restore").symlink_to(fake)  # the variant istio-iptables prefers
    path = f"{tmp_path}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    done = pod.iptables("-i", "*", "-b", "*", "--ipv6", env={"PATH": path})
    assert done.returncode == 1
    assert done.stderr.strip().endswith("fake: ip6 failure (nothing was left applied)")
    assert len(done.stderr.splitlines()) == 1
    saved = pod.saved()
    assert "ISTIO" not in saved and "\n-A " not in saved, saved
    assert _where(pod.probe(pod.pod, f"tcp:{PEER_IP}:8080")[0]) == "peer-tcp-8080"


def test_tproxy_delivers_inbound_with_its_destination_intact(pod: Pod) -> None:
    flags = ("-b", "*", "-m", "TPROXY", "-z", "15106", "--no-ipv6")
    done = pod.iptables(*flags)
    assert done.returncode == 0, done.stderr
    # TPROXY does not rewrite the packet: the proxy's socket sees the address the peer dialled.
    answer = pod.probe(pod.peer, f"tcp:{POD_IP}:8080")[0]
    assert answer is not None
    assert (answer["listener"], answer["local"]) == ("pod-tproxy-15106", f"{POD_IP}:8080")
    assert "fwmark 0x539 lookup 133" in pod.run(pod.pod, "ip", "rule", "show").stdout
    assert pod.iptables("--cleanup", *flags).returncode == 0
    saved = pod.saved()
    assert "ISTIO" not in saved and "\n-A " not in saved, saved
    assert "fwmark" not in pod.run(pod.pod, "ip", "rule", "show").stdout


def test_network_namespace_flag_applies_inside_that_namespace(pod: Pod) -> None:
    def host_state() -> str:
        done = subprocess.run(["iptables-save"], check=False, capture_output=True, text=True)
        return "".join(line for line in done.stdout.splitlines() if not line.startswith("#"))

    before = host_state()
    if "ISTIO_" in before:
        pytest.skip("this machine has Istio rules of its own")
    # Only 10.251.0.2/32 is captured: harmless even if the rules landed on this machine.
    command = [
        sys.executable,
        "-m",
        "istio_sdk.cli",
        "iptables",
        "-i",
        f"{PEER_IP}/32",
        "--no-ipv6",
    ]
    env = {**os.environ, "PYTHONPATH": str(SRC), "NETWORK_NAMESPACE": f"/var/run/netns/{pod.pod}"}
    try:
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, env=env, timeout=30
        )
        assert done.returncode == 0, done.stderr
        assert "ISTIO_OUTPUT" in pod.saved()
        assert host_state() == before
    finally:
        if "ISTIO_" in host_state():  # undo our own mistake on this machine
            del env["NETWORK_NAMESPACE"]
            subprocess.run([*command, "--cleanup"], check=False, capture_output=True, env=env)
    assert _seen(pod.probe(pod.pod, f"tcp:{PEER_IP}:8080")[0]) == (
        "pod-tcp-15001",
        f"{PEER_IP}:8080",
    )
    missing = pod.iptables("--network-namespace", "/var/run/netns/no-such-namespace", "-n")
    assert missing.returncode == 2
    assert "--network-namespace: cannot open '/var/run/netns/no-such-namespace'" in missing.stderr


def _ports(low: int = 1) -> st.SearchStrategy[str]:
    single = st.integers(low, 65535).map(str)
    ranged = st.tuples(st.integers(low, 65535), st.integers(low, 65535)).map(
        lambda pair: f"{min(pair)}:{max(pair)}"
    )
    return st.lists(single | ranged, max_size=3).map(",".join)


def _cidrs() -> st.SearchStrategy[str]:
    v4 = st.builds(
        lambda a, n: f"{ipaddress.IPv4Address(a)}/{n}",
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    )
    v6 = st.builds(
        lambda a, n: f"{ipaddress.IPv6Address(a)}/{n}",
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    )
    return st.lists(v4 | v6, max_size=3).map(",".join)


_ids = st.lists(st.integers(0, 65534).map(str), min_size=1, max_size=2).map(",".join)
CONFIGS = st.builds(
    CaptureConfig,
    proxy_port=st.integers(1, 32767),
    inbound_capture_port=st.integers(32768, 65535),
    proxy_uids=_ids,
    proxy_gids=_ids,
    inbound_interception_mode=st.sampled_from(["REDIRECT", "TPROXY"]),
    inbound_ports_include=st.just("*") | _ports(),
    inbound_ports_exclude=_ports(),
    outbound_ports_include=_ports(),
    outbound_ports_exclude=_ports(),
    outbound_ip_ranges_include=st.just("*") | _cidrs(),
    outbound_ip_ranges_exclude=_cidrs(),
    exclude_interfaces=st.sampled_from(["", "eth9", "veth+,eth8"]),
    kube_virt_interfaces=st.sampled_from(["", "tap0", "tap1,tap2"]),
    owner_groups_include=st.just("*") | _ids,
    owner_groups_exclude=st.just("") | _ids,
    redirect_dns=st.booleans(),
    capture_all_dns=st.booleans(),
    drop_invalid=st.booleans(),
    enable_ipv6=st.booleans(),
    dns_servers_v4=st.lists(
        st.integers(0, 2**32 - 1).map(lambda a: str(ipaddress.IPv4Address(a))), max_size=2
    ),
    dns_servers_v6=st.lists(
        st.integers(0, 2**128 - 1).map(lambda a: str(ipaddress.IPv6Address(a))), max_size=2
    ),
    host_ipv4_loopback_cidr=st.sampled_from(["127.0.0.1/32", "127.0.0.1/8"]),
)


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(config=CONFIGS)
def test_any_configuration_applies_reapplies_and_cleans_up_to_nothing(
    netns: Pod, config: CaptureConfig
) -> None:
    runner = netns.runner
    try:
        applied = apply_rules(config, runner=runner)
        assert all(line.endswith("applied Istio rules") for line in applied), applied
        again = apply_rules(config, runner=runner)
        assert all(line.endswith("rules already in place") for line in again), again
    finally:
        cleanup_rules(config, runner=runner)
    for ipv6 in (False, True):
        saved = netns.saved(ipv6=ipv6)
        assert "ISTIO" not in saved and "\n-A " not in saved, saved

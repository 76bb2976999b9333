"""Installing and removing the capture rules with the real ``iptables-restore``.

Everything goes through ``iptables-restore --noflush``: one transaction per table. Before any
change the binaries are found and the input is checked with ``--test``; if a later step still
fails (the IPv6 half, a kernel module missing), whatever was applied is removed again, so a
failure leaves no capture rules behind. Cleanup reads the live state (``iptables-save``) and
deletes only what is there, again in one ``iptables-restore`` call.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Literal

import attrs

from istio_sdk.proxy.iptables._config import CaptureConfig, IptablesError
from istio_sdk.proxy.iptables._rules import (
    ISTIO_CHAIN_PREFIX,
    IstioVersion,
    Rule,
    RuleSet,
    build_rules,
    delete_spec,
)

__all__ = [
    "Completed",
    "Runner",
    "apply_rules",
    "cleanup_rules",
    "iptables_state",
    "parse_save",
    "run_command",
]

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_TIMEOUT = 30.0
_LOCK_WAIT = ("-w", "5")


@attrs.frozen
class Completed:
    """What a command did: exit status and output."""

    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], str | None], Completed]


def run_command(argv: Sequence[str], stdin: str | None) -> Completed:
    """Run ``argv`` with ``stdin``; a missing or hanging binary is an :class:`IptablesError`."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise IptablesError(f"{argv[0]}: not found") from None
    except subprocess.TimeoutExpired:
        raise IptablesError(f"{argv[0]}: no answer within {_TIMEOUT:g} s") from None
    return Completed(done.returncode, done.stdout, done.stderr)


@attrs.frozen
class _Tools:
    """The iptables, iptables-save and iptables-restore of one IP version."""

    version: IstioVersion
    iptables: str
    save: str
    restore: str
    runner: Runner

    @classmethod
    def find(
        cls,
        version: IstioVersion,
        binary: Literal["", "legacy", "nft"],
        runner: Runner,
        path: str | None,
    ) -> _Tools:
        """The binaries to use, chosen as istio-iptables chooses them.

        Forced (``legacy``/``nft``): that variant. Otherwise the legacy variant when it already
        holds rules here, else the nft variant when installed, else plain ``iptables``.
        """
        plain = "iptables" if version == 4 else "ip6tables"
        search = _search_path(path)
        if binary:
            return cls._variant(version, f"{plain}-{binary}", runner, search)
        with contextlib.suppress(IptablesError):
            legacy = cls._variant(version, f"{plain}-legacy", runner, search)
            saved = runner([legacy.save], None)
            if saved.returncode == 0 and saved.stdout.count("\n") >= 3:
                return legacy
        with contextlib.suppress(IptablesError):
            return cls._variant(version, f"{plain}-nft", runner, search)
        return cls._variant(version, plain, runner, search)

    @classmethod
    def _variant(cls, version: IstioVersion, base: str, runner: Runner, search: str) -> _Tools:
        found: list[str] = []
        for name in (base, f"{base}-save", f"{base}-restore"):
            where = shutil.which(name, path=search)
            if where is None:
                raise IptablesError(f"{name} not found (is iptables installed? PATH={search})")
            found.append(where)
        return cls(version, found[0], found[1], found[2], runner)

    def apply(self, text: str, *, test: bool = False) -> None:
        argv = [self.restore, *_LOCK_WAIT, "--noflush", *(["--test"] if test else [])]
        done = self.runner(argv, text)
        if done.returncode != 0:
            raise IptablesError(f"{os.path.basename(self.restore)}: {_first_line(done)}")

    def state(self) -> dict[str, _TableState]:
        done = self.runner([self.save], None)
        if done.returncode != 0:
            raise IptablesError(f"{os.path.basename(self.save)}: {_first_line(done)}")
        return parse_save(done.stdout)

    def has(self, rule: Rule) -> bool:
        argv = [self.iptables, *_LOCK_WAIT, "-t", rule.table, "-C", rule.chain, *rule.args]
        return self.runner(argv, None).returncode == 0


def _search_path(path: str | None) -> str:
    """``path`` as given, else PATH with the sbin folders (where iptables lives) added."""
    if path is not None:
        return path
    return os.pathsep.join([*os.environ.get("PATH", "").split(os.pathsep), *_SBIN])


def _first_line(done: Completed) -> str:
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return lines[0] if lines else f"exit status {done.returncode}"


@attrs.define
class _TableState:
    chains: list[str] = attrs.Factory(list)  # Istio's chains
    rules: list[str] = attrs.Factory(list)  # every ``-A`` line


def parse_save(text: str) -> dict[str, _TableState]:
    """The Istio chains and all rules of ``iptables-save`` output, per table."""
    tables: dict[str, _TableState] = {}
    current: _TableState | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), _TableState())
        elif current is None:
            continue
        elif line.startswith(":" + ISTIO_CHAIN_PREFIX):
            current.chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            current.rules.append(line)
    return tables


def iptables_state(
    version: IstioVersion = 4,
    *,
    iptables_binary: Literal["", "legacy", "nft"] = "",
    runner: Runner = run_command,
    path: str | None = None,
) -> dict[str, list[str]]:
    """Per table, the Istio chains present now (``{}`` when there are none)."""
    tools = _Tools.find(version, iptables_binary, runner, path)
    return {table: s.chains for table, s in tools.state().items() if s.chains}


def _in_place(tools: _Tools, rules: RuleSet, state: dict[str, _TableState]) -> bool:
    """Whether exactly these rules are installed: same chains, same rule counts, all present."""
    wanted = rules.chains(tools.version)
    have = {table: sorted(s.chains) for table, s in state.items() if s.chains}
    if have != {table: sorted(chains) for table, chains in wanted.items()}:
        return False
    for table, chains in wanted.items():
        for chain in chains:
            count = sum(
                1 for r in rules.rules(tools.version) if (r.table, r.chain) == (table, chain)
            )
            prefix = f"-A {chain} "
            if sum(1 for line in state[table].rules if line.startswith(prefix)) != count:
                return False
    return all(tools.has(rule) for rule in rules.rules(tools.version))


def _cleanup_text(tools: _Tools, candidates: Sequence[Rule], state: dict[str, _TableState]) -> str:
    """Restore input deleting the Istio rules found in ``state`` (jumps, then chains)."""
    tables: dict[str, list[str]] = {}
    for table, table_state in state.items():
        for line in table_state.rules:
            chain, _, rest = line[3:].partition(" ")
            if not chain.startswith(ISTIO_CHAIN_PREFIX) and _jumps_to_istio(rest):
                tables.setdefault(table, []).append(f"-D {chain} {rest}")
    # Rules Istio adds to built-in chains that jump nowhere Istio's (RETURN, MARK, ...).
    for rule in reversed(candidates):
        if rule.in_istio_chain or rule.jumps_to_istio or rule.table not in state:
            continue
        if tools.has(rule):
            tables.setdefault(rule.table, []).append(delete_spec(rule))
    for table, table_state in state.items():
        if table_state.chains:
            lines = tables.setdefault(table, [])
            lines += [f"-F {chain}" for chain in table_state.chains]
            lines += [f"-X {chain}" for chain in table_state.chains]
    out: list[str] = []
    for table in sorted(tables):
        out += [f"*{table}", *dict.fromkeys(tables[table]), "COMMIT"]
    return "".join(line + "\n" for line in out)


def _jumps_to_istio(args: str) -> bool:
    words = args.split()
    return any(
        word in ("-j", "--jump", "-g", "--goto")
        and index + 1 < len(words)
        and words[index + 1].startswith(ISTIO_CHAIN_PREFIX)
        for index, word in enumerate(words)
    )


def _cleanup(tools: _Tools, candidates: Sequence[Rule]) -> bool:
    text = _cleanup_text(tools, candidates, tools.state())
    if not text:
        return False
    tools.apply(text)
    return True


def _candidates(config: CaptureConfig, version: IstioVersion) -> tuple[Rule, ...]:
    return build_rules(attrs.evolve(config, enable_ipv6=True)).rules(version)


def cleanup_rules(
    config: CaptureConfig | None = None,
    *,
    iptables_binary: Literal["", "legacy", "nft"] = "",
    runner: Runner = run_command,
    path: str | None = None,
) -> list[str]:
    """Remove Istio's chains, the jumps to them, and ``config``'s other rules; say what went.

    IPv6 is cleaned too when ip6tables is installed. Rules Istio adds to built-in chains
    without jumping to its chains (``-c`` interfaces, TPROXY marks) are found from ``config``,
    so pass the flags they were applied with.
    """
    config = CaptureConfig() if config is None else config
    report: list[str] = []
    families: list[_Tools] = [_Tools.find(4, iptables_binary, runner, path)]
    with contextlib.suppress(IptablesError):  # no ip6tables: no IPv6 rules either
        families.append(_Tools.find(6, iptables_binary, runner, path))
    for tools in families:
        removed = _cleanup(tools, _candidates(config, tools.version))
        name = os.path.basename(tools.iptables)
        report.append(f"{name}: {'removed Istio rules' if removed else 'no Istio rules'}")
    if config.tproxy:
        _tproxy_routes(config, runner, path, add=False)
    return report


def apply_rules(
    config: CaptureConfig,
    *,
    reconcile: bool = False,
    force_apply: bool = False,
    iptables_binary: Literal["", "legacy", "nft"] = "",
    runner: Runner = run_command,
    path: str | None = None,
) -> list[str]:
    """Install ``config``'s rules (IPv4, and IPv6 when enabled); say what was done.

    Rules already in place exactly are left alone (unless ``force_apply``). Other Istio chains
    already present are an error, or with ``reconcile`` are removed first. Raises
    :class:`IptablesError` with nothing of ``config``'s rules left installed.
    """
    rules = build_rules(config)
    versions: list[IstioVersion] = [4, 6] if config.enable_ipv6 else [4]
    families = [_Tools.find(v, iptables_binary, runner, path) for v in versions]
    todo: list[_Tools] = []
    stale: list[_Tools] = []
    report: list[str] = []
    for tools in families:
        state = tools.state()
        name = os.path.basename(tools.iptables)
        if any(s.chains for s in state.values()):
            if not force_apply and _in_place(tools, rules, state):
                report.append(f"{name}: rules already in place")
                continue
            if not reconcile:
                present = ", ".join(
                    f"{table}/{chain}" for table, s in sorted(state.items()) for chain in s.chains
                )
                raise IptablesError(
                    f"{name}: Istio chains are already present ({present}); "
                    "remove them with --cleanup-only or replace them with --reconcile"
                )
            stale.append(tools)
        todo.append(tools)
    for tools in todo:
        tools.apply(rules.restore(tools.version), test=True)
    try:
        for tools in stale:
            _cleanup(tools, _candidates(config, tools.version))
        for tools in todo:
            tools.apply(rules.restore(tools.version))
            name = os.path.basename(tools.iptables)
            report.append(f"{name}: {'replaced' if tools in stale else 'applied'} Istio rules")
        if todo and config.tproxy and config.inbound_ports_include != ():
            _tproxy_routes(config, runner, path, add=True)
    except IptablesError as exc:
        if config.tproxy:
            _tproxy_routes(config, runner, path, add=False)
        for tools in todo:
            try:
                _cleanup(tools, _candidates(config, tools.version))
            except IptablesError:
                continue
        raise IptablesError(f"{exc} (nothing was left applied)") from None
    return report


def _tproxy_routes(config: CaptureConfig, runner: Runner, path: str | None, *, add: bool) -> None:
    """TPROXY's policy routing: marked packets are delivered locally via ``lo``."""
    search = _search_path(path)
    ip = shutil.which("ip", path=search)
    if ip is None:
        if add:
            raise IptablesError("ip not found (install iproute2): TPROXY needs policy routing")
        return
    mark, table = str(config.inbound_tproxy_mark), str(config.inbound_tproxy_route_table)
    families = ["-4", "-6"] if config.enable_ipv6 else ["-4"]
    commands: list[list[str]] = []
    for family in families:
        verb = "add" if add else "del"
        commands.append([ip, family, "rule", verb, "fwmark", mark, "lookup", table])
        commands.append(
            [ip, family, "route", verb, "local", "default", "dev", "lo", "table", table]
        )
    if add and config.enable_ipv6:
        # The inbound passthrough binds ::6, which lo only has when asked.
        commands.append([ip, "-6", "addr", "add", "::6/128", "dev", "lo"])
    for argv in commands:
        done = runner(argv, None)
        said = (done.stderr + done.stdout).lower()
        if add and done.returncode != 0 and "exists" not in said and "already" not in said:
            raise IptablesError(f"{' '.join(argv[1:])}: {_first_line(done)}")

"""Whether the proxy is ready: what ``/healthz/ready`` (15020) and the readiness port (15021) say.

pilot-agent calls a sidecar ready when Envoy has accepted its first clusters and listeners from
Pilot and is live with its workers started. Here each condition is a :class:`ReadinessCheck`:

- :class:`ConfigStatus`, the pure record of the xDS stream the agent's xDS proxy relays: which
  responses went to the proxy and which of them it ACKed or NACKed. Ready once every required
  type (CDS and LDS, as Envoy's ``update_success`` counters count them) has been ACKed once;
  the reasons when not are pilot-agent's ("config not received from XDS server (is Istiod
  running?)", "... but was rejected", "not fully received").
- :class:`EnvoyReadiness`, Envoy's admin ``/stats`` read as pilot-agent reads them
  (``server.state`` LIVE and ``listener_manager.workers_started``), cached once true since a
  live Envoy never goes back.

:class:`Readiness` combines them; :meth:`Readiness.terminate` makes it fail for good (the agent
is shutting down).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

import httpx

from istio_sdk.xds.types import CLUSTER, LISTENER, is_known, resource_type

__all__ = [
    "ConfigStatus",
    "EnvoyReadiness",
    "Readiness",
    "ReadinessCheck",
    "envoy_readiness_problem",
]

log = logging.getLogger("istio_sdk.proxy.agent.readiness")

READY_STATS_FILTER = r"^(server\.state|listener_manager\.workers_started)"
_LIVE = 0
_STATE_NAMES = {0: "LIVE", 1: "DRAINING", 2: "PRE_INITIALIZING", 3: "INITIALIZING"}


class ReadinessCheck(Protocol):
    """One condition of readiness: ``None`` when met, else the reason it is not."""

    async def problem(self) -> str | None: ...


class ConfigStatus:
    """ACKs and NACKs of the responses relayed to the proxy, per type URL (sans-I/O)."""

    def __init__(self, required: Iterable[str] = (CLUSTER, LISTENER)) -> None:
        self.required = tuple(required)
        self._sent: dict[str, set[str]] = {}
        self.accepted: dict[str, int] = {}
        self.rejected: dict[str, int] = {}

    def response_sent(self, type_url: str, nonce: str) -> None:
        """A response of ``type_url`` with ``nonce`` went to the proxy."""
        nonces = self._sent.setdefault(type_url, set())
        if len(nonces) >= 64:  # a proxy answers every response; keep only the recent ones
            nonces.clear()
        nonces.add(nonce)

    def request_seen(self, type_url: str, response_nonce: str, *, rejected: bool) -> None:
        """The proxy sent a request; one naming a nonce we relayed is its ACK or NACK."""
        nonces = self._sent.get(type_url)
        if not response_nonce or nonces is None or response_nonce not in nonces:
            return
        nonces.discard(response_nonce)
        counts = self.rejected if rejected else self.accepted
        counts[type_url] = counts.get(type_url, 0) + 1

    @property
    def first_config_received(self) -> bool:
        """Every required type has been ACKed at least once."""
        return all(self.accepted.get(url, 0) > 0 for url in self.required)

    def _counts(self) -> str:
        return "; ".join(
            f"{_short(url)} updates: {self.accepted.get(url, 0)} successful, "
            f"{self.rejected.get(url, 0)} rejected"
            for url in self.required
        )

    async def problem(self) -> str | None:
        """pilot-agent's reasons for not being ready on config."""
        if self.first_config_received:
            return None
        if not any(self.accepted.get(url, 0) for url in self.required):
            if any(self.rejected.get(url, 0) for url in self.required):
                return f"config received from XDS server, but was rejected: {self._counts()}"
            return f"config not received from XDS server (is Istiod running?): {self._counts()}"
        return f"config not fully received from XDS server: {self._counts()}"


def _short(type_url: str) -> str:
    return resource_type(type_url).short_name.lower() if is_known(type_url) else type_url


def envoy_readiness_problem(stats_text: str) -> str | None:
    """Read Envoy's ``/stats`` text (``name: value`` lines) as pilot-agent does."""
    values: dict[str, int] = {}
    for line in stats_text.splitlines():
        name, sep, raw = line.partition(":")
        if not sep:
            continue
        try:
            values.setdefault(name.strip(), int(raw.strip()))
        except ValueError:
            return f"envoy stat {name.strip()[:80]!r} has no integer value"
    if "server.state" not in values:
        return "server.state is not yet updated"
    if "listener_manager.workers_started" not in values:
        return "listener_manager.workers_started is not yet updated"
    state = values["server.state"]
    if state != _LIVE:
        return f"server is not live, current state is: {_STATE_NAMES.get(state, 'UNKNOWN')}"
    if values["listener_manager.workers_started"] != 1:
        return "workers have not yet started"
    return None


class EnvoyReadiness:
    """Envoy's own readiness from its admin port; cached once Envoy has been live."""

    MAX_STATS_BYTES = 64 * 1024

    def __init__(self, admin_port: int, *, host: str = "127.0.0.1", timeout: float = 3.0) -> None:
        self.url = f"http://{host}:{admin_port}/stats"
        self.timeout = timeout
        self._ready_once = False

    async def problem(self) -> str | None:
        """``None`` once Envoy reports LIVE with workers started."""
        if self._ready_once:
            return None
        params = {"usedonly": "", "filter": READY_STATS_FILTER}
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client,
                client.stream("GET", self.url, params=params) as response,
            ):
                if response.status_code != 200:
                    return f"failed to get readiness stats: status {response.status_code}"
                body = b""
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > self.MAX_STATS_BYTES:
                        return "failed to get readiness stats: answer too large"
        except (httpx.HTTPError, OSError) as exc:
            return f"failed to get readiness stats: {exc or type(exc).__name__}"
        problem = envoy_readiness_problem(body.decode("utf-8", "replace"))
        self._ready_once = problem is None
        return problem


class Readiness:
    """All of ``checks`` must pass; after :meth:`terminate` nothing passes."""

    def __init__(self, checks: Sequence[ReadinessCheck] = ()) -> None:
        self.checks = list(checks)
        self._terminated: str | None = None
        self._last_ready: bool | None = None

    def terminate(self, reason: str = "the agent is shutting down") -> None:
        """Fail every later check (pilot-agent stops being ready once it starts exiting)."""
        self._terminated = reason

    async def problem(self) -> str | None:
        """The first failing check's reason, or ``None`` when ready (transitions are logged)."""
        problem = f"server is terminated: {self._terminated}" if self._terminated else None
        for check in self.checks:
            if problem is not None:
                break
            problem = await check.problem()
        ready = problem is None
        if ready != self._last_ready:
            if ready:
                log.info("Envoy proxy is ready")
            else:
                log.warning("Envoy proxy is NOT ready: %s", problem)
            self._last_ready = ready
        return problem

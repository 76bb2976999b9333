"""Envoy's lifecycle under the agent: command line, epochs, restart on a new bootstrap, drain.

As pilot-agent ran Envoy when it hot-restarted it (Istio 1.5 to 1.8, ``pkg/envoy``):

- every bootstrap is an *epoch*: written to ``envoy-rev{N}.json`` and started with
  ``--restart-epoch N`` (0 first, one more per restart), ``--drain-time-s`` and
  ``--parent-shutdown-time-s`` from ProxyConfig's drain and parent shutdown durations; the
  command line is :func:`envoy_args`, a pure function of :class:`EnvoyOptions`;
- :meth:`EnvoyLifecycle.update_bootstrap` with a different bootstrap starts the next epoch once
  the current one is live (at most 20 s of waiting); Envoy's hot restart then retires the parent
  within the parent shutdown time, and the agent ends a parent still running after it;
- an epoch that exits is forgotten; when none is left the agent is done and
  :meth:`EnvoyLifecycle.run` returns the last exit code (so a crashing Envoy fails the agent);
- :meth:`EnvoyLifecycle.terminate` (SIGTERM) drains: it asks the current epoch to drain its
  listeners (``POST /drain_listeners?inboundonly&graceful`` for a sidecar), waits the
  termination drain duration (or less, if every epoch exits first), then kills what is left.

The process itself sits behind :class:`EnvoyProcess`, a small interface: tests and the agent
run any executable there (no Envoy is installed on these machines; the tests write a stand-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Protocol

import attrs
import httpx

from istio_sdk.proxy.agent._errors import AgentConfigError
from istio_sdk.proxy.agent.readiness import EnvoyReadiness

__all__ = ["EnvoyLifecycle", "EnvoyOptions", "EnvoyProcess", "EnvoySubprocess", "envoy_args"]

log = logging.getLogger("istio_sdk.proxy.agent.envoy")

LIVE_WAIT_SECONDS = 20.0  # Envoy's own hot-restart timer is 15 s; pilot-agent waited a bit more
_LOG_FORMAT = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n\t%v"
_LOG_FORMAT_JSON = '{"level":"%l","time":"%Y-%m-%dT%T.%fZ","scope":"envoy %n","msg":"%j"}'


def _whole_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and value < 1e9):  # also refuses NaN
        raise AgentConfigError(f"envoy option {attribute.name}", f"must be >= 0, got {value!r}")


@attrs.frozen
class EnvoyOptions:
    """How Envoy is started (defaults are ProxyConfig's and pilot-agent's)."""

    binary_path: str
    config_dir: str
    admin_port: int = 15000
    drain_duration: float = attrs.field(default=45.0, validator=_whole_seconds)
    parent_shutdown_duration: float = attrs.field(default=60.0, validator=_whole_seconds)
    termination_drain_duration: float = attrs.field(default=5.0, validator=_whole_seconds)
    sidecar: bool = True
    ipv6: bool = False
    log_level: str = "warning"
    component_log_level: str = "misc:error"
    log_as_json: bool = False
    concurrency: int = 0
    extra_args: tuple[str, ...] = ()

    def config_path(self, epoch: int) -> str:
        """Where epoch ``epoch``'s bootstrap is written."""
        return str(pathlib.Path(self.config_dir) / f"envoy-rev{epoch}.json")


def _split_log_level(level: str) -> tuple[str, list[str]]:
    """``"info,misc:error"`` into Envoy's ``-l`` and ``--component-log-level`` parts."""
    overall = ""
    components = []
    for part in level.split(","):
        pieces = part.split(":")
        if len(pieces) == 1 and pieces[0]:
            overall = pieces[0]
        elif len(pieces) == 2:
            components.append(part)
        else:
            log.warning("dropping invalid log level: %r", part[:80])
    return overall, components


def envoy_args(options: EnvoyOptions, epoch: int) -> list[str]:
    """Envoy's command line (without the binary) for ``epoch``."""
    args = [
        "-c",
        options.config_path(epoch),
        "--restart-epoch",
        str(epoch),
        "--drain-time-s",
        str(int(options.drain_duration)),
        "--drain-strategy",
        "immediate",
        "--parent-shutdown-time-s",
        str(int(options.parent_shutdown_duration)),
        "--local-address-ip-version",
        "v6" if options.ipv6 else "v4",
        "--file-flush-interval-msec",
        "1000",
        "--log-format",
        _LOG_FORMAT_JSON if options.log_as_json else _LOG_FORMAT,
    ]
    overall, components = _split_log_level(options.log_level)
    if overall:
        args += ["-l", overall]
    if components:
        args += ["--component-log-level", ",".join(components)]
    elif options.component_log_level:
        args += ["--component-log-level", options.component_log_level]
    if options.concurrency > 0:
        args += ["--concurrency", str(options.concurrency)]
    return args + list(options.extra_args)


class EnvoyProcess(Protocol):
    """One running epoch, as the lifecycle sees it."""

    epoch: int

    async def start(self) -> None:
        """Start the process (raise ``OSError`` when it cannot be started)."""

    async def wait(self) -> int:
        """Wait for the exit; the exit code (negative: killed by that signal)."""

    def kill(self) -> None:
        """End it now (nothing happens when it has exited)."""

    async def drain(self) -> None:
        """Ask it to drain its listeners gracefully."""

    async def is_live(self) -> bool:
        """Whether it serves (LIVE, workers started)."""


class EnvoySubprocess:
    """:class:`EnvoyProcess` over a real executable and its admin port."""

    def __init__(self, options: EnvoyOptions, epoch: int) -> None:
        self.options = options
        self.epoch = epoch
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Run ``binary_path`` with :func:`envoy_args`."""
        args = envoy_args(self.options, self.epoch)
        log.info("Envoy command: %s", args)
        self._process = await asyncio.create_subprocess_exec(
            self.options.binary_path, *args, env=dict(os.environ)
        )

    async def wait(self) -> int:
        """The exit code."""
        assert self._process is not None, "start() first"
        return await self._process.wait()

    def kill(self) -> None:
        """SIGKILL, as pilot-agent aborts an epoch."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def drain(self) -> None:
        """``POST /drain_listeners?inboundonly&graceful`` (``?graceful`` for gateways)."""
        query = "inboundonly&graceful" if self.options.sidecar else "graceful"
        url = f"http://127.0.0.1:{self.options.admin_port}/drain_listeners?{query}"
        try:
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
                response = await client.post(url)
            if response.status_code != 200:
                log.info("draining listeners: status %d", response.status_code)
        except (httpx.HTTPError, OSError) as exc:
            log.info(
                "failed draining listeners for Envoy on port %d: %s", self.options.admin_port, exc
            )

    async def is_live(self) -> bool:
        """Envoy's admin ``/stats`` say LIVE with workers started."""
        return await EnvoyReadiness(self.options.admin_port).problem() is None


class EnvoyLifecycle:
    """Runs Envoy epochs; see the module docstring. ``process_factory`` makes one epoch's
    :class:`EnvoyProcess` (default :class:`EnvoySubprocess`)."""

    def __init__(
        self,
        options: EnvoyOptions,
        *,
        process_factory: Callable[[EnvoyOptions, int], EnvoyProcess] | None = None,
        live_wait: float = LIVE_WAIT_SECONDS,
    ) -> None:
        self.options = options
        self._factory = process_factory or EnvoySubprocess
        self.live_wait = live_wait
        self._epochs: dict[int, tuple[EnvoyProcess, asyncio.Task[int]]] = {}
        self._current_config: bytes | None = None
        self._epoch = -1
        self._restart_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._terminating = False
        self._retirements: set[asyncio.Task[None]] = set()
        self.last_exit_code: int | None = None

    @property
    def active_epochs(self) -> list[int]:
        """The epochs whose process is running, oldest first."""
        return sorted(epoch for epoch, (_, task) in self._epochs.items() if not task.done())

    async def update_bootstrap(self, config: bytes) -> bool:
        """Start an epoch for ``config`` unless it is the running one; whether one started.

        Raises ``OSError`` when the file cannot be written or the binary cannot be started.
        """
        async with self._restart_lock:
            if self._terminating or config == self._current_config:
                return False
            epoch = self._epoch + 1
            previous = self._epochs.get(self._epoch)
            if previous is not None and not previous[1].done():
                await self._wait_live(previous[0])
            path = pathlib.Path(self.options.config_path(epoch))
            await asyncio.to_thread(_write_file, path, config)
            process = self._factory(self.options, epoch)
            await process.start()
            log.info("Epoch %d starting", epoch)
            self._epoch = epoch
            self._current_config = config
            self._epochs[epoch] = (process, asyncio.get_running_loop().create_task(process.wait()))
            self._changed.set()
            if previous is not None and not previous[1].done():
                self._retire_later(previous[0], previous[1])
            return True

    async def _wait_live(self, process: EnvoyProcess) -> None:
        log.info("waiting for epoch %d to go live before performing a hot restart", process.epoch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.live_wait
        while loop.time() < deadline:  # the admin port is all there is to poll
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    if await process.is_live():
                        return
            await asyncio.sleep(0.2)
        log.warning("timed out waiting for epoch %d to go live", process.epoch)

    def _retire_later(self, process: EnvoyProcess, exited: asyncio.Task[int]) -> None:
        async def retire() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(exited), self.options.parent_shutdown_duration
                )
                return
            log.warning("epoch %d outlived the parent shutdown time; ending it", process.epoch)
            process.kill()

        task = asyncio.get_running_loop().create_task(retire())
        self._retirements.add(task)
        task.add_done_callback(self._retirements.discard)

    async def run(self) -> int:
        """Wait until no epoch runs; the last exit code (0 when ended by :meth:`terminate`)."""
        while True:
            running = {task: epoch for epoch, (_, task) in self._epochs.items()}
            if not running:
                self._changed.clear()
                await self._changed.wait()
                continue
            waiter = asyncio.get_running_loop().create_task(self._changed.wait())
            self._changed.clear()
            done, _ = await asyncio.wait({waiter, *running}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for task in done:
                epoch = running.get(task)
                if epoch is None:
                    continue
                code = task.result()
                self._epochs.pop(epoch, None)
                with contextlib.suppress(FileNotFoundError, OSError):
                    os.unlink(self.options.config_path(epoch))
                if code == 0 or self._terminating:
                    log.info("Epoch %d exited with code %d", epoch, code)
                else:
                    log.error("Epoch %d exited with error: code %d", epoch, code)
                self.last_exit_code = 0 if self._terminating else code
            if not self._epochs:
                log.info("No more active epochs, terminating")
                return self.last_exit_code or 0

    async def drain(self) -> None:
        """Drain the current epoch's listeners and keep it running (``POST /drain``)."""
        current = self._epochs.get(self._epoch)
        if current is not None and not current[1].done():
            await current[0].drain()

    async def terminate(self) -> None:
        """Drain the current epoch, wait the termination drain duration (or until every epoch
        exits), then kill every epoch left."""
        self._terminating = True
        current = self._epochs.get(self._epoch)
        if current is not None and not current[1].done():
            log.info("Agent draining Proxy")
            await current[0].drain()
        tasks = [task for _, task in self._epochs.values()]
        if tasks:
            log.info(
                "Graceful termination period is %.1f s, starting...",
                self.options.termination_drain_duration,
            )
            _, pending = await asyncio.wait(tasks, timeout=self.options.termination_drain_duration)
            if pending:
                log.info("Graceful termination period complete, terminating remaining proxies.")
            for process, task in list(self._epochs.values()):
                if not task.done():
                    process.kill()
        for retirement in list(self._retirements):
            retirement.cancel()
        self._changed.set()


def _write_file(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

"""``DirectorySource``: keep a :class:`ConfigStore` in step with a folder of YAML/JSON files.

A scan lists every ``*.yaml``, ``*.yml`` and ``*.json`` file below the folder (hidden files and
folders skipped, file symlinks followed) and reads only the files whose ``stat`` (size, mtime,
ctime, inode, device) changed since the last scan. Listing, reading and parsing run in a worker
thread; only the store update runs on the event loop. A file that changed is loaded and
validated as a whole under :class:`~istio_sdk.config.LoadLimits`: when it has problems they are
logged, kept in :attr:`DirectorySource.errors` and passed to ``on_error``, and the resources it
gave before stay in the store untouched. A removed file's resources are deleted. A resource key
defined by two files belongs to the first file that defined it; the second file reports a
problem.

Once started, the source follows the folder with inotify (``watchfiles``) and falls back to
polling every ``interval`` seconds when inotify is unavailable. A failing scan never stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Literal

import attrs
from watchfiles import awatch

from istio_sdk.config._errors import ConfigError, Problem
from istio_sdk.config._io import config_files, decode_text, read_file
from istio_sdk.config._limits import DEFAULT_LIMITS, LoadLimits
from istio_sdk.config._resource import Resource
from istio_sdk.config._store import ConfigStore, Key
from istio_sdk.config._validate import validate_text

log = logging.getLogger("istio_sdk.config")

# A file whose mtime is this close to the moment it was read may still change within the same
# timestamp tick without its stat changing ("racy" file, as git calls it): read it again on the
# next scan instead of trusting its stat.
_RACY_NS = 2_000_000_000

WatchMode = Literal["inotify", "polling", "stopped"]

# A file's content reaches the log through its problems: keep each one to one bounded line, and
# a file with thousands of problems to a few lines (all of them stay in ``errors``).
_LOGGED_PROBLEMS = 20
_LOG_LINE_CHARS = 1000


def _clip(text: str) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > _LOG_LINE_CHARS:
        return f"{text[:_LOG_LINE_CHARS]}... ({len(text)} characters)"
    return text


def _log_line(problem: Problem) -> str:
    return _clip(str(problem))


@attrs.frozen
class SyncResult:
    """What one scan changed."""

    applied: int = 0
    """Resources created or changed in the store."""
    deleted: int = 0
    failed_files: tuple[str, ...] = ()
    """Files that have problems after this scan (their previous resources were kept)."""


@attrs.frozen
class _Stat:
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, result: os.stat_result) -> _Stat:
        return cls(
            result.st_size, result.st_mtime_ns, result.st_ctime_ns, result.st_ino, result.st_dev
        )


@attrs.frozen
class _Seen:
    """What the last scan learnt about one file."""

    stat: _Stat
    digest: str
    trusted: bool
    """The mtime was old enough when the file was read that an equal stat means equal bytes."""


@attrs.frozen
class _Outcome:
    name: str
    seen: _Seen
    changed: bool
    resources: tuple[Resource, ...] = ()
    problems: tuple[Problem, ...] = ()


@attrs.frozen
class _Scan:
    names: frozenset[str]
    outcomes: tuple[_Outcome, ...]


def _examine(
    path: pathlib.Path, previous: _Seen | None, limits: LoadLimits, now_ns: int
) -> _Outcome | None:
    """Stat one file and, if it changed, read and validate it. None: it is gone."""
    name = str(path)
    try:
        stat = _Stat.of(path.stat())
    except OSError:  # removed (or a dangling symlink) since it was listed
        return None
    trusted = now_ns - stat.mtime_ns > _RACY_NS
    if previous is not None and previous.trusted and previous.stat == stat:
        return _Outcome(name, previous, changed=False)
    log.debug("reading %s (%d bytes): new, changed or recently written", name, stat.size)
    try:
        data = read_file(path, limits)
    except ConfigError as exc:  # over max_bytes: refused before reading, once per stat
        seen = _Seen(stat, f"refused:{stat}", trusted)
        changed = previous is None or previous.digest != seen.digest
        return _Outcome(name, seen, changed=changed, problems=(exc.problem,))
    except OSError as exc:
        if not path.exists():
            return None
        problem = Problem(message=f"cannot read: {exc.strerror or exc}", source=name)
        seen = _Seen(stat, f"unreadable:{problem.message}", trusted=False)  # tried every scan
        changed = previous is None or previous.digest != seen.digest  # reported once
        return _Outcome(name, seen, changed=changed, problems=(problem,))
    digest = hashlib.sha256(data).hexdigest()
    seen = _Seen(stat, digest, trusted)
    if previous is not None and previous.digest == digest:
        return _Outcome(name, seen, changed=False)
    try:
        resources, problems = validate_text(decode_text(data, name), name, limits)
    except ConfigError as exc:
        return _Outcome(name, seen, changed=True, problems=(exc.problem,))
    except Exception as exc:  # a bug or an input nobody foresaw: report it, never die
        log.debug("loading %s failed", name, exc_info=True)
        problem = Problem(message=f"cannot load: {type(exc).__name__}: {exc}", source=name)
        return _Outcome(name, seen, changed=True, problems=(problem,))
    return _Outcome(name, seen, changed=True, resources=tuple(resources), problems=tuple(problems))


def scan_folder(root: pathlib.Path, seen: Mapping[str, _Seen], limits: LoadLimits) -> _Scan:
    """List the folder and examine every file (blocking: run it in a worker thread)."""
    if not root.is_dir():
        raise FileNotFoundError(f"config folder {root} does not exist")
    now_ns = time.time_ns()
    outcomes = []
    for path in config_files(root):
        outcome = _examine(path, seen.get(str(path)), limits, now_ns)
        if outcome is not None:
            outcomes.append(outcome)
    return _Scan(frozenset(o.name for o in outcomes), tuple(outcomes))


class DirectorySource:
    """Load a folder into ``store`` and follow its changes.

    ``watch`` (default) follows the folder with inotify through ``watchfiles`` and polls every
    ``interval`` seconds only when inotify cannot be used; ``watch=False`` always polls.
    ``limits`` bound what one file may cost (:class:`~istio_sdk.config.LoadLimits`).
    ``on_error(path, problems)`` is called once for each new problem state of a file; the folder
    itself is the path when a whole scan fails.
    """

    def __init__(
        self,
        store: ConfigStore,
        root: str | os.PathLike[str],
        *,
        interval: float = 1.0,
        watch: bool = True,
        limits: LoadLimits | None = None,
        on_error: Callable[[str, list[Problem]], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.store = store
        self.root = pathlib.Path(root)
        self.interval = interval
        self.watch = watch
        self.limits = DEFAULT_LIMITS if limits is None else limits
        self.on_error = on_error
        self.errors: dict[str, list[Problem]] = {}
        """Current problems by file path (the folder's path when a scan failed as a whole);
        an entry leaves this dict once the file loads cleanly (or the scan works again)."""
        self.watching: WatchMode = "stopped"
        """How changes are followed now: ``inotify``, ``polling`` or ``stopped``."""
        self._seen: dict[str, _Seen] = {}
        self._keys: dict[str, set[Key]] = {}
        self._owner: dict[Key, str] = {}
        # files whose only problem is a key another file owns, with what they would load
        self._blocked: dict[str, tuple[Resource, ...]] = {}
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- scanning --------------------------------------------------------------------------
    def sync(self) -> SyncResult:
        """Scan the folder once and bring the store up to date, in the calling thread.

        For scripts and tests; a server uses :meth:`refresh` (or :meth:`start`).
        """
        return self._apply(scan_folder(self.root, dict(self._seen), self.limits))

    async def refresh(self) -> SyncResult:
        """Scan once: list, read and parse in a worker thread, then update the store here.

        Raises ``FileNotFoundError`` when the folder is missing; problems in files are
        reported (:attr:`errors`, ``on_error``) and do not raise.
        """
        return await self._refresh(quiet=False)

    async def _refresh(self, *, quiet: bool) -> SyncResult:
        async with self._lock:
            scan = await asyncio.to_thread(scan_folder, self.root, dict(self._seen), self.limits)
            return self._apply(scan, quiet=quiet)

    def _apply(self, scan: _Scan, *, quiet: bool = False) -> SyncResult:
        applied = deleted = 0
        # Removed files first: their keys may be what another file was waiting for.
        for name in sorted(set(self._seen) - scan.names):
            del self._seen[name]
            deleted += self._remove(name)
            self._blocked.pop(name, None)
            self.errors.pop(name, None)
        for outcome in scan.outcomes:
            name = outcome.name
            self._seen[name] = outcome.seen
            if not outcome.changed:
                continue
            self._blocked.pop(name, None)
            problems = [p for p in outcome.problems if p.is_error]  # warnings never block
            if not problems:
                problems = self._ownership_problems(name, outcome.resources)
                if problems:
                    self._blocked[name] = outcome.resources
            if problems:
                self._report(name, problems, quiet=quiet)
                continue
            a, d = self._replace(name, outcome.resources)
            applied += a
            deleted += d
        progress = True
        while progress:  # a file kept out by a duplicate key loads once the key is free
            progress = False
            for name, resources in sorted(self._blocked.items()):
                if not self._ownership_problems(name, resources):
                    del self._blocked[name]
                    a, d = self._replace(name, resources)
                    applied += a
                    deleted += d
                    progress = True
        self._clear_error(str(self.root))
        failed = tuple(sorted(name for name in self.errors if name in scan.names))
        return SyncResult(applied=applied, deleted=deleted, failed_files=failed)

    def _ownership_problems(self, name: str, resources: tuple[Resource, ...]) -> list[Problem]:
        problems = []
        seen: set[Key] = set()
        for resource in resources:
            key = resource.key
            owner = self._owner.get(key, name)
            where = owner if owner != name else name if key in seen else None
            if where is not None:
                problems.append(
                    Problem(
                        message=f"{resource.kind} {key[1]}/{key[2]} is also defined in {where}",
                        source=name,
                        kind=resource.kind,
                        namespace=key[1],
                        name=key[2],
                    )
                )
            seen.add(key)
        return problems

    def _replace(self, name: str, resources: tuple[Resource, ...]) -> tuple[int, int]:
        self._clear_error(name)
        old_keys = self._keys.get(name, set())
        applied = deleted = 0
        new_keys: set[Key] = set()
        for resource in resources:
            revision = self.store.revision
            self.store.apply(resource)
            applied += self.store.revision != revision
            new_keys.add(resource.key)
            self._owner[resource.key] = name
        for key in sorted(old_keys - new_keys):
            deleted += self._delete(key)
        self._keys[name] = new_keys
        return applied, deleted

    def _remove(self, name: str) -> int:
        return sum(self._delete(key) for key in sorted(self._keys.pop(name, set())))

    def _delete(self, key: Key) -> int:
        self._owner.pop(key, None)
        if key in self.store:
            self.store.delete(key[0], key[2], key[1])
            return 1
        return 0

    def _clear_error(self, name: str) -> None:
        if self.errors.pop(name, None) is not None:
            log.info("config %s is good again", name)

    def _report(self, name: str, problems: list[Problem], *, quiet: bool = False) -> None:
        self.errors[name] = problems
        if quiet:
            return
        for problem in problems[:_LOGGED_PROBLEMS]:
            log.warning(
                "config file rejected, keeping its previous resources: %s", _log_line(problem)
            )
        if len(problems) > _LOGGED_PROBLEMS:
            log.warning(
                "config file %s has %d more problems (DirectorySource.errors lists them all)",
                _clip(name),
                len(problems) - _LOGGED_PROBLEMS,
            )
        if self.on_error is not None:
            try:
                self.on_error(name, problems)
            except Exception:  # a broken callback must not stop following the folder
                log.exception("config folder on_error callback failed for %s", name)

    async def _refresh_reporting(self) -> None:
        """:meth:`refresh`, with any failure reported instead of raised."""
        try:
            await self.refresh()
        except Exception as exc:
            root = str(self.root)
            message = f"scan failed, keeping the last good config: {type(exc).__name__}: {exc}"
            if [p.message for p in self.errors.get(root, [])] != [message]:
                log.debug("scan of %s failed", root, exc_info=True)
                self._report(root, [Problem(message=message, source=root)])

    # -- following -------------------------------------------------------------------------
    async def start(self, *, strict: bool = False) -> None:
        """Load the folder (raises ``FileNotFoundError`` when it is missing), then follow it.

        The watch is set up before the first scan, so no change between the two is lost. With
        ``strict`` a problem in the first scan raises :class:`~istio_sdk.config.ConfigError`
        (the first problem; :attr:`errors` holds them all) instead of being logged, and the
        source does not start.
        """
        if self._task is not None and not self._task.done():
            return
        if not self.root.is_dir():
            raise FileNotFoundError(f"config folder {self.root} does not exist")
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._follow())
        await asyncio.sleep(0)  # the task sets up inotify before it first waits
        try:
            await self._refresh(quiet=strict)
            if strict and self.errors:
                first = min(self.errors)
                raise ConfigError(self.errors[first][0])
        except BaseException:
            await self.stop()
            raise

    async def _follow(self) -> None:
        if self.watch:
            try:
                await self._follow_events()
                return
            except Exception as exc:
                log.warning(
                    "cannot watch %s with inotify (%s: %s); polling it every %gs instead",
                    self.root,
                    type(exc).__name__,
                    exc,
                    self.interval,
                )
        self.watching = "polling"
        while not self._stop.is_set():
            await asyncio.sleep(self.interval)
            await self._refresh_reporting()

    async def _follow_events(self) -> None:
        changes = awatch(
            self.root, watch_filter=None, stop_event=self._stop, recursive=True, step=50
        )
        self.watching = "inotify"
        try:
            async for _ in changes:  # which files changed does not matter: stat tells
                await self._refresh_reporting()
        except BaseException:
            self.watching = "stopped"
            raise

    async def stop(self) -> None:
        """Stop following changes."""
        self._stop.set()  # the inotify thread sees this within a step
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.watching = "stopped"

    async def __aenter__(self) -> DirectorySource:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

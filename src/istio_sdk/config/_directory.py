"""``DirectorySource``: keep a :class:`ConfigStore` in step with a folder of YAML/JSON files.

Each scan reads every ``*.yaml``, ``*.yml`` and ``*.json`` file below the folder (hidden files
and folders skipped) and compares content hashes with the previous scan. A file that changed is
loaded and validated as a whole: when it has problems they are logged, kept in
:attr:`DirectorySource.errors` and passed to ``on_error``, and the resources it gave before stay
in the store untouched. A removed file's resources are deleted. A resource key defined by two
files belongs to the first file that defined it; the second file reports a problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pathlib
from collections.abc import Callable
from types import TracebackType

import attrs

from istio_sdk.config._errors import Problem
from istio_sdk.config._io import config_files
from istio_sdk.config._resource import Resource
from istio_sdk.config._store import ConfigStore, Key
from istio_sdk.config._validate import validate_text

log = logging.getLogger("istio_sdk.config")


@attrs.frozen
class SyncResult:
    """What one scan changed."""

    applied: int = 0
    """Resources created or changed in the store."""
    deleted: int = 0
    failed_files: tuple[str, ...] = ()
    """Files that had problems in this scan (their previous resources were kept)."""


@attrs.define
class _FileState:
    digest: str
    keys: set[Key]


class DirectorySource:
    """Load a folder into ``store`` and follow its changes by polling every ``interval`` s."""

    def __init__(
        self,
        store: ConfigStore,
        root: str | os.PathLike[str],
        *,
        interval: float = 1.0,
        on_error: Callable[[str, list[Problem]], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.store = store
        self.root = pathlib.Path(root)
        self.interval = interval
        self.on_error = on_error
        self.errors: dict[str, list[Problem]] = {}
        """Current problems by file path; a file leaves this dict once it loads cleanly."""
        self._files: dict[str, _FileState] = {}
        self._owner: dict[Key, str] = {}
        # digest of the content that failed, so a broken file is reported once, not every scan
        self._failed: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def sync(self) -> SyncResult:
        """Scan the folder once and bring the store up to date."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"config folder {self.root} does not exist")
        applied = deleted = 0
        failed: list[str] = []
        paths = config_files(self.root)
        seen = {str(path) for path in paths}
        # Removed files first: their keys may be what another file was waiting for.
        for name in sorted(set(self._files) - seen):
            deleted += self._remove(name)
        for name in sorted(set(self.errors) - seen):
            self.errors.pop(name, None)
            self._failed.pop(name, None)
        for path in paths:
            name = str(path)
            try:
                data = path.read_bytes()
            except OSError as exc:  # removed between listing and reading: next scan
                log.debug("skipping %s: %s", name, exc)
                continue
            digest = hashlib.sha256(data).hexdigest()
            state = self._files.get(name)
            if state is not None and state.digest == digest:
                continue
            if self._failed.get(name) == digest:
                failed.append(name)
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._report(name, [Problem(message=f"not UTF-8 text: {exc}", source=name)])
                self._failed[name] = digest
                failed.append(name)
                continue
            resources, problems = validate_text(text, name)
            problems.extend(self._ownership_problems(name, resources))
            if problems:
                self._report(name, problems)
                self._failed[name] = digest
                failed.append(name)
                continue
            self.errors.pop(name, None)
            self._failed.pop(name, None)
            a, d = self._replace(name, digest, resources)
            applied += a
            deleted += d
        return SyncResult(applied=applied, deleted=deleted, failed_files=tuple(failed))

    def _ownership_problems(self, name: str, resources: list[Resource]) -> list[Problem]:
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

    def _replace(self, name: str, digest: str, resources: list[Resource]) -> tuple[int, int]:
        state = self._files.get(name)
        old_keys = set() if state is None else state.keys
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
        self._files[name] = _FileState(digest=digest, keys=new_keys)
        return applied, deleted

    def _remove(self, name: str) -> int:
        state = self._files.pop(name)
        return sum(self._delete(key) for key in sorted(state.keys))

    def _delete(self, key: Key) -> int:
        self._owner.pop(key, None)
        self._failed.clear()  # a file rejected for a duplicate key may now load
        if key in self.store:
            self.store.delete(key[0], key[2], key[1])
            return 1
        return 0

    def _report(self, name: str, problems: list[Problem]) -> None:
        self.errors[name] = problems
        for problem in problems:
            log.warning("config file rejected, keeping its previous resources: %s", problem)
        if self.on_error is not None:
            try:
                self.on_error(name, problems)
            except Exception:  # a broken callback must not stop following the folder
                log.exception("config folder on_error callback failed for %s", name)

    async def run(self) -> None:
        """Scan now and then every ``interval`` seconds until cancelled."""
        while True:
            try:
                self.sync()
            except OSError as exc:
                log.warning("config folder scan failed: %s", exc)
            await asyncio.sleep(self.interval)

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task (after one synchronous scan, so the store is filled)."""
        if self._task is None or self._task.done():
            self.sync()
            self._task = asyncio.get_running_loop().create_task(self._run_after_first())
        return self._task

    async def _run_after_first(self) -> None:
        await asyncio.sleep(self.interval)
        await self.run()

    async def stop(self) -> None:
        """Stop following changes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> DirectorySource:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

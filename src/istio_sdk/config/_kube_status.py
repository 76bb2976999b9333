"""``StatusWriter``: write Istio's status of the objects a KubernetesSource follows.

For every Istio object the source sees (valid or not) the desired status is what istiod's
status controller writes into ``status`` (``istio.meta.v1alpha1.IstioStatus`` as proto3 JSON):
``observedGeneration``, the object's ``metadata.generation``, and ``validationMessages``, one
``IST0106 SchemaValidationError`` (level ERROR) for an object that does not validate, none for
one that does. It is written by server-side apply of the ``status`` subresource
(``application/apply-patch+yaml``, field manager ``istio-sdk``, forced), so only the fields
this manager owns change and a field it stops applying is removed. An object whose status is
already the desired one is not written.

With a :class:`~istio_sdk.config.LeaderElector` only the leader writes: a replica that is not
leading keeps nothing pending, and one that becomes leader writes every object's status once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from istio_sdk.config._kinds import ISTIO_STATUS
from istio_sdk.config._kube_client import kind_path
from istio_sdk.config._kube_source import KubernetesSource, Observed
from istio_sdk.config._leader import LeaderElector
from istio_sdk.config._store import Key
from istio_sdk.config._yaml import JsonValue

__all__ = ["FIELD_MANAGER", "StatusWriter", "desired_status"]

log = logging.getLogger("istio_sdk.config.status")

FIELD_MANAGER = "istio-sdk"
SCHEMA_VALIDATION_ERROR = ("SchemaValidationError", "IST0106")


def desired_status(observed: Observed) -> dict[str, JsonValue]:
    """The status fields this writer owns for ``observed`` (proto3 JSON of IstioStatus)."""
    from istio_sdk.api.istio.analysis.v1alpha1 import (
        AnalysisMessageBase,
        AnalysisMessageBaseLevel,
        AnalysisMessageBaseType,
    )
    from istio_sdk.api.istio.meta.v1alpha1 import IstioStatus
    from istio_sdk.protojson import message_to_json

    name, code = SCHEMA_VALIDATION_ERROR
    messages = [
        AnalysisMessageBase(
            type=AnalysisMessageBaseType(name=name, code=code),
            level=AnalysisMessageBaseLevel.ERROR,
            documentation_url=f"https://istio.io/latest/docs/reference/config/analysis/{code.lower()}/",
        )
        for _ in observed.problems[:1]
    ]
    status = IstioStatus(validation_messages=messages, observed_generation=observed.generation)
    value = message_to_json(status)
    assert isinstance(value, dict)
    return value


def _has(status: JsonValue, wanted: dict[str, JsonValue]) -> bool:
    current = status if isinstance(status, dict) else {}
    return all(current.get(k) == v for k, v in wanted.items()) and (
        "validationMessages" in wanted or "validationMessages" not in current
    )


class StatusWriter:
    """Write the status of ``source``'s Istio objects through ``client`` (an httpx client
    whose ``base_url`` is the API server; the source's own client by default), only while
    ``elector`` (when given) leads. ``writes`` counts the applies made."""

    def __init__(
        self,
        source: KubernetesSource,
        *,
        elector: LeaderElector | None = None,
        client: Any = None,
        field_manager: str = FIELD_MANAGER,
    ) -> None:
        self.source = source
        self.elector = elector
        self.client = client if client is not None else source.client
        self.field_manager = field_manager
        self.writes = 0
        self.failures = 0
        self._pending: dict[Key, None] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        source.on_observed(self._changed)
        if elector is not None:
            previous = elector.on_change

            def on_change(leading: bool) -> None:
                if previous is not None:
                    previous(leading)
                self._leadership(leading)

            elector.on_change = on_change

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def _changed(self, key: Key, observed: Observed | None) -> None:
        if observed is None:
            self._pending.pop(key, None)
        elif observed.info.status_type == ISTIO_STATUS and self.leading:
            self._pending[key] = None
            self._wakeup.set()

    def _leadership(self, leading: bool) -> None:
        self._pending.clear()
        if leading:  # write what the previous leader may have left unwritten
            for key, observed in self.source.observed.items():
                if observed.info.status_type == ISTIO_STATUS:
                    self._pending[key] = None
            self._wakeup.set()

    async def _write(self, observed: Observed) -> None:
        wanted = desired_status(observed)
        if _has(observed.status, wanted):
            return
        info = observed.info
        body = {
            "apiVersion": info.api_version,
            "kind": info.kind,
            "metadata": {"name": observed.name, "namespace": observed.namespace},
            "status": wanted,
        }
        path = kind_path(info, observed.namespace, observed.name) + "/status"
        response = await self.client.patch(
            path,
            params={"fieldManager": self.field_manager, "force": "true"},
            json=body,
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if response.status_code >= 400:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        self.writes += 1

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending and self.leading:
                key = next(iter(self._pending))
                del self._pending[key]
                observed = self.source.observed.get(key)
                if observed is None:
                    continue
                try:
                    await self._write(observed)
                except Exception as exc:  # reported; the next change of the object retries
                    self.failures += 1
                    log.warning("cannot write the status of %s: %s", key, exc)

    async def start(self) -> None:
        """Write statuses in the background (now, and as objects change)."""
        if self._task is None or self._task.done():
            self._leadership(self.leading)
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

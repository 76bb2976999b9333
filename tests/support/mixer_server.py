"""Helpers for the MixerServer tests: a server over YAML config, and proxy-shaped calls.

Calls go over gRPC with grpclib's generated stub and carry what Istio 1.3's proxy sends:
``CompressedAttributes`` built by :mod:`istio_sdk.mixer.wire`, ``global_word_count`` 222, a
deduplication id per Check, Report batches in INDEPENDENT encoding with shared
``default_words``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import pytest
from grpclib.client import Channel

from istio_sdk._grpc import create_channel
from istio_sdk.api.istio.mixer.v1 import (
    CheckRequest,
    CheckRequestQuotaParams,
    CheckResponse,
    MixerStub,
    ReferencedAttributes,
    ReferencedAttributesCondition,
)
from istio_sdk.config import ConfigStore, ObjectMeta, Resource, load_resources
from istio_sdk.mixer import GLOBAL_DICTIONARY, MixerServer, encode_attributes, encode_report

T = TypeVar("T")

PROXY_WORD_COUNT = len(GLOBAL_DICTIONARY)

DENY_REVIEWS = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: closed}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec:
  compiledTemplate: checknothing
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: denyreviews, namespace: istio-system}
spec:
  match: destination.service.name == "reviews"
  actions:
  - handler: deny
    instances: [nothing]
"""
"""A denier (PERMISSION_DENIED ``closed``) for every call to the reviews service."""


def apply_yaml(store: ConfigStore, text: str) -> None:
    for resource in load_resources(text):
        store.apply(resource)


def legacy(
    kind: str, name: str, spec: Mapping[str, Any], namespace: str = "istio-system"
) -> Resource:
    """A resource of one of Mixer 1.3's per-adapter or per-template kinds (``listchecker``,
    ``listentry``...) built in Python: its spec is the params, as a plain mapping."""
    return Resource(
        api_version="config.istio.io/v1alpha2",
        kind=kind,
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=dict(spec),
    )


@attrs.define
class Proxy:
    """A client sending what a 1.3 proxy sends."""

    channel: Channel
    _sent: int = 0

    @property
    def stub(self) -> MixerStub:
        return MixerStub(self.channel)

    async def check(
        self,
        attributes: Mapping[str, object],
        *,
        quotas: Mapping[str, tuple[int, bool]] | None = None,
        deduplication_id: str | None = None,
        global_word_count: int = PROXY_WORD_COUNT,
    ) -> CheckResponse:
        self._sent += 1
        request = CheckRequest(
            attributes=encode_attributes(attributes),
            global_word_count=global_word_count,
            deduplication_id=deduplication_id or f"test-{id(self)}-{self._sent}",
            quotas={
                name: CheckRequestQuotaParams(amount=amount, best_effort=best_effort)
                for name, (amount, best_effort) in (quotas or {}).items()
            },
        )
        return await self.stub.check(request, timeout=10)

    async def report(self, bags: list[Mapping[str, object]]) -> None:
        for request in encode_report(bags):
            await self.stub.report(request, timeout=10)


@contextlib.asynccontextmanager
async def serve(
    config: str = "", *, store: ConfigStore | None = None, **options: Any
) -> AsyncIterator[tuple[MixerServer, Proxy]]:
    """A started MixerServer over ``config`` (YAML) and a proxy connected to it."""
    store = store if store is not None else ConfigStore()
    if config:
        apply_yaml(store, config)
    server = MixerServer(store, **options)
    await server.start("127.0.0.1", 0)
    channel = create_channel("127.0.0.1", server.port)
    try:
        yield server, Proxy(channel)
    finally:
        channel.close()
        await server.stop()


def referenced(refs: ReferencedAttributes | None) -> set[tuple[str, str, str]]:
    """``(name, map key or "", EXACT/ABSENCE)`` of a response's ReferencedAttributes."""
    assert refs is not None
    words = list(refs.words)

    def word(index: int) -> str:
        return GLOBAL_DICTIONARY[index] if index >= 0 else words[-index - 1]

    found = set()
    for match in refs.attribute_matches:
        key = word(match.map_key) if match.map_key else ""
        condition = ReferencedAttributesCondition(match.condition).name
        found.add((word(match.name), key, condition))
    return found


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], within: float = 10.0
) -> T:
    """``await probe()`` until ``accept`` takes its value; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"still not accepted after {within} s: {value!r}")
        await asyncio.sleep(0.02)

"""Mixer's runtime core (Istio 1.3): configuration compiled into routing, and dispatch (pure).

- :mod:`.config`: ``rule``/``handler``/``instance``/``attributemanifest`` resources (and the
  legacy per-adapter and per-template kinds) -> an immutable :class:`RoutingConfig`, with a
  :class:`ConfigProblem` for each piece left out;
- :mod:`.instances`: instance params compiled into template instance builders;
- :mod:`.dispatch`: Check (precondition, quotas) and Report through a :class:`Dispatcher`;
- :mod:`.referenced`: the attributes a decision read, as ``ReferencedAttributes``.

:class:`istio_sdk.mixer.MixerServer` is the grpclib loop around it.
"""

from __future__ import annotations

from istio_sdk.mixer.runtime.config import (
    DEFAULT_CONFIG_NAMESPACE,
    CompiledAction,
    CompiledRule,
    ConfigProblem,
    HandlerConfig,
    RoutingConfig,
    build_routing,
)
from istio_sdk.mixer.runtime.dispatch import (
    DEFAULT_VALID_DURATION,
    DEFAULT_VALID_USE_COUNT,
    CheckOutcome,
    CheckPlan,
    Dispatcher,
    QuotaOutcome,
    QuotaPlan,
    QuotaRequest,
    ReportPlan,
)
from istio_sdk.mixer.runtime.instances import InstanceBuilder, compile_instance
from istio_sdk.mixer.runtime.referenced import RecordingBag, encode_referenced

__all__ = [
    "DEFAULT_CONFIG_NAMESPACE",
    "DEFAULT_VALID_DURATION",
    "DEFAULT_VALID_USE_COUNT",
    "CheckOutcome",
    "CheckPlan",
    "CompiledAction",
    "CompiledRule",
    "ConfigProblem",
    "Dispatcher",
    "HandlerConfig",
    "InstanceBuilder",
    "QuotaOutcome",
    "QuotaPlan",
    "QuotaRequest",
    "RecordingBag",
    "ReportPlan",
    "RoutingConfig",
    "build_routing",
    "compile_instance",
    "encode_referenced",
]

"""The sidecar injector: Istio's ``sidecar``, ``gateway`` and ``grpc-agent`` templates.

- :func:`inject_pod`: one Pod (Kubernetes JSON) in, the injected Pod out (or the reason it is
  left alone: host networking, ``sidecar.istio.io/inject: "false"``, ...);
- :func:`inject_object`: the same for a workload's Pod template (Deployment, StatefulSet,
  DaemonSet, ReplicaSet, Job, CronJob, ReplicationController) or a List, as
  ``istioctl kube-inject`` does; :func:`inject_yaml` for a multi-document YAML stream;
- :class:`InjectSettings`: Helm values, mesh config, revision, native sidecars;
- :func:`create_patch`/:func:`apply_patch`: JSON Patch between two Pods;
- :mod:`istio_sdk.proxy.inject.webhook`: the mutating webhook (AdmissionReview in, JSONPatch
  out) and its HTTPS server.

Bad input raises :class:`InjectionError` naming where it is. See ``docs/inject.md``.
"""

from __future__ import annotations

from istio_sdk.proxy.inject._errors import InjectionError
from istio_sdk.proxy.inject.documents import InjectedText, inject_yaml, load_settings
from istio_sdk.proxy.inject.inject import (
    InjectionResult,
    WorkloadRef,
    inject_object,
    inject_pod,
    injection_required,
    workload_of_pod,
)
from istio_sdk.proxy.inject.jsonpatch import JsonPatchError, apply_patch, create_patch
from istio_sdk.proxy.inject.selection import webhook_selects
from istio_sdk.proxy.inject.settings import InjectSettings
from istio_sdk.proxy.inject.templates import TEMPLATES

__all__ = [
    "TEMPLATES",
    "InjectSettings",
    "InjectionError",
    "InjectedText",
    "InjectionResult",
    "JsonPatchError",
    "WorkloadRef",
    "apply_patch",
    "create_patch",
    "inject_object",
    "inject_pod",
    "inject_yaml",
    "injection_required",
    "load_settings",
    "webhook_selects",
    "workload_of_pod",
]

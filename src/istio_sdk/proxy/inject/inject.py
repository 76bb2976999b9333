"""Sidecar injection of one Pod, and of the Pod template of a workload.

:func:`inject_pod` is istiod's injection of a Pod (``injectPod``): decide whether the Pod is
injected at all (``hostNetwork``, ``sidecar.istio.io/inject``, the namespace policy), strip a
previous injection (so injecting twice gives the same Pod), run the templates the Pod asks for,
merge them over it, re-apply the user's own ``istio-proxy`` customisations, then the
post-processing istiod does in code: metrics-merge annotations, probe rewriting, the
``sidecar.istio.io/status`` annotation and the container order.

:func:`inject_object` does the same for any object that holds a Pod template (Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController, List) as
``istioctl kube-inject`` does. Everything here is pure: JSON values in, JSON values out.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from istio_sdk.api.istio.mesh.v1alpha1 import ProxyConfig, ProxyConfigInboundInterceptionMode
from istio_sdk.config._yaml import describe_json
from istio_sdk.proxy.bootstrap import BootstrapError
from istio_sdk.proxy.bootstrap.proxy_config import apply_proxy_config_text
from istio_sdk.proxy.inject import _annotations as names
from istio_sdk.proxy.inject._annotations import parse_go_bool, validate_annotations
from istio_sdk.proxy.inject._errors import InjectionError
from istio_sdk.proxy.inject._merge import copy_json, merge_pod
from istio_sdk.proxy.inject.probes import (
    KUBE_APP_PROBERS,
    app_probers,
    merge_probers,
    rewrite_probes,
)
from istio_sdk.proxy.inject.selection import webhook_selects
from istio_sdk.proxy.inject.settings import InjectSettings
from istio_sdk.proxy.inject.templates import TEMPLATES, TemplateInput, canonical_resources

__all__ = [
    "IGNORED_NAMESPACES",
    "InjectionResult",
    "WorkloadRef",
    "inject_object",
    "inject_pod",
    "injection_required",
    "workload_of_pod",
]

Json = dict[str, Any]
PROXY = "istio-proxy"
INIT = "istio-init"
VALIDATION = "istio-validation"
CORE_DUMP = "enable-core-dump"
IGNORED_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)
_CRONJOB_NAME = re.compile(r"^(.+)-\d{8,10}$")
_PROMETHEUS = frozenset(
    {
        "prometheus_io_path",
        "prometheus_io_port",
        "prometheus_io_scrape",
        "prometheus_istio_io_scrape_targets",
    }
)
_RESERVED_PORTS = {
    "15000": "Envoy admin",
    "15001": "outbound traffic capture",
    "15004": "pilot debug",
    "15006": "inbound traffic capture",
    "15008": "HBONE tunnel",
    "15020": "pilot-agent status / merged Prometheus",
    "15021": "Envoy health",
    "15053": "DNS proxy",
    "15090": "Envoy Prometheus (already merged)",
}


@attrs.frozen
class WorkloadRef:
    """The workload a Pod belongs to: what ``ISTIO_META_OWNER`` and the workload name say."""

    name: str
    namespace: str
    api_version: str
    kind: str


@attrs.frozen
class InjectionResult:
    """What injection did to a Pod: ``pod`` is the injected Pod (the input unchanged when
    ``skipped`` says why it was not injected)."""

    pod: Json
    skipped: str | None = None


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _mapping(value: object, source: str) -> Json:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InjectionError(source, f"expected a mapping, got {describe_json(value)}")
    return value


def _string_map(value: object, source: str) -> dict[str, str]:
    mapping = _mapping(value, source)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise InjectionError(f"{source}.{key}", f"expected a string, got {describe_json(item)}")
    return mapping


def _check_pod(pod: object) -> Json:
    """The structural checks injection relies on; the Kubernetes API checks the rest."""
    if not isinstance(pod, dict):
        raise InjectionError("pod", f"expected a mapping, got {describe_json(pod)}")
    meta = _mapping(pod.get("metadata"), "metadata")
    _string_map(meta.get("annotations"), "metadata.annotations")
    _string_map(meta.get("labels"), "metadata.labels")
    for key in ("name", "namespace", "generateName"):
        if meta.get(key) is not None and not isinstance(meta.get(key), str):
            raise InjectionError(
                f"metadata.{key}", f"expected a string, got {describe_json(meta[key])}"
            )
    owners = meta.get("ownerReferences")
    if owners is not None and not (
        isinstance(owners, list) and all(isinstance(o, dict) for o in owners)
    ):
        raise InjectionError("metadata.ownerReferences", "expected a list of mappings")
    spec = _mapping(pod.get("spec"), "spec")
    for group in ("containers", "initContainers"):
        items = spec.get(group)
        if items is None:
            continue
        if not isinstance(items, list):
            raise InjectionError(f"spec.{group}", f"expected a list, got {describe_json(items)}")
        for index, container in enumerate(items):
            where = f"spec.{group}[{index}]"
            if not isinstance(container, dict):
                raise InjectionError(where, f"expected a mapping, got {describe_json(container)}")
            if not isinstance(container.get("name"), str):
                raise InjectionError(f"{where}.name", "a container needs a name (a string)")
            for field in ("env", "ports", "volumeMounts", "args"):
                value = container.get(field)
                if value is not None and not isinstance(value, list):
                    raise InjectionError(
                        f"{where}.{field}", f"expected a list, got {describe_json(value)}"
                    )
            for position, port in enumerate(container.get("ports") or []):
                if not isinstance(port, dict):
                    raise InjectionError(f"{where}.ports[{position}]", "expected a mapping")
                number = port.get("containerPort")
                if (
                    isinstance(number, bool)
                    or not isinstance(number, int)
                    or not 0 < number < 65536
                ):
                    raise InjectionError(
                        f"{where}.ports[{position}].containerPort",
                        f"expected a port number, got {describe_json(number)}",
                    )
            for position, item in enumerate(container.get("env") or []):
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise InjectionError(
                        f"{where}.env[{position}]", "expected a mapping with a name"
                    )
            for kind in (
                "readinessProbe",
                "livenessProbe",
                "startupProbe",
                "lifecycle",
                "securityContext",
            ):
                value = container.get(kind)
                if value is not None and not isinstance(value, dict):
                    raise InjectionError(
                        f"{where}.{kind}", f"expected a mapping, got {describe_json(value)}"
                    )
    for group in ("volumes", "imagePullSecrets"):
        items = spec.get(group)
        if items is not None and not (
            isinstance(items, list) and all(isinstance(i, dict) for i in items)
        ):
            raise InjectionError(f"spec.{group}", "expected a list of mappings")
    if spec.get("hostNetwork") is not None and not isinstance(spec.get("hostNetwork"), bool):
        raise InjectionError(
            "spec.hostNetwork", f"expected a boolean, got {describe_json(spec['hostNetwork'])}"
        )
    return pod


def workload_of_pod(pod: Mapping[str, Any]) -> WorkloadRef:
    """The workload that owns a Pod, from its controller reference (istiod's heuristics:
    a ReplicaSet named after its Deployment plus ``pod-template-hash``, a Job named after its
    CronJob plus a timestamp)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = meta.get("name") or ""
    ref = WorkloadRef(name, meta.get("namespace") or "", "v1", "Pod")
    if meta.get("generateName"):
        controller = next(
            (o for o in meta.get("ownerReferences") or [] if o.get("controller") is True), None
        )
        if controller is not None:
            kind = str(controller.get("kind") or "")
            api = str(controller.get("apiVersion") or "")
            owner = str(controller.get("name") or "")
            hash_ = labels.get("pod-template-hash", "")
            rollout = labels.get("rollouts-pod-template-hash", "")
            if kind == "ReplicaSet" and hash_ and owner.endswith(hash_):
                owner, kind = owner.removesuffix("-" + hash_), "Deployment"
            elif kind == "ReplicaSet" and rollout and owner.endswith(rollout):
                owner, kind, api = owner.removesuffix("-" + rollout), "Rollout", "v1alpha1"
            elif kind == "ReplicationController" and labels.get("deploymentconfig"):
                owner, kind = labels["deploymentconfig"], "DeploymentConfig"
            elif kind == "Job" and (match := _CRONJOB_NAME.match(owner)):
                owner, kind, api = match.group(1), "CronJob", "batch/v1"
            ref = WorkloadRef(owner or name, ref.namespace, api, kind)
    return ref


def injection_required(
    pod: Mapping[str, Any], settings: InjectSettings, namespace: str = ""
) -> str | None:
    """``None`` when the Pod is to be injected, else the reason it is not."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if spec.get("hostNetwork"):
        return "the Pod uses host networking"
    if (meta.get("namespace") or namespace) in IGNORED_NAMESPACES:
        return f"namespace {meta.get('namespace') or namespace} is never injected"
    selector = (meta.get("annotations") or {}).get(names.INJECT, "")
    labels = meta.get("labels") or {}
    if names.INJECT in labels:
        selector = labels[names.INJECT]
    if selector == "true":
        return None
    if selector == "false":
        return f"{names.INJECT} is false"
    if settings.policy == "disabled":
        return "injection is disabled by default and the Pod does not ask for it"
    return None


def _status(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(names.STATUS)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _names(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _prometheus_port(annotations: Mapping[str, str]) -> str | None:
    for key, value in annotations.items():
        if _sanitize(key) == "prometheus_io_port":
            return value
    return None


def _strip(pod: Json, settings: InjectSettings) -> Json:
    """The Pod without what a previous injection added (its status annotation lists it)."""
    status = _status(pod)
    if status is None:
        return pod
    pod = copy_json(pod)
    spec = pod.setdefault("spec", {})
    for group, key in (("containers", "containers"), ("initContainers", "initContainers")):
        remove = set(_names(status.get(key)))
        if spec.get(group) is not None:
            spec[group] = [c for c in spec[group] if c.get("name") not in remove]
    annotations = pod["metadata"].setdefault("annotations", {})
    if _prometheus_port(annotations) == str(settings.status_port):
        for key in [k for k in annotations if _sanitize(k) in _PROMETHEUS]:
            del annotations[key]
    annotations.pop(names.STATUS, None)
    return pod


def _reinsert_overrides(pod: Json) -> Json:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(names.PROXY_OVERRIDES)
    if raw is None:
        return pod
    overrides = _overrides(raw)
    pod = copy_json(pod)
    spec = pod.setdefault("spec", {})
    for group in ("containers", "initContainers"):
        present = {c.get("name") for c in spec.get(group) or []}
        for container in overrides.get(group) or []:
            if container.get("name") not in present:
                spec.setdefault(group, []).append(copy_json(container))
    return pod


def _overrides(raw: str) -> dict[str, list[Json]]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise InjectionError(f"annotation {names.PROXY_OVERRIDES}", "invalid JSON") from None
    if not isinstance(value, dict):
        raise InjectionError(f"annotation {names.PROXY_OVERRIDES}", "expected a JSON object")
    out: dict[str, list[Json]] = {}
    for group in ("containers", "initContainers"):
        items = value.get(group) or []
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) for i in items
        ):
            raise InjectionError(
                f"annotation {names.PROXY_OVERRIDES}", f"{group}: expected named containers"
            )
        out[group] = items
    return out


def _proxy_config(settings: InjectSettings, annotations: Mapping[str, str]) -> ProxyConfig:
    """The mesh's ProxyConfig with the Pod's ``proxy.istio.io/config`` laid over it."""
    config = ProxyConfig().parse(bytes(settings.proxy_config))
    raw = annotations.get(names.PROXY_CONFIG)
    if raw is None:
        return config
    try:
        return apply_proxy_config_text(config, raw, f"annotation {names.PROXY_CONFIG}")
    except BootstrapError as exc:
        raise InjectionError(exc.source, exc.problem) from None


def _image_url(
    settings: InjectSettings, image: str, image_type: str, annotations: Mapping[str, str]
) -> str:
    values = settings.values
    tag = values.text("global.tag")
    kind = image_type or values.text("global.variant")
    kind = annotations.get("sidecar.istio.io/proxyImageType", kind)
    if kind:
        for known in ("distroless", "debug"):
            if tag.endswith("-" + known):
                tag = tag[: -len(known) - 1]
                break
        if kind != "default":
            tag = f"{tag}-{kind}"
    return f"{values.text('global.hub')}/{image}:{tag}"


def _native(settings: InjectSettings, annotations: Mapping[str, str]) -> bool:
    value = annotations.get(names.NATIVE_SIDECAR) or (
        "true" if settings.native_sidecars else "false"
    )
    return value != "false"


def _find(containers: Sequence[Json] | None, name: str) -> Json | None:
    return next((c for c in containers or [] if c.get("name") == name), None)


def _templates(annotations: Mapping[str, str], settings: InjectSettings) -> list[str]:
    raw = annotations.get(names.TEMPLATES)
    chosen = (
        [n.strip() for n in raw.split(",")] if raw is not None else list(settings.default_templates)
    )
    for name in chosen:
        if name not in TEMPLATES:
            raise InjectionError(
                f"annotation {names.TEMPLATES}",
                f"requested template {name!r} not found; have {', '.join(sorted(TEMPLATES))}",
            )
    return chosen


def _move_proxy_to_init(pod: Json) -> Json:
    spec = pod.get("spec") or {}
    proxy = _find(spec.get("containers"), PROXY)
    if proxy is None:
        return pod
    pod = copy_json(pod)
    spec = pod["spec"]
    spec["containers"] = [c for c in spec["containers"] if c.get("name") != PROXY]
    spec.setdefault("initContainers", []).append(proxy)
    return pod


def _mode_is_tproxy(config: ProxyConfig) -> bool:
    return bool(config.interception_mode == ProxyConfigInboundInterceptionMode.TPROXY)


def _reapply_overrides(merged: Json, original: Json, template: Json, *, tproxy: bool) -> Json:
    """The user's own fields of containers the template also defines win over the template's."""
    annotations = (original.get("metadata") or {}).get("annotations") or {}
    existing = (
        _overrides(annotations[names.PROXY_OVERRIDES])
        if names.PROXY_OVERRIDES in annotations
        else {}
    )
    status = _status(original)
    injected = status is not None
    recorded: dict[str, list[Json]] = {"containers": [], "initContainers": []}
    for group in ("containers", "initContainers"):
        previous = set(_names(status.get(group))) if status else set()
        for container in (template.get("spec") or {}).get(group) or []:
            name = container.get("name")
            if name in previous:
                continue
            match = _find(existing.get(group), name)
            if match is None:
                spec = original.get("spec") or {}
                match = _find(spec.get("containers"), name)
                if match is None and group == "initContainers":
                    match = _find(spec.get("initContainers"), name)
            if match is None:
                continue
            overlay = canonical_resources(copy_json(match), f"container {name}")
            if overlay.get("image") == "auto":
                overlay.pop("image")
            recorded[group].append(overlay)
            patch: Json = {"spec": {group: [overlay]}}
            merged = merge_pod(merged, patch)
    if not injected and (recorded["containers"] or recorded["initContainers"]):
        merged.setdefault("metadata", {}).setdefault("annotations", {})[names.PROXY_OVERRIDES] = (
            json.dumps({k: v for k, v in recorded.items() if v}, separators=(",", ":"))
        )
    _adjust_init_user(merged, original, mesh_tproxy=tproxy)
    return merged


def _adjust_init_user(merged: Json, original: Json, *, mesh_tproxy: bool) -> None:
    """The user's own ``istio-proxy`` runAsUser/runAsGroup carried to ``istio-init``'s ``-u``
    and to ``istio-validation``; TPROXY keeps the proxy at uid 0."""
    spec = original.get("spec") or {}
    user = _find(spec.get("containers"), PROXY) or _find(spec.get("initContainers"), PROXY)
    if user is None:
        return
    security = user.get("securityContext") or {}
    uid, gid = security.get("runAsUser"), security.get("runAsGroup")
    if uid is None and gid is None:
        return
    merged_spec = merged.get("spec") or {}
    init = _find(merged_spec.get("initContainers"), INIT) or _find(
        merged_spec.get("initContainers"), VALIDATION
    )
    if init is None:
        return
    tproxy = mesh_tproxy or (
        ((merged.get("metadata") or {}).get("annotations") or {}).get(names.INTERCEPTION_MODE)
        == "TPROXY"
    )
    if tproxy and uid is not None:
        proxy = _find(merged_spec.get("containers"), PROXY) or _find(
            merged_spec.get("initContainers"), PROXY
        )
        if proxy is not None:
            proxy.setdefault("securityContext", {})["runAsUser"] = 0
    if not tproxy and init.get("name") == VALIDATION:
        init_security = init.setdefault("securityContext", {})
        if uid is not None:
            init_security["runAsUser"] = uid
        if gid is not None:
            init_security["runAsGroup"] = gid
    if not uid:
        return
    args = init.get("args") or []
    for index, arg in enumerate(args[:-1]):
        if arg == "-u":
            args[index + 1] = str(uid)
            return


def _scrape(annotations: Mapping[str, str]) -> bool:
    for key, value in annotations.items():
        if _sanitize(key) == "prometheus_io_scrape":
            try:
                return parse_go_bool(value)
            except ValueError:
                continue
    return True


def _apply_prometheus_merge(pod: Json, settings: InjectSettings) -> None:
    annotations: dict[str, str] = pod["metadata"]["annotations"]
    if not _scrape(annotations):
        return
    if names.PROMETHEUS_MERGE in annotations:
        enabled = parse_go_bool(annotations[names.PROMETHEUS_MERGE])
    else:
        enabled = settings.mesh.enable_prometheus_merge is not False
    if not enabled:
        return
    target = str(settings.status_port)
    if _prometheus_port(annotations) == target:
        return
    scrape: dict[str, Any] = {"scrape": "", "path": "", "port": ""}
    targets: list[dict[str, str]] = []
    for key, value in annotations.items():
        field = {
            "prometheus_io_port": "port",
            "prometheus_io_scrape": "scrape",
            "prometheus_io_path": "path",
        }.get(_sanitize(key))
        if field:
            scrape[field] = value
        elif _sanitize(key) == "prometheus_istio_io_scrape_targets":
            targets = _scrape_targets(value)
    if targets:
        scrape["port"], scrape["path"] = targets[0]["port"], targets[0]["path"]
        scrape["targets"] = targets
        for item in targets:
            _check_scrape_port(
                item["port"],
                target,
                "annotation prometheus.istio.io/scrape-targets",
                "scrape targets",
                "target port",
            )
    elif scrape["port"]:
        _check_scrape_port(
            scrape["port"], target, "annotation prometheus.io/port", "scrape configuration", "port"
        )
    proxy = _sidecar(pod)
    if proxy is not None and any(scrape.values()):
        proxy.setdefault("env", []).append(
            {
                "name": "ISTIO_PROMETHEUS_ANNOTATIONS",
                "value": json.dumps(scrape, separators=(",", ":")),
            }
        )
    for key in [k for k in annotations if _sanitize(k) in _PROMETHEUS]:
        del annotations[key]
    annotations["prometheus.io/port"] = target
    annotations["prometheus.io/path"] = "/stats/prometheus"
    annotations["prometheus.io/scrape"] = "true"


def _scrape_targets(raw: str) -> list[dict[str, str]]:
    # istiod logs and ignores a malformed list; so does this
    targets = []
    for raw_entry in raw.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        port, _, path = entry.partition(":")
        if not port.strip():
            return []
        targets.append({"port": port.strip(), "path": path.strip() or "/metrics"})
    return targets


def _check_scrape_port(text: str, agent: str, source: str, what: str, label: str) -> None:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise InjectionError(source, f"invalid prometheus {what}: invalid {label} {text!r}")
    canon = str(int(text))
    if canon == agent:
        raise InjectionError(
            source, f"invalid prometheus {what}: {label} {text} conflicts with agent port"
        )
    if canon in _RESERVED_PORTS:
        raise InjectionError(
            source,
            f"invalid prometheus {what}: {label} {text} is reserved for Istio "
            f"({_RESERVED_PORTS[canon]}) and cannot be scraped",
        )


def _sidecar(pod: Json) -> Json | None:
    spec = pod.get("spec") or {}
    return _find(spec.get("containers"), PROXY) or _find(spec.get("initContainers"), PROXY)


def _apply_secure_prometheus(pod: Json) -> None:
    annotations: dict[str, str] = pod["metadata"]["annotations"]
    if any(_sanitize(k) == "prometheus_istio_io_secure_port" for k in annotations):
        return
    proxy = _sidecar(pod)
    for env in (proxy or {}).get("env") or []:
        if env.get("name") == "ENVOY_SECURE_MERGED_METRICS_PORT" and env.get("value") not in (
            None,
            "",
            "0",
        ):
            annotations["prometheus.istio.io/secure-port"] = env["value"]
            return


def _apply_rewrite(pod: Json, settings: InjectSettings, previously_injected: bool) -> None:
    proxy = _sidecar(pod)
    if proxy is None:
        return
    annotations: dict[str, str] = pod["metadata"]["annotations"]
    rewrite = settings.values.get("sidecarInjectorWebhook.rewriteAppHTTPProbe") is not False
    if names.REWRITE_PROBERS in annotations:
        with contextlib.suppress(ValueError):  # istiod ignores a value that is no boolean
            rewrite = parse_go_bool(annotations[names.REWRITE_PROBERS])
    if not rewrite:
        return
    probers = app_probers(pod["spec"], settings.status_port)
    if probers:
        env = proxy.setdefault("env", [])
        current = next((e for e in env if e.get("name") == KUBE_APP_PROBERS), None)
        if previously_injected and current is not None:
            current["value"] = merge_probers(str(current.get("value", "")), probers)
        else:
            env.append({"name": KUBE_APP_PROBERS, "value": probers})
    port = settings.status_port
    if names.STATUS_PORT in annotations:
        port = int(annotations[names.STATUS_PORT].strip())
    rewrite_probes(pod["spec"], port)


def _move(containers: list[Json], name: str, *, first: bool) -> list[Json]:
    match = _find(containers, name)
    if match is None:
        return containers
    rest = [c for c in containers if c.get("name") != name]
    return [match, *rest] if first else [*rest, match]


def _reorder(pod: Json, hold: bool) -> None:
    spec = pod["spec"]
    if spec.get("containers") is not None:
        spec["containers"] = _move(spec["containers"], PROXY, first=hold)
    init = spec.get("initContainers")
    if init is None:
        return
    if _find(init, PROXY) is not None:
        for name in (CORE_DUMP, PROXY, VALIDATION, INIT):
            init = _move(init, name, first=True)
    else:
        init = _move(init, VALIDATION, first=True)
        init = _move(init, INIT, first=False)
        init = _move(init, CORE_DUMP, first=False)
    spec["initContainers"] = init


def _status_annotation(template_spec: Mapping[str, Any], revision: str) -> str:
    def listed(group: str) -> list[str] | None:
        items = [str(i.get("name")) for i in template_spec.get(group) or []]
        return items or None

    status = {
        "initContainers": listed("initContainers"),
        "containers": listed("containers"),
        "volumes": listed("volumes"),
        "imagePullSecrets": listed("imagePullSecrets"),
        "revision": revision or "default",
    }
    return json.dumps(status, separators=(",", ":"))


def _update_cluster_env(pod: Json, proxy_env: Mapping[str, str]) -> None:
    proxy = _sidecar(pod)
    if proxy is None or not proxy_env:
        return
    kept = [e for e in proxy.get("env") or [] if e.get("name") not in proxy_env]
    proxy["env"] = kept + [{"name": key, "value": proxy_env[key]} for key in sorted(proxy_env)]


def inject_pod(
    pod: Mapping[str, Any],
    settings: InjectSettings,
    *,
    workload: WorkloadRef | None = None,
    namespace: str = "",
    proxy_env: Mapping[str, str] | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> InjectionResult:
    """Inject the sidecar into ``pod`` (Kubernetes JSON); the input is not changed.

    ``workload`` names the owner (default: found from the Pod's controller reference);
    ``namespace`` is the request's namespace, for a Pod that does not name one;
    ``proxy_env`` are the environment variables a webhook path sets
    (``/inject/cluster/c1/net/n1``). With ``namespace_labels`` (the labels of the Pod's
    namespace) the Pod is injected only when Istio's webhook selectors would send it here
    (``istio-injection``, ``istio.io/rev``; see :mod:`istio_sdk.proxy.inject.selection`).
    Raises :class:`InjectionError` for a malformed Pod or an annotation whose value istiod
    refuses.
    """
    original = copy_json(_check_pod(pod))
    meta = original.setdefault("metadata", {})
    # managedFields can be huge and never change what is injected
    meta.pop("managedFields", None)
    namespace = meta.get("namespace") or namespace
    skip = injection_required(original, settings, namespace)
    if skip is None and namespace_labels is not None:
        selected = webhook_selects(
            namespace_labels,
            meta.get("labels") or {},
            revision=settings.revision,
            namespaces_by_default=settings.policy == "enabled"
            and bool(settings.values.get("sidecarInjectorWebhook.enableNamespacesByDefault")),
            namespace=namespace,
        )
        if not selected:
            skip = "neither the namespace's nor the Pod's labels select this injector"
    if skip is not None:
        return InjectionResult(pod=copy_json(dict(pod)), skipped=skip)
    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    validate_annotations(annotations)
    ref = workload or attrs.evolve(workload_of_pod(original), namespace=namespace)
    proxy_env = dict(proxy_env or {})
    cluster = proxy_env.get("ISTIO_META_CLUSTER_ID") or settings.values.text(
        "global.multiCluster.clusterName"
    )
    network = proxy_env.get("ISTIO_META_NETWORK") or settings.values.text("global.network")
    labels = meta.get("labels") or {}
    network = labels.get("topology.istio.io/network", network)
    if cluster:
        proxy_env["ISTIO_META_CLUSTER_ID"] = cluster
    if network:
        proxy_env["ISTIO_META_NETWORK"] = network

    stripped = _reinsert_overrides(_strip(original, settings))
    stripped_meta = stripped.get("metadata") or {}
    stripped_annotations = dict(stripped_meta.get("annotations") or {})
    proxy_config = _proxy_config(settings, stripped_annotations)
    image = settings.values.text("global.proxy.image") or "proxyv2"
    init_image = settings.values.text("global.proxy_init.image") or "proxyv2"
    image_type = proxy_config.image.image_type if proxy_config.image is not None else ""
    native = _native(settings, annotations)
    data = TemplateInput(
        annotations=stripped_annotations,
        labels=dict(stripped_meta.get("labels") or {}),
        spec=stripped.get("spec") or {},
        deploy_name=ref.name,
        deploy_namespace=ref.namespace,
        api_version=ref.api_version,
        kind=ref.kind,
        proxy_config=proxy_config,
        settings=settings,
        native_sidecar=native,
        proxy_image=_image_url(settings, image, image_type, stripped_annotations),
        proxy_init_image=_image_url(settings, init_image, "", stripped_annotations),
    )
    merged: Json = original
    template: Json = {}
    for name in _templates(stripped_annotations, settings):
        rendered = TEMPLATES[name](data)
        template = merge_pod(template, rendered)
        template_spec = rendered.get("spec") or {}
        if native and _find(template_spec.get("initContainers"), PROXY) is not None:
            merged = _move_proxy_to_init(merged)
        merged = merge_pod(merged, rendered)
    merged = _reapply_overrides(merged, original, template, tproxy=_mode_is_tproxy(proxy_config))

    merged.setdefault("metadata", {}).setdefault("annotations", {})
    merged["metadata"].setdefault("labels", {})
    _update_cluster_env(merged, proxy_env)
    _apply_prometheus_merge(merged, settings)
    _apply_secure_prometheus(merged)
    _apply_rewrite(merged, settings, names.STATUS in annotations)
    if "ISTIO_META_NETWORK" in proxy_env:
        merged["metadata"]["labels"]["topology.istio.io/network"] = proxy_env["ISTIO_META_NETWORK"]
    merged["metadata"]["annotations"][names.STATUS] = _status_annotation(
        template.get("spec") or {}, settings.revision
    )
    injected = settings.values.get("sidecarInjectorWebhook.injectedAnnotations")
    if isinstance(injected, Mapping):
        for key, value in injected.items():
            merged["metadata"]["annotations"][str(key)] = str(value)
    hold_config = _proxy_config(settings, annotations).hold_application_until_proxy_starts
    hold = bool(hold_config) or bool(
        settings.values.get("global.proxy.holdApplicationUntilProxyStarts")
    )
    _reorder(merged, hold)
    _drop_empty_env_values(merged)
    for group in ("containers", "initContainers"):
        for container in merged["spec"].get(group) or []:
            canonical_resources(container, f"container {container.get('name')}")
    return InjectionResult(pod=merged)


def _drop_empty_env_values(pod: Json) -> None:
    # Kubernetes omits an empty env value (ISTIO_META_APP_CONTAINERS of a Pod with no app)
    for group in ("containers", "initContainers"):
        for container in pod["spec"].get(group) or []:
            for env in container.get("env") or []:
                if isinstance(env, dict) and env.get("value") == "":
                    del env["value"]


_TEMPLATE_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "ReplicationController",
    "DeploymentConfig",
}


def inject_object(obj: Mapping[str, Any], settings: InjectSettings) -> tuple[Json, list[str]]:
    """Inject a Pod, a workload's Pod template or every item of a List.

    Returns the object (injected where it holds a Pod) and the warnings istioctl prints for
    what it skipped (``Skipping injection because Deployment "ns/name" has host networking
    enabled``). Objects of other kinds come back unchanged.
    """
    if not isinstance(obj, dict):
        raise InjectionError("object", f"expected a mapping, got {describe_json(obj)}")
    out = copy_json(obj)
    kind = out.get("kind")
    warnings: list[str] = []
    if kind == "List":
        items = out.get("items")
        if items is None:
            return out, warnings
        if not isinstance(items, list):
            raise InjectionError("items", f"expected a list, got {describe_json(items)}")
        for index, item in enumerate(items):
            try:
                items[index], more = inject_object(item, settings)
            except InjectionError as exc:
                raise InjectionError(
                    f"items[{index}]" + (f": {exc.source}" if exc.source else ""), exc.problem
                ) from None
            warnings += more
        return out, warnings
    meta = _mapping(out.get("metadata"), "metadata")
    api_version = str(out.get("apiVersion") or "")
    if kind == "Pod":
        holder, where = out, ""
        ref: WorkloadRef | None = None
    elif kind == "CronJob":
        job = _mapping(_mapping(out.get("spec"), "spec").get("jobTemplate"), "spec.jobTemplate")
        template = _template(
            _mapping(job.get("spec"), "spec.jobTemplate.spec"), "spec.jobTemplate.spec.template"
        )
        # istioctl injects the job template's metadata and the Pod template's spec
        holder = {
            "metadata": _mapping(job.get("metadata"), "spec.jobTemplate.metadata"),
            "spec": template.get("spec"),
        }
        ref = WorkloadRef(
            str(meta.get("name") or ""), str(meta.get("namespace") or ""), api_version, "CronJob"
        )
        result = _inject_holder(holder, settings, ref, "spec.jobTemplate.", warnings)
        job["metadata"] = result.get("metadata") or {}
        template["spec"] = result.get("spec") or {}
        return out, warnings
    elif kind in _TEMPLATE_KINDS:
        holder, where = (
            _template(_mapping(out.get("spec"), "spec"), "spec.template"),
            "spec.template.",
        )
        ref = WorkloadRef(
            str(meta.get("name") or ""), str(meta.get("namespace") or ""), api_version, str(kind)
        )
    else:
        return out, warnings
    result = _inject_holder(holder, settings, ref, where, warnings)
    holder["metadata"] = result.get("metadata") or {}
    holder["spec"] = result.get("spec") or {}
    return out, warnings


def _template(spec: Json, where: str) -> Json:
    template = spec.get("template")
    if template is None:
        raise InjectionError(where, "spec.template is required")
    if not isinstance(template, dict):
        raise InjectionError(where, f"expected a mapping, got {describe_json(template)}")
    return template


def _inject_holder(
    holder: Json,
    settings: InjectSettings,
    ref: WorkloadRef | None,
    where: str,
    warnings: list[str],
) -> Json:
    pod = {"metadata": holder.get("metadata") or {}, "spec": holder.get("spec") or {}}
    if ref is None:
        ref = workload_of_pod(pod)
    meta = pod["metadata"] if isinstance(pod["metadata"], dict) else {}
    name = meta.get("name") or ref.name
    full = f"{ref.namespace}/{name}" if ref.namespace else str(name)
    try:
        result = inject_pod(
            pod, settings, workload=ref, namespace=str(meta.get("namespace") or ref.namespace)
        )
    except InjectionError as exc:
        raise InjectionError(
            f"{where.rstrip('.')}: {exc.source}" if exc.source else where.rstrip("."), exc.problem
        ) from None
    if result.skipped is not None:
        what = (
            "host networking enabled"
            if "host networking" in result.skipped
            else "sidecar injection disabled"
        )
        warnings.append(f'===> Skipping injection because {ref.kind} "{full}" has {what}')
    return result.pod

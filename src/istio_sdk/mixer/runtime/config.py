"""Mixer's configuration as a compiled, immutable routing snapshot (pure; no I/O).

:func:`build_routing` reads the ``config.istio.io/v1alpha2`` resources of a config store
(``rule``, ``handler``, ``instance``, ``attributemanifest``, and the legacy kinds named after an
adapter, ``memquota``, or a template, ``quota``) the way Istio 1.3's Mixer does
(mixer/pkg/runtime/config):

- names are fully qualified as ``name.kind.namespace`` (``requestcount.instance.istio-system``,
  or ``requestcount.quota.istio-system`` for a legacy kind);
- a rule's references are resolved against its namespace: ``x`` is ``x.<kind>.<ns>``; ``a.b``
  is ``a.b.<ns>`` when that exists, else ``a.<kind>.b``;
- the manifest is every ``attributemanifest`` of every namespace merged (Istio 1.3's default
  vocabulary when the store holds none);
- rules of the default config namespace (``istio-system``) apply to every request, others only
  to requests whose identity namespace is theirs (see :mod:`.dispatch`).

Whatever cannot be used (an expression that does not parse or type-check, an unknown adapter or
template, a reference to nothing) becomes a :class:`ConfigProblem` and is left out; the rest of
the configuration keeps working.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import betterproto2

from istio_sdk.api.google.protobuf import Struct
from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.config import Resource
from istio_sdk.mixer.adapters import ADAPTERS
from istio_sdk.mixer.errors import ExpressionError, InstanceParamsError
from istio_sdk.mixer.expr import Expression, compile
from istio_sdk.mixer.manifests import DEFAULT_MANIFEST, merge_manifests
from istio_sdk.mixer.runtime.instances import InstanceBuilder, compile_instance
from istio_sdk.mixer.templates import TEMPLATES
from istio_sdk.protojson import ProtoJsonError, message_to_json

__all__ = [
    "DEFAULT_CONFIG_NAMESPACE",
    "LEGACY_ADAPTER_KINDS",
    "LEGACY_TEMPLATE_KINDS",
    "CompiledAction",
    "CompiledHeaderOperation",
    "CompiledRule",
    "ConfigProblem",
    "HandlerConfig",
    "RoutingConfig",
    "build_routing",
]

DEFAULT_CONFIG_NAMESPACE = "istio-system"
"""Mixer's ``--configDefaultNamespace``: rules here apply to every namespace."""

LEGACY_ADAPTER_KINDS = frozenset(
    {
        "bypass", "circonus", "cloudwatch", "denier", "dogstatsd", "fluentd", "kubernetesenv",
        "listchecker", "memquota", "noop", "opa", "prometheus", "redisquota", "signalfx",
        "solarwinds", "stackdriver", "statsd", "stdio", "zipkin",
    }
)  # fmt: skip
"""Kinds that are a handler of the adapter of the same name (1.3 still read them)."""

LEGACY_TEMPLATE_KINDS = frozenset(
    {
        "apikey", "authorization", "checknothing", "edge", "kubernetes", "listentry", "logentry",
        "metric", "quota", "reportnothing", "tracespan",
    }
)  # fmt: skip
"""Kinds that are an instance of the template of the same name."""

_MIXER_KINDS = frozenset({"rule", "handler", "instance", "attributemanifest"})


@attrs.frozen
class ConfigProblem:
    """One piece of configuration left out, and why (``name`` is the fully qualified name)."""

    kind: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.message}"


@attrs.frozen
class HandlerConfig:
    """A handler to build: its adapter and params (JSON values); ``key`` says when it changed."""

    name: str
    adapter: str
    params: Mapping[str, Any]
    key: str


@attrs.frozen
class CompiledAction:
    """One action of a rule: a handler and the instances it receives."""

    handler: str
    instances: tuple[InstanceBuilder, ...]


@attrs.frozen
class CompiledHeaderOperation:
    """A rule's header operation: a header name, value expressions, REPLACE/REMOVE/APPEND
    (``HeaderOperation.Operation`` numbers: 0, 1, 2)."""

    name: str
    values: tuple[Expression, ...]
    operation: int


@attrs.frozen
class CompiledRule:
    """A rule whose match compiled (``match`` None: unconditional)."""

    name: str
    namespace: str
    match: Expression | None
    actions: tuple[CompiledAction, ...]
    request_headers: tuple[CompiledHeaderOperation, ...] = ()
    response_headers: tuple[CompiledHeaderOperation, ...] = ()


@attrs.frozen
class RoutingConfig:
    """The compiled configuration: what Check and Report route through.

    ``rules_for(namespace)`` is the default namespace's rules followed by that namespace's.
    """

    default_namespace: str
    manifest: Mapping[str, ValueType]
    handlers: Mapping[str, HandlerConfig]
    rules: tuple[CompiledRule, ...]
    problems: tuple[ConfigProblem, ...]
    revision: int = 0
    _by_namespace: Mapping[str, tuple[CompiledRule, ...]] = attrs.field(
        init=False, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        grouped: dict[str, list[CompiledRule]] = {}
        for rule in self.rules:
            grouped.setdefault(rule.namespace, []).append(rule)
        defaults = tuple(grouped.pop(self.default_namespace, ()))
        table = {ns: defaults + tuple(rules) for ns, rules in grouped.items()}
        table[self.default_namespace] = defaults
        object.__setattr__(self, "_by_namespace", MappingProxyType(table))

    def rules_for(self, namespace: str | None) -> tuple[CompiledRule, ...]:
        """The rules that apply to a request whose identity namespace is ``namespace``."""
        found = self._by_namespace.get(namespace) if namespace else None
        return found if found is not None else self._by_namespace[self.default_namespace]


def _json_numbers(value: Any) -> Any:
    """Struct numbers are doubles; integral ones become ints again, as the JSON text Go
    writes for them (``7``, not ``7.0``) reads as an integer or an enum number."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, Mapping):
        return {key: _json_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_numbers(item) for item in value]
    return value


def _plain_spec(spec: object) -> dict[str, Any] | None:
    """A resource spec (a Struct, a generated message or a mapping) as JSON values."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return dict(_json_numbers(spec))
    if isinstance(spec, betterproto2.Message):
        try:
            value = message_to_json(spec)
        except ProtoJsonError:
            return None
        return _json_numbers(value) if isinstance(value, dict) else None
    return None


def _params(spec: Any) -> dict[str, Any]:
    params = getattr(spec, "params", None)
    if isinstance(params, Struct):
        return _plain_spec(params) or {}
    if isinstance(params, Mapping):
        return dict(_json_numbers(params))
    return {}


def _fqn(resource: Resource, kind: str) -> str:
    return f"{resource.metadata.name}.{kind}.{resource.metadata.namespace}"


def _resolve(reference: str, kind: str, namespace: str, known: Mapping[str, object]) -> str:
    parts = reference.split(".")
    if len(parts) == 1:
        return f"{reference}.{kind}.{namespace}"
    if len(parts) == 2:
        local = f"{reference}.{namespace}"
        return local if local in known else f"{parts[0]}.{kind}.{parts[1]}"
    return reference


def _manifest(resources: Iterable[Resource], problems: list[ConfigProblem]) -> Mapping[str, Any]:
    found: list[dict[str, ValueType]] = []
    for resource in resources:
        attributes = getattr(resource.spec, "attributes", None) or {}
        vocabulary: dict[str, ValueType] = {}
        for name, info in attributes.items():
            try:
                value_type = ValueType(getattr(info, "value_type", 0))
            except ValueError:
                value_type = ValueType.VALUE_TYPE_UNSPECIFIED
            if value_type == ValueType.VALUE_TYPE_UNSPECIFIED:
                problems.append(
                    ConfigProblem(
                        "attributemanifest",
                        _fqn(resource, "attributemanifest"),
                        f"attribute {name!r} has no value type",
                    )
                )
                continue
            vocabulary[name] = value_type
        found.append(vocabulary)
    return merge_manifests(*found) if found else DEFAULT_MANIFEST


def _handler_configs(
    resources: Iterable[Resource], problems: list[ConfigProblem]
) -> dict[str, HandlerConfig]:
    handlers: dict[str, HandlerConfig] = {}
    for resource in resources:
        if resource.kind == "handler":
            name = _fqn(resource, "handler")
            adapter = getattr(resource.spec, "compiled_adapter", "") or getattr(
                resource.spec, "adapter", ""
            )
            params = _params(resource.spec)
        else:
            name = _fqn(resource, resource.kind)
            adapter = resource.kind
            plain = _plain_spec(resource.spec)
            if plain is None:
                problems.append(ConfigProblem(resource.kind, name, "spec is not a JSON object"))
                continue
            params = plain
        if adapter not in ADAPTERS:
            known = ", ".join(sorted(ADAPTERS))
            problems.append(
                ConfigProblem(
                    "handler", name, f"adapter {adapter!r} is not available (known: {known})"
                )
            )
            continue
        key = json.dumps([adapter, params], sort_keys=True, default=str)
        handlers[name] = HandlerConfig(name, adapter, MappingProxyType(params), key)
    return handlers


def _instances(
    resources: Iterable[Resource],
    manifest: Mapping[str, ValueType],
    problems: list[ConfigProblem],
) -> dict[str, InstanceBuilder]:
    instances: dict[str, InstanceBuilder] = {}
    for resource in resources:
        if resource.kind == "instance":
            name = _fqn(resource, "instance")
            template = getattr(resource.spec, "compiled_template", "") or getattr(
                resource.spec, "template", ""
            )
            params: dict[str, Any] | None = _params(resource.spec)
        else:
            name = _fqn(resource, resource.kind)
            template = resource.kind
            params = _plain_spec(resource.spec)
        if params is None:
            problems.append(ConfigProblem("instance", name, "spec is not a JSON object"))
            continue
        if template not in TEMPLATES:
            known = ", ".join(sorted(TEMPLATES))
            problems.append(
                ConfigProblem(
                    "instance", name, f"template {template!r} is not available (known: {known})"
                )
            )
            continue
        try:
            instances[name] = compile_instance(name, template, params, manifest)
        except (ExpressionError, InstanceParamsError) as exc:
            problems.append(ConfigProblem("instance", name, str(exc)))
    return instances


def _compile_match(text: str, manifest: Mapping[str, ValueType]) -> Expression | None:
    text = text.strip()
    if not text or text == "true":
        return None
    expression = compile(text, manifest)
    if expression.result_type != ValueType.BOOL:
        raise ExpressionError(
            f"match expression {text!r} is of type {expression.result_type.name}, not BOOL"
        )
    return expression


def _header_operations(
    operations: Iterable[Any], manifest: Mapping[str, ValueType], field: str
) -> tuple[CompiledHeaderOperation, ...]:
    compiled = []
    for position, operation in enumerate(operations):
        values = []
        for index, text in enumerate(operation.values):
            try:
                values.append(compile(text, manifest))
            except ExpressionError as exc:
                raise ExpressionError(f"{field}[{position}].values[{index}]: {exc}") from None
        compiled.append(
            CompiledHeaderOperation(operation.name, tuple(values), int(operation.operation))
        )
    return tuple(compiled)


def _rules(
    resources: Iterable[Resource],
    manifest: Mapping[str, ValueType],
    handlers: Mapping[str, HandlerConfig],
    instances: Mapping[str, InstanceBuilder],
    problems: list[ConfigProblem],
) -> list[CompiledRule]:
    rules: list[CompiledRule] = []
    for resource in resources:
        name = _fqn(resource, "rule")
        namespace = resource.metadata.namespace
        spec = resource.spec
        try:
            match = _compile_match(getattr(spec, "match", "") or "", manifest)
        except ExpressionError as exc:
            problems.append(ConfigProblem("rule", name, f"match: {exc}"))
            continue
        try:
            request_headers = _header_operations(
                getattr(spec, "request_header_operations", None) or (),
                manifest,
                "requestHeaderOperations",
            )
            response_headers = _header_operations(
                getattr(spec, "response_header_operations", None) or (),
                manifest,
                "responseHeaderOperations",
            )
        except ExpressionError as exc:
            problems.append(ConfigProblem("rule", name, str(exc)))
            continue
        actions: list[CompiledAction] = []
        for position, action in enumerate(getattr(spec, "actions", None) or ()):
            handler = _resolve(action.handler, "handler", namespace, handlers)
            config = handlers.get(handler)
            if config is None:
                problems.append(
                    ConfigProblem("rule", name, f"actions[{position}]: no handler {handler}")
                )
                continue
            supported = ADAPTERS[config.adapter].templates
            chosen: list[InstanceBuilder] = []
            for reference in action.instances:
                instance_name = _resolve(reference, "instance", namespace, instances)
                builder = instances.get(instance_name)
                if builder is None:
                    problems.append(
                        ConfigProblem(
                            "rule", name, f"actions[{position}]: no instance {instance_name}"
                        )
                    )
                elif builder.template not in supported:
                    problems.append(
                        ConfigProblem(
                            "rule",
                            name,
                            f"actions[{position}]: handler {handler} (adapter "
                            f"{config.adapter}) does not handle template {builder.template} "
                            f"of {instance_name}",
                        )
                    )
                else:
                    chosen.append(builder)
            if chosen:
                actions.append(CompiledAction(handler, tuple(chosen)))
        if not actions and not (request_headers or response_headers):
            problems.append(ConfigProblem("rule", name, "no usable action; the rule is skipped"))
            continue
        rules.append(
            CompiledRule(name, namespace, match, tuple(actions), request_headers, response_headers)
        )
    return rules


def build_routing(
    resources: Iterable[Resource],
    *,
    default_namespace: str = DEFAULT_CONFIG_NAMESPACE,
    revision: int = 0,
) -> RoutingConfig:
    """The routing snapshot of ``resources`` (any kinds; the Mixer ones are read)."""
    by_kind: dict[str, list[Resource]] = {}
    for resource in resources:
        kind = resource.kind
        if kind in _MIXER_KINDS or kind in LEGACY_ADAPTER_KINDS or kind in LEGACY_TEMPLATE_KINDS:
            by_kind.setdefault(kind, []).append(resource)
    problems: list[ConfigProblem] = []
    manifest = _manifest(by_kind.get("attributemanifest", ()), problems)
    handler_resources = by_kind.get("handler", []) + [
        r for kind in sorted(LEGACY_ADAPTER_KINDS) for r in by_kind.get(kind, ())
    ]
    instance_resources = by_kind.get("instance", []) + [
        r for kind in sorted(LEGACY_TEMPLATE_KINDS) for r in by_kind.get(kind, ())
    ]
    handlers = _handler_configs(handler_resources, problems)
    instances = _instances(instance_resources, manifest, problems)
    rules = _rules(by_kind.get("rule", ()), manifest, handlers, instances, problems)
    used = {action.handler for rule in rules for action in rule.actions}
    return RoutingConfig(
        default_namespace=default_namespace,
        manifest=manifest,
        handlers=MappingProxyType({n: h for n, h in handlers.items() if n in used}),
        rules=tuple(rules),
        problems=tuple(problems),
        revision=revision,
    )

"""``validate``: schema-level checks that collect every problem instead of stopping at one.

On top of what loading checks (YAML syntax, known kinds and versions, metadata, unknown
fields, value types, enum names), it reports fields Istio marks REQUIRED
(``api/_field_behavior.py``, generated from the protos), Kubernetes name rules, and the
structural rules of Istio's CRD schemas (``crd_rules.json``: ranges, lengths, patterns, sizes).
Kubernetes kinds get their required fields and, for the Gateway API, their CRD's rules
(``_kube``). Istio kinds then get Istio's own semantic rules (``semantic``), whose warnings are
problems with ``level="warning"``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Iterator
from types import EllipsisType

import betterproto2

from istio_sdk.config import semantic
from istio_sdk.config._crd_rules import check as check_schema
from istio_sdk.config._crd_rules import rules_for
from istio_sdk.config._errors import ConfigError, Problem
from istio_sdk.config._io import Source, load_leniently, read_source
from istio_sdk.config._limits import DEFAULT_LIMITS, LoadLimits
from istio_sdk.config._resource import Resource
from istio_sdk.config._yaml import JsonValue, join_index, join_key
from istio_sdk.config.semantic import Finding, Level

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _json_name(attribute: str) -> str:
    """protoc's JSON name for a field (betterproto2 adds "_" to Python keywords)."""
    name = attribute.rstrip("_") if attribute.endswith("_") else attribute
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _full_name(cls: type[betterproto2.Message]) -> str:
    from istio_sdk.api.message_pool import default_message_pool

    url: str = default_message_pool.type_to_url.get(cls, "")
    return url.rpartition("/")[2]


def _unset(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, list | dict | str | bytes):
        return not value
    return isinstance(value, int | float) and value == 0


def missing_required(message: betterproto2.Message, path: str) -> Iterator[str]:
    """Paths of REQUIRED fields left unset anywhere inside ``message``."""
    from istio_sdk.api._field_behavior import REQUIRED_FIELDS

    for attribute, json_name in REQUIRED_FIELDS.get(_full_name(type(message)), ()):
        if _unset(getattr(message, attribute, None)):
            yield join_key(path, json_name)
    for field in dataclasses.fields(message):  # type: ignore[arg-type]
        value = getattr(message, field.name)
        child = join_key(path, _json_name(field.name))
        if isinstance(value, betterproto2.Message):
            yield from missing_required(value, child)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, betterproto2.Message):
                    yield from missing_required(item, join_index(child, i))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, betterproto2.Message):
                    yield from missing_required(item, join_key(child, str(key)))


def check_resource(
    resource: Resource, spec_json: JsonValue | EllipsisType = ..., *, cel: bool = True
) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for every rule ``resource`` breaks beyond what loading checks.

    The CRD rules run on ``spec_json``, the spec as the user wrote it (None: no spec written,
    so no spec rules run, as in the kube-apiserver), when given; otherwise on the proto3 JSON
    form of ``resource.spec``. For a Kubernetes kind, ``spec_json`` is the whole object as
    written, checked against the kind's model or CRD schema (see ``_kube``).
    """
    meta = resource.metadata
    # fullmatch: with match(), "$" would also accept a name ending in a newline.
    if meta.name and (len(meta.name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(meta.name)):
        yield (
            "metadata.name",
            f"invalid name {meta.name!r}: must be a lowercase RFC 1123 subdomain "
            "(a-z, 0-9, '-', '.'; at most 253 characters)",
        )
    if meta.namespace and (
        len(meta.namespace) > 63 or not _DNS1123_LABEL.fullmatch(meta.namespace)
    ):
        yield (
            "metadata.namespace",
            f"invalid namespace {meta.namespace!r}: must be a lowercase RFC 1123 label "
            "(a-z, 0-9, '-'; at most 63 characters)",
        )
    if resource.kubernetes:
        from istio_sdk.config._kube import body_problems, body_to_json

        body = spec_json if isinstance(spec_json, dict) else body_to_json(resource.spec)
        yield from body_problems(resource.info, resource.version, body)
        return
    for path in missing_required(resource.spec, "spec"):
        yield path, "missing required field"
    schema = rules_for(resource.api_version, resource.kind)
    if schema is not None:
        from istio_sdk.protojson import JsonSerializeError, message_to_json

        if spec_json is ...:
            try:
                spec_json = message_to_json(resource.spec)
            except JsonSerializeError as exc:  # e.g. an out-of-range Duration set from Python
                yield (f"spec.{exc.path}" if exc.path else "spec"), exc.problem
                return
        yield from check_schema(schema, spec_json, "spec", cel=cel)


def _problems_of(
    resource: Resource,
    *,
    source: str,
    index: int | None,
    prefix: str = "",
    line_of: Callable[[str], int | None] | None = None,
    spec_json: JsonValue | EllipsisType = ...,
    semantic_rules: bool = True,
    cel: bool = True,
) -> Iterator[Problem]:
    for path, message, level in _all_checks(
        resource, spec_json, semantic_rules=semantic_rules, cel=cel
    ):
        full = f"{prefix}.{path}" if prefix else path
        yield Problem(
            message=message,
            source=source,
            index=index,
            kind=resource.kind,
            namespace=resource.namespace,
            name=resource.name,
            path=full,
            line=None if line_of is None else line_of(full),
            level=level,
        )


def _all_checks(
    resource: Resource, spec_json: JsonValue | EllipsisType, *, semantic_rules: bool, cel: bool
) -> Iterator[tuple[str, str, Level]]:
    said: set[tuple[str, str]] = set()
    for path, message in check_resource(resource, spec_json, cel=cel):
        said.add((path, message))
        yield path, message, "error"
    if semantic_rules and not resource.kubernetes:
        # Where the CRD and Istio both have a rule for a field, both messages are reported:
        # kubectl shows the first, istioctl and the webhook the second.
        for finding in semantic_findings(resource):
            if (finding.path, finding.message) not in said:
                yield finding.path, finding.message, finding.level


def semantic_findings(resource: Resource) -> list[Finding]:
    """Istio's semantic errors and warnings for an Istio resource (none for other kinds)."""
    from istio_sdk.protojson import JsonSerializeError, message_to_json

    group = resource.api_version.partition("/")[0]
    if not semantic.has_rules(group, resource.kind):
        return []
    try:
        spec = message_to_json(resource.spec)
    except JsonSerializeError:  # check_resource reports it
        return []
    meta = resource.metadata
    return semantic.check(
        group,
        resource.kind,
        spec,
        name=meta.name,
        namespace=meta.namespace,
        labels=meta.labels,
        annotations=meta.annotations,
    )


def validate_text(
    text: str, source: str, limits: LoadLimits = DEFAULT_LIMITS, *, cel: bool = True
) -> tuple[list[Resource], list[Problem]]:
    """Load what can be loaded from one file's text and collect every problem (and warning)."""
    resources: list[Resource] = []
    problems: list[Problem] = []
    for loaded in load_leniently(text, source, limits):
        if isinstance(loaded, Problem):
            problems.append(loaded)
            continue
        resource, document, value = loaded.resource, loaded.document, loaded.value
        resources.append(resource)
        written = (
            value
            if resource.kubernetes
            else (value.get("spec") if isinstance(value, dict) else None)
        )
        problems.extend(
            _problems_of(
                resource,
                source=source,
                index=document.index,
                prefix=loaded.prefix,
                line_of=document.line_of,
                spec_json=written,
                cel=cel,
            )
        )
    return resources, problems


def validate(
    resources: Resource | Iterable[Resource] | Source, *, cel: bool = True
) -> list[Problem]:
    """Check resources (or a source as :func:`load_resources` takes it) and list every problem.

    Each :class:`Problem` names the source, document index, kind/namespace/name, field path
    (``spec.http[0].route[0].destination.host``), line when known, what is wrong, and its
    ``level``: ``"error"`` (the schema's rules and Istio's semantic errors) or ``"warning"``
    (Istio's warnings, which never make a resource invalid). A resource is valid when none of
    its problems is an error. ``cel=False`` skips the CRDs' CEL rules.
    """
    if isinstance(resources, Resource):
        resources = [resources]
    if isinstance(resources, str | bytes | os.PathLike) or hasattr(resources, "read"):
        out: list[Problem] = []
        try:
            texts = read_source(resources)  # type: ignore[arg-type]
        except ConfigError as exc:  # not UTF-8, or over LoadLimits.max_bytes
            return [exc.problem]
        for name, text in texts:
            out.extend(validate_text(text, name, cel=cel)[1])
        return out
    problems: list[Problem] = []
    for resource in resources:
        if not isinstance(resource, Resource):
            raise TypeError(f"validate() takes Resources or a source, not {type(resource)}")
        problems.extend(_problems_of(resource, source="<resource>", index=None, cel=cel))
    return problems

"""``Resource`` and ``ObjectMeta``: one Istio object as users write it, and its JSON form."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import betterproto2

from istio_sdk.config._errors import (
    DocumentError,
    FieldError,
    MetadataError,
    Problem,
    UnknownApiVersionError,
    UnknownKindError,
)
from istio_sdk.config._kinds import KindInfo, find_kind, kind_for, kinds_named, split_api_version
from istio_sdk.config._yaml import JsonValue, join_index, join_key

_M = TypeVar("_M", bound=betterproto2.Message)

# ObjectMeta fields the SDK models as attributes: JSON name -> attribute name.
_META_FIELDS = {
    "name": "name",
    "namespace": "namespace",
    "generateName": "generate_name",
    "labels": "labels",
    "annotations": "annotations",
    "resourceVersion": "resource_version",
    "generation": "generation",
    "uid": "uid",
    "creationTimestamp": "creation_timestamp",
    "ownerReferences": "owner_references",
    "finalizers": "finalizers",
}
# Other Kubernetes ObjectMeta fields: accepted and kept as they are, in ObjectMeta.extra.
_META_PASSTHROUGH = frozenset(
    {"selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "clusterName"}
)
_TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


class _BadField(ValueError):
    """A metadata field problem: ``path`` and ``message`` (wrapped into MetadataError)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@attrs.frozen
class ObjectMeta:
    """Kubernetes object metadata.

    The common fields are attributes; the other fields Kubernetes defines (``managedFields``,
    ``deletionTimestamp``, ``selfLink``, ...) are kept verbatim in ``extra`` so they survive a
    load/dump round trip. Mappings are plain dicts: treat them as read-only and use
    :func:`attrs.evolve` to change a field.
    """

    name: str = ""
    namespace: str = ""
    generate_name: str = ""
    labels: dict[str, str] = attrs.field(factory=dict)
    annotations: dict[str, str] = attrs.field(factory=dict)
    resource_version: str = ""
    generation: int = 0
    uid: str = ""
    creation_timestamp: str = ""
    owner_references: tuple[dict[str, JsonValue], ...] = ()
    finalizers: tuple[str, ...] = ()
    extra: dict[str, JsonValue] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON form, leaving out unset fields."""
        out: dict[str, JsonValue] = {}
        for json_name, attr in _META_FIELDS.items():
            value = getattr(self, attr)
            if value in ("", 0, (), {}):
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[json_name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> ObjectMeta:
        """Build from the JSON form.

        Raises :class:`ValueError` naming the field (``metadata.labels.app: expected a
        string``) for unknown fields and wrong types.
        """
        kwargs: dict[str, Any] = {}
        extra: dict[str, JsonValue] = {}
        for key, item in value.items():
            path = join_key("metadata", key)
            if key in _META_PASSTHROUGH:
                extra[key] = item
                continue
            attr = _META_FIELDS.get(key)
            if attr is None:
                raise _BadField(path, f"unknown field {key!r}")
            if item is None:  # kubectl writes e.g. "creationTimestamp: null"
                continue
            if key in ("labels", "annotations"):
                kwargs[attr] = _string_map(item, path)
            elif key == "generation":
                if isinstance(item, bool) or not isinstance(item, int):
                    raise _BadField(path, f"expected an integer, got {_describe(item)}")
                kwargs[attr] = item
            elif key == "finalizers":
                kwargs[attr] = tuple(_string_list(item, path))
            elif key == "ownerReferences":
                if not isinstance(item, list):
                    raise _BadField(path, f"expected a list, got {_describe(item)}")
                refs = []
                for i, ref in enumerate(item):
                    if not isinstance(ref, dict):
                        raise _BadField(
                            join_index(path, i), f"expected an object, got {_describe(ref)}"
                        )
                    refs.append(dict(ref))
                kwargs[attr] = tuple(refs)
            else:
                if not isinstance(item, str):
                    raise _BadField(path, f"expected a string, got {_describe(item)}")
                kwargs[attr] = item
        return cls(extra=extra, **kwargs)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _string_map(value: object, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _BadField(path, f"expected an object of strings, got {_describe(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _BadField(join_key(path, key), f"expected a string, got {_describe(item)}")
    return dict(value)


def _string_list(value: object, path: str) -> list[str]:
    if not isinstance(value, list):
        raise _BadField(path, f"expected a list of strings, got {_describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _BadField(join_index(path, i), f"expected a string, got {_describe(item)}")
    return list(value)


@attrs.frozen
class Resource:
    """One configuration object: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``.

    For an Istio kind ``spec`` is the generated message of the kind (e.g.
    :class:`istio_sdk.api.istio.networking.v1alpha3.VirtualService`). For a Kubernetes kind
    (``Service``, ``EndpointSlice``, ``HTTPRoute``, ...) ``spec`` is the object's *body*: its
    lightkube resource object without ``metadata`` and ``status`` (``resource.spec.spec.ports``
    for a Service, ``resource.spec.data`` for a ConfigMap; see ``_kube``). ``status`` is kept
    as the JSON value it was written as, see :meth:`typed_status`.
    """

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: betterproto2.Message | Any
    status: JsonValue = None

    @classmethod
    def new(
        cls,
        spec: betterproto2.Message | Any,
        *,
        name: str,
        namespace: str = "",
        kind: str | None = None,
        api_version: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Resource:
        """A resource around ``spec``, with the kind taken from the spec's message type.

        When several kinds share a message (``Policy``/``MeshPolicy``, ``RbacConfig``/
        ``ClusterRbacConfig``) pass ``kind``. ``api_version`` defaults to the kind's storage
        version. Raises :class:`ValueError` when the kind cannot be determined.

        ``spec`` may also be a lightkube object of a Kubernetes kind (``Service(spec=...)``):
        its own ``apiVersion`` and ``kind`` say what it is, and its ``metadata`` and
        ``status`` are left out (the resource's metadata comes from the arguments).
        """
        if not isinstance(spec, betterproto2.Message):
            from istio_sdk.config._kube import body_of

            found = find_kind(getattr(spec, "apiVersion", ""), getattr(spec, "kind", ""))
            if found is None or not found.kubernetes:
                raise ValueError(f"cannot tell the kind of a {type(spec).__name__} spec")
            info, spec = found, body_of(spec)
            api_version = api_version or spec.apiVersion
        else:
            info = _kind_of_spec(spec, kind)
        return cls(
            api_version=api_version or info.api_version,
            kind=info.kind,
            metadata=ObjectMeta(
                name=name,
                namespace=namespace,
                labels=dict(labels or {}),
                annotations=dict(annotations or {}),
            ),
            spec=spec,
        )

    @property
    def info(self) -> KindInfo:
        """The registry entry of this resource's kind (raises KeyError when unregistered)."""
        info = find_kind(self.api_version, self.kind)
        if info is None:
            raise KeyError(f"{self.api_version} {self.kind} is not a registered kind")
        return info

    @property
    def kubernetes(self) -> bool:
        """True for Kubernetes kinds (whose ``spec`` is a lightkube object body)."""
        info = find_kind(self.api_version, self.kind)
        return info is not None and info.kubernetes

    @property
    def group(self) -> str:
        return split_api_version(self.api_version)[0]

    @property
    def version(self) -> str:
        return split_api_version(self.api_version)[1]

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str, str, str]:
        """``(kind, namespace, name)``: how a :class:`ConfigStore` identifies the resource.

        The kind part is :attr:`KindInfo.store_kind`: the kind, except for the Gateway API
        ``Gateway`` (``Gateway.gateway.networking.k8s.io``), so it never replaces an Istio
        ``Gateway`` of the same name.
        """
        info = find_kind(self.api_version, self.kind)
        kind = self.kind if info is None else info.store_kind
        return (kind, self.metadata.namespace, self.metadata.name)

    def typed_status(self) -> betterproto2.Message | None:
        """``status`` parsed as the kind's typed status (``istio.meta.v1alpha1.IstioStatus``).

        None when there is no status or the kind has no typed status; raises
        :class:`FieldError` when the status does not match the type.
        """
        status_cls = self.info.status_class()
        if status_cls is None or self.status is None:
            return None
        from istio_sdk.protojson import JsonParseError, message_from_json

        try:
            return message_from_json(status_cls, self.status, path="status", lenient=True)
        except JsonParseError as exc:
            raise FieldError(
                Problem(
                    message=exc.problem,
                    kind=self.kind,
                    namespace=self.namespace,
                    name=self.name,
                    path=exc.path,
                )
            ) from exc

    def to_dict(self) -> dict[str, JsonValue]:
        """The Kubernetes JSON form: apiVersion, kind, metadata, spec and status."""
        from istio_sdk.protojson import message_to_json

        out: dict[str, JsonValue] = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": self.metadata.to_dict(),
        }
        if self.kubernetes:
            from istio_sdk.config._kube import body_to_json

            out.update(body_to_json(self.spec))
        else:
            out["spec"] = message_to_json(self.spec)
        if self.status is not None:
            out["status"] = self.status
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], *, source: str = "<dict>") -> Resource:
        """Build a resource from its Kubernetes JSON form; raises :class:`ConfigError`."""
        return resource_from_json(value, source=source, index=None)


def _kind_of_spec(spec: betterproto2.Message, kind: str | None) -> KindInfo:
    from istio_sdk.api.message_pool import default_message_pool

    url = default_message_pool.type_to_url.get(type(spec), "")
    full_name = url.rpartition("/")[2]
    if kind is not None:
        try:
            info = kind_for(kind)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from exc
        if info.spec_type != full_name:
            raise ValueError(f"kind {kind} takes a {info.spec_type} spec, not {full_name}")
        return info
    from istio_sdk.config._kinds import KINDS

    matches = [k for k in KINDS if k.spec_type == full_name]  # Istio kinds only
    if len(matches) != 1:
        names = ", ".join(k.kind for k in matches) or "none"
        raise ValueError(
            f"cannot tell the kind of a {full_name or type(spec)} spec (kinds: {names})"
        )
    return matches[0]


def resource_from_json(
    value: object,
    *,
    source: str,
    index: int | None,
    prefix: str = "",
    line_of: Callable[[str], int | None] | None = None,
) -> Resource:
    """Turn one document's JSON value into a :class:`Resource`.

    ``prefix`` is the path of the object in its document (``items[2]`` inside a List);
    ``line_of`` maps a field path to a source line. Raises a :class:`ConfigError` subclass.
    """
    context: dict[str, Any] = {"source": source, "index": index}

    def problem(message: str, path: str = "", **extra: Any) -> Problem:
        full = f"{prefix}.{path}" if prefix and path else (path or prefix)
        line = line_of(full) if line_of is not None else None
        return Problem(message=message, path=full, line=line, **context, **extra)

    if not isinstance(value, dict):
        raise DocumentError(problem(f"expected a Kubernetes object, got {_describe(value)}"))
    api_version = value.get("apiVersion")
    kind = value.get("kind")
    if not isinstance(kind, str) or not kind:
        raise DocumentError(problem("missing or invalid field: kind", "kind"))
    if not isinstance(api_version, str) or not api_version:
        raise DocumentError(problem("missing or invalid field: apiVersion", "apiVersion"))
    meta_value = value.get("metadata")
    ident: dict[str, str] = {"kind": kind}
    if isinstance(meta_value, dict):
        for key in ("namespace", "name"):
            if isinstance(meta_value.get(key), str):
                ident[key] = meta_value[key]

    info = find_kind(api_version, kind)
    if info is None:
        known = sorted({i.group for i in kinds_named(kind)})
        hint = f" (known in {', '.join(known)})" if known else ""
        raise UnknownKindError(
            problem(f"unknown kind {kind!r} in apiVersion {api_version!r}{hint}", "kind", **ident)
        )
    _group, version = split_api_version(api_version)
    if version not in info.versions:
        raise UnknownApiVersionError(
            problem(
                f"{kind} is not served as {api_version!r}; "
                f"served versions: {', '.join(info.api_versions)}",
                "apiVersion",
                **ident,
            )
        )
    if info.kubernetes:
        from istio_sdk.config._kube import structural_problems

        for path, message in structural_problems(info, version, value):
            raise FieldError(problem(message, path, **ident))
    else:
        for key in value:
            if key not in _TOP_LEVEL:
                raise FieldError(problem(f"unknown field {key!r}", join_key("", key), **ident))

    if meta_value is None:
        raise MetadataError(problem("missing field: metadata", "metadata", **ident))
    if not isinstance(meta_value, dict):
        raise MetadataError(
            problem(f"expected an object, got {_describe(meta_value)}", "metadata", **ident)
        )
    try:
        metadata = ObjectMeta.from_dict(meta_value)
    except _BadField as exc:
        raise MetadataError(problem(exc.message, exc.path, **ident)) from exc
    if not metadata.name and not metadata.generate_name:
        raise MetadataError(problem("missing field: name", "metadata.name", **ident))

    if info.kubernetes:
        from istio_sdk.config._kube import _BodyError, body_from_json

        try:
            spec = body_from_json(info, value)
        except _BodyError as exc:
            raise FieldError(problem(exc.message, exc.path, **ident)) from None
    else:
        spec = _parse_spec(info.spec_class(), value.get("spec"), problem, ident)
    return Resource(
        api_version=api_version,
        kind=kind,
        metadata=metadata,
        spec=spec,
        status=value.get("status"),
    )


def _parse_spec(spec_cls: type[_M], spec_value: object, problem: Any, ident: dict[str, str]) -> _M:
    from istio_sdk.protojson import JsonParseError, message_from_json

    if spec_value is None:
        return spec_cls()
    try:
        return message_from_json(spec_cls, spec_value, path="spec", lenient=True)
    except JsonParseError as exc:
        raise FieldError(problem(exc.problem, exc.path, **ident)) from exc

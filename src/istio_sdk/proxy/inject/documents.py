"""``istioctl kube-inject`` over text: a multi-document YAML stream in, the injected stream out.

Every document that holds a Pod (a Pod, a workload with a Pod template, a List of them) is
injected; every other document is written back as it was parsed. Documents are written in
order, each followed by ``---`` as istioctl does, keys sorted (Kubernetes' own YAML order). The
text is parsed with the config loader's limits (size, nesting, alias expansion, integer length),
so hostile input is refused with :class:`~istio_sdk.config.ConfigError` before any work.
"""

from __future__ import annotations

from typing import Any

import attrs
import yaml

from istio_sdk.config import ConfigError
from istio_sdk.config._limits import DEFAULT_LIMITS, LoadLimits
from istio_sdk.config._yaml import describe_json, parse_documents
from istio_sdk.proxy.inject._errors import InjectionError
from istio_sdk.proxy.inject.inject import inject_object
from istio_sdk.proxy.inject.settings import InjectSettings

__all__ = ["InjectedText", "inject_yaml", "load_settings", "settings_document"]


@attrs.frozen
class InjectedText:
    """The injected stream and istioctl's warnings for what was skipped."""

    text: str
    warnings: tuple[str, ...]


def _dump(value: Any) -> str:
    dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(
        yaml.dump(
            value,
            Dumper=dumper,
            sort_keys=True,
            default_flow_style=False,
            allow_unicode=True,
            width=1_000_000,
        )
    )


def inject_yaml(
    text: str,
    settings: InjectSettings,
    *,
    source: str = "<string>",
    limits: LoadLimits = DEFAULT_LIMITS,
) -> InjectedText:
    """Inject every Pod the YAML stream ``text`` holds.

    Raises :class:`ConfigError` for text that is no YAML (or breaks ``limits``) and
    :class:`InjectionError` naming the document and field for an object that cannot be
    injected.
    """
    documents = parse_documents(text, source, limits)
    parts: list[str] = []
    warnings: list[str] = []
    for document in documents:
        if document.value is None:
            continue
        where = f"{source}: document {document.index + 1}"
        if not isinstance(document.value, dict):
            raise InjectionError(
                where, f"expected a Kubernetes object, got {describe_json(document.value)}"
            )
        try:
            injected, more = inject_object(document.value, settings)
        except InjectionError as exc:
            raise InjectionError(
                f"{where}: {exc.source}" if exc.source else where, exc.problem
            ) from None
        warnings += more
        parts.append(_dump(injected) + "---\n")
    return InjectedText(text="".join(parts), warnings=tuple(warnings))


def settings_document(
    text: str, source: str, limits: LoadLimits = DEFAULT_LIMITS
) -> dict[str, Any] | None:
    """The one mapping a values or mesh config file holds (None for an empty file).

    An IstioOperator's ``spec.values`` is taken as the values, as istioctl accepts both.
    """
    try:
        documents = [d for d in parse_documents(text, source, limits) if d.value is not None]
    except ConfigError as exc:
        raise InjectionError(source, exc.problem.message) from None
    if not documents:
        return None
    if len(documents) > 1:
        raise InjectionError(source, f"expected one YAML document, found {len(documents)}")
    value = documents[0].value
    if not isinstance(value, dict):
        raise InjectionError(source, f"expected a mapping, got {describe_json(value)}")
    if value.get("kind") == "IstioOperator":
        spec = value.get("spec")
        values = spec.get("values") if isinstance(spec, dict) else None
        if not isinstance(values, dict):
            raise InjectionError(source, "an IstioOperator without spec.values")
        return values
    return value


def load_settings(
    *,
    values_text: str | None = None,
    mesh_text: str | None = None,
    revision: str = "",
    native_sidecars: bool = False,
    values_source: str = "values",
    mesh_source: str = "mesh config",
) -> InjectSettings:
    """Settings from the text of a values file and a mesh config file (both optional).

    A mesh config file may also be the ``istio`` ConfigMap's ``mesh`` key's content.
    """
    values = settings_document(values_text, values_source) if values_text else None
    mesh = settings_document(mesh_text, mesh_source) if mesh_text else None
    return InjectSettings.build(
        values=values, mesh=mesh, revision=revision, native_sidecars=native_sidecars
    )

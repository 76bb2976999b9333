"""Typed instance values for the Mixer templates the adapters handle (Istio 1.3).

An *instance* is what Mixer builds from an attribute bag for one template, by evaluating the
expressions of an ``instance`` resource; adapters receive these values. The fields are those of
istio/istio release-1.3 ``mixer/template/<name>/template.proto``; ``name`` is the instance's fully
qualified name (``requestcount.instance.istio-system``), as Go's generated ``Instance.Name``.

Field values are the Python forms of ``istio.policy.v1beta1.ValueType`` (see :data:`Value`).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from typing import ClassVar, TypeAlias

import attrs

from istio_sdk.mixer.attributes import AttributeValue

# An attribute value as templates carry it: the attribute bag's value union.
Value: TypeAlias = AttributeValue
"""An evaluated attribute value: STRING (also DNS_NAME, EMAIL_ADDRESS, URI), INT64, DOUBLE, BOOL,
bytes (IP_ADDRESS as it travels), TIMESTAMP, DURATION, IP_ADDRESS, STRING_MAP."""


class Variety(enum.Enum):
    """When Mixer calls a template's handlers (``TemplateVariety`` of the adapter model)."""

    CHECK = "check"
    REPORT = "report"
    QUOTA = "quota"


def _frozen_map(value: Mapping[str, Value] | None) -> Mapping[str, Value]:
    return dict(value or {})


@attrs.frozen
class CheckNothing:
    """``checknothing``: a check that carries no data (denier answers it)."""

    template: ClassVar[str] = "checknothing"
    variety: ClassVar[Variety] = Variety.CHECK
    name: str


@attrs.frozen
class ListEntry:
    """``listentry``: one value (a string or an IP address) to look up in a list."""

    template: ClassVar[str] = "listentry"
    variety: ClassVar[Variety] = Variety.CHECK
    name: str
    value: Value


@attrs.frozen
class Subject:
    """``authorization`` Subject: who is acting."""

    user: str = ""
    groups: str = ""
    properties: Mapping[str, Value] = attrs.field(factory=dict, converter=_frozen_map)


@attrs.frozen
class Action:
    """``authorization`` Action: what is being done, to which service."""

    namespace: str = ""
    service: str = ""
    method: str = ""
    path: str = ""
    properties: Mapping[str, Value] = attrs.field(factory=dict, converter=_frozen_map)


@attrs.frozen
class Authorization:
    """``authorization``: a subject performing an action."""

    template: ClassVar[str] = "authorization"
    variety: ClassVar[Variety] = Variety.CHECK
    name: str
    subject: Subject = attrs.field(factory=Subject)
    action: Action = attrs.field(factory=Action)


@attrs.frozen
class Quota:
    """``quota``: the dimensions a quota is counted by (the amount travels in ``QuotaArgs``)."""

    template: ClassVar[str] = "quota"
    variety: ClassVar[Variety] = Variety.QUOTA
    name: str
    dimensions: Mapping[str, Value] = attrs.field(factory=dict, converter=_frozen_map)


@attrs.frozen
class LogEntry:
    """``logentry``: one log line's variables, time and severity."""

    template: ClassVar[str] = "logentry"
    variety: ClassVar[Variety] = Variety.REPORT
    name: str
    variables: Mapping[str, Value] = attrs.field(factory=dict, converter=_frozen_map)
    timestamp: datetime.datetime | None = None
    severity: str = ""
    monitored_resource_type: str = ""
    monitored_resource_dimensions: Mapping[str, Value] = attrs.field(
        factory=dict, converter=_frozen_map
    )


@attrs.frozen
class Metric:
    """``metric``: one measurement (``value``) with its dimensions (the metric's labels)."""

    template: ClassVar[str] = "metric"
    variety: ClassVar[Variety] = Variety.REPORT
    name: str
    value: Value
    dimensions: Mapping[str, Value] = attrs.field(factory=dict, converter=_frozen_map)
    monitored_resource_type: str = ""
    monitored_resource_dimensions: Mapping[str, Value] = attrs.field(
        factory=dict, converter=_frozen_map
    )


@attrs.frozen
class ReportNothing:
    """``reportnothing``: a report that carries no data."""

    template: ClassVar[str] = "reportnothing"
    variety: ClassVar[Variety] = Variety.REPORT
    name: str


CheckInstance: TypeAlias = CheckNothing | ListEntry | Authorization
ReportInstance: TypeAlias = LogEntry | Metric | ReportNothing
Instance: TypeAlias = CheckInstance | Quota | ReportInstance

TEMPLATES: Mapping[str, type[Instance]] = {
    cls.template: cls
    for cls in (CheckNothing, ListEntry, Authorization, Quota, LogEntry, Metric, ReportNothing)
}
"""Template name -> its instance class."""

__all__ = [
    "TEMPLATES",
    "Action",
    "Authorization",
    "CheckInstance",
    "CheckNothing",
    "Instance",
    "ListEntry",
    "LogEntry",
    "Metric",
    "Quota",
    "ReportInstance",
    "ReportNothing",
    "Subject",
    "Value",
    "Variety",
]

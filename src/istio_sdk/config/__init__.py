"""Istio and Kubernetes configuration as users write it: resources, YAML/JSON, validation, store.

- :class:`Resource` / :class:`ObjectMeta`: ``apiVersion``, ``kind``, ``metadata``, ``spec``
  (the generated message of the kind) and ``status``;
- :func:`load_resources` / :func:`dump_resources`: YAML or JSON text, files and folders in,
  ``kubectl apply``-ready text out, within :class:`LoadLimits` (size, depth, aliases);
- :func:`validate`: every problem, with source, document, resource, field path and line;
- :class:`ConfigStore`: in-memory store with revisions and watchers;
  :class:`DirectorySource` keeps one in step with a folder, :class:`KubernetesSource` with
  a Kubernetes API server (list and watch); :class:`LeaderElector` and :class:`StatusWriter`
  write Istio's status back from one replica;
- :data:`KINDS` / :class:`KindInfo`: the kind registry; :data:`KUBERNETES_KINDS`: the
  Kubernetes kinds (typed lightkube bodies, Gateway API kinds checked against their CRDs).
"""

from istio_sdk.config._directory import DirectorySource, SyncResult
from istio_sdk.config._errors import (
    ConfigError,
    DocumentError,
    FieldError,
    LimitError,
    MetadataError,
    NumberError,
    Problem,
    UnknownApiVersionError,
    UnknownKindError,
    ValidationError,
    YamlSyntaxError,
)
from istio_sdk.config._io import Source, dump_resources, load_resources
from istio_sdk.config._kinds import (
    KINDS,
    KUBERNETES_KINDS,
    KindInfo,
    find_kind,
    kind_for,
    message_class,
)
from istio_sdk.config._kube_client import KubeConfigError
from istio_sdk.config._kube_source import DEFAULT_KINDS, KubernetesSource, Observed
from istio_sdk.config._kube_status import StatusWriter
from istio_sdk.config._leader import LeaderElector
from istio_sdk.config._limits import LoadLimits
from istio_sdk.config._resource import ObjectMeta, Resource
from istio_sdk.config._store import (
    ConfigStore,
    Event,
    EventType,
    NotFoundError,
    Watch,
    WatchOverflowError,
)
from istio_sdk.config._validate import validate
from istio_sdk.config._yaml import JsonValue

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "KUBERNETES_KINDS",
    "ConfigError",
    "ConfigStore",
    "DirectorySource",
    "DocumentError",
    "Event",
    "EventType",
    "FieldError",
    "JsonValue",
    "KindInfo",
    "KubeConfigError",
    "KubernetesSource",
    "LeaderElector",
    "LimitError",
    "LoadLimits",
    "MetadataError",
    "NotFoundError",
    "NumberError",
    "ObjectMeta",
    "Observed",
    "Problem",
    "Resource",
    "Source",
    "StatusWriter",
    "SyncResult",
    "UnknownApiVersionError",
    "UnknownKindError",
    "ValidationError",
    "Watch",
    "WatchOverflowError",
    "YamlSyntaxError",
    "dump_resources",
    "find_kind",
    "kind_for",
    "load_resources",
    "message_class",
    "validate",
]

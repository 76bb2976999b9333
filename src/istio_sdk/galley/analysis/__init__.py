"""``istioctl analyze`` in Python: cross-resource checks with Istio's codes, levels and wording.

- :func:`analyze`: run the analyzers over resources (or ``(resource, location)`` pairs) and
  get an :class:`AnalysisResult` (sorted, de-duplicated :class:`Message` values, and which
  analyzers ran or were skipped for want of Services, Pods or Namespaces);
- :func:`load_for_analysis`: read files and folders with each resource's file and lines, and
  the files that did not parse;
- :class:`Suppression`: ``-S CODE=Kind name.namespace``; :class:`Level`, :data:`MESSAGE_TYPES`.

Each analyzer family is one module (``_virtualservice``, ``_gateway``, ...), a set of pure
functions over a :class:`Snapshot`.
"""

from istio_sdk.galley.analysis._analyzer import (
    AnalysisResult,
    Analyzer,
    Finding,
    Suppression,
    analyze,
    iter_analyzers,
)
from istio_sdk.galley.analysis._load import LoadResult, load_for_analysis
from istio_sdk.galley.analysis._messages import (
    KNOWN_CODES,
    MESSAGE_TYPES,
    Level,
    Message,
    MessageType,
    Origin,
)
from istio_sdk.galley.analysis._snapshot import Entry, Location, Snapshot

__all__ = [
    "KNOWN_CODES",
    "MESSAGE_TYPES",
    "AnalysisResult",
    "Analyzer",
    "Entry",
    "Finding",
    "Level",
    "LoadResult",
    "Location",
    "Message",
    "MessageType",
    "Origin",
    "Snapshot",
    "Suppression",
    "analyze",
    "iter_analyzers",
    "load_for_analysis",
]

"""Label selectors as Istio applies them (``workloadSelector``, ``selector``, subsets).

A selector picks the workloads whose labels carry every one of its ``key: value`` pairs; an
empty selector picks every workload.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["labels_match"]


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` carry every ``key: value`` pair of ``selector``."""
    return all(labels.get(k) == v for k, v in selector.items())

"""Kubernetes' strategic merge patch, for the Pod fields injection touches.

istiod overlays the rendered template on the user's Pod with a strategic merge: mappings merge
key by key (a null deletes), lists of named things merge by their key (containers, volumes,
env by ``name``, ports by ``containerPort``, volume mounts by ``mountPath``: the patch's items,
each merged over the original item of the same key, are placed in the patch's order and the
original's other items are woven in where the original had them), and every other list is
replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["copy_json", "merge_pod"]


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars): several times faster than
    ``copy.deepcopy``, which must handle any object."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


_CONTAINER_KEYS: Mapping[str, str] = {
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "resizePolicy": "resourceName",
}
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_SPEC_KEYS: Mapping[str, str] = {
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
}
_META_KEYS: Mapping[str, str] = {"ownerReferences": "uid"}


def _merge_map(
    original: Mapping[str, Any],
    patch: Mapping[str, Any],
    keys: Mapping[str, str],
    container_lists: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``patch`` over ``original``: ``keys`` names the lists merged by a key (list -> key),
    ``container_lists`` the lists of containers (merged by name, their own lists by
    :data:`_CONTAINER_KEYS`)."""
    merged = dict(original)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
            continue
        current = merged.get(key)
        if key in container_lists and isinstance(value, list):
            merged[key] = _merge_list(
                current if isinstance(current, list) else [], value, "name", _CONTAINER_KEYS
            )
        elif key in keys and isinstance(value, list):
            merged[key] = _merge_list(
                current if isinstance(current, list) else [], value, keys[key], {}
            )
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge_map(current, value, {})
        else:
            merged[key] = copy_json(value)
    return merged


def _merge_list(
    original: list[Any], patch: list[Any], key: str, child_keys: Mapping[str, str]
) -> list[Any]:
    by_key = {
        item.get(key): item
        for item in original
        if isinstance(item, Mapping) and item.get(key) is not None
    }
    patched: list[Any] = []
    named: set[Any] = set()
    for item in patch:
        if not isinstance(item, Mapping) or item.get(key) is None:
            patched.append(copy_json(item))
            continue
        if item[key] in named:
            continue
        named.add(item[key])
        patched.append(_merge_map(by_key.get(item[key], {}), item, child_keys))
    server_only = [
        copy_json(item)
        for item in original
        if not (isinstance(item, Mapping) and item.get(key) in named)
    ]
    order = {k: position for position, k in enumerate(by_key)}
    return _interleave(server_only, patched, order, key)


def _interleave(left: list[Any], right: list[Any], order: Mapping[Any, int], key: str) -> list[Any]:
    """Kubernetes' order for a merged list: the patch's items (``right``) in the patch's order
    and the original's other items (``left``) in theirs, an original item going first only
    when both it and the next patch item were in the original and it came earlier there."""

    def position(item: Any) -> int:
        if isinstance(item, Mapping):
            return order.get(item.get(key), -1)
        return -1

    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li, ri = position(left[i]), position(right[j])
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def merge_pod(pod: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``patch`` (a partial Pod) merged over ``pod`` strategically; neither is changed."""
    merged: dict[str, Any] = copy_json(dict(pod))
    for section in ("metadata", "spec"):
        part = patch.get(section)
        if part is None:
            continue
        current = merged.get(section)
        base = current if isinstance(current, Mapping) else {}
        if section == "metadata":
            merged[section] = _merge_map(base, part, _META_KEYS)
        else:
            merged[section] = _merge_map(base, part, _SPEC_KEYS, _CONTAINER_LISTS)
    return merged

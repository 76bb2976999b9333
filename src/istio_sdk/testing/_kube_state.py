"""The state of the test Kubernetes API server: objects, resource versions, watch history.

Pure and synchronous (no sockets): :mod:`istio_sdk.testing.kube_api` is the HTTP loop around
it. Behaviour follows the Kubernetes API conventions:

- one cluster-wide resourceVersion counter; every write bumps it and the object carries it;
- a bounded history of changes serves watches that resume from a resourceVersion; a version
  older than the oldest change kept is "too old" (410 Gone, ``Expired``);
- a watch with a label selector sees an object that starts matching as ADDED and one that
  stops matching as DELETED, as the kube-apiserver's watch cache does;
- list pages with ``limit`` and an opaque ``continue`` token; a token older than the history
  is 410 Gone;
- create is 409 AlreadyExists for a taken name; update is 409 Conflict when the body's
  resourceVersion is not the stored one; generation is bumped when anything outside metadata
  and status changes;
- server-side apply of the status subresource tracks which field manager owns which top-level
  status field (``metadata.managedFields``): another manager's field with a different value is
  a 409 Conflict unless ``force``; a field the manager no longer applies is removed; an apply
  that changes nothing writes nothing (no new resourceVersion, no event).
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from istio_sdk.config import KINDS, KUBERNETES_KINDS
from istio_sdk.timeutil import utcnow

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str, str]
"""``(group, plural, namespace, name)``."""


@attrs.frozen
class ResourceType:
    """One kind the server serves: its group, versions, plural, kind and scope."""

    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.versions[0]}" if self.group else self.versions[0]


def default_types() -> tuple[ResourceType, ...]:
    """Every Istio and Kubernetes kind the SDK knows, and ``coordination.k8s.io/v1`` Lease."""
    out = [
        ResourceType(k.group, k.versions, k.plural, k.kind, k.namespaced)
        for k in (*KINDS, *KUBERNETES_KINDS)
    ]
    out.append(ResourceType("coordination.k8s.io", ("v1",), "leases", "Lease", True))
    return tuple(out)


class ApiError(Exception):
    """A request the API refuses: the HTTP code, the Status ``reason`` and a message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> Obj:
        """The ``Status`` object the API returns (and sends in a watch ERROR event)."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


# -- label selectors ----------------------------------------------------------------------------
_SET_TERM = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")

Selector = Callable[[dict[str, str]], bool]


def _split_terms(text: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            yield text[start:i]
            start = i + 1
    yield text[start:]


@attrs.frozen
class _Term:
    key: str
    op: str
    values: frozenset[str] = frozenset()

    def holds(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op in ("in", "="):
            return value in self.values
        if self.op in ("notin", "!="):
            return value not in self.values
        return (self.key in labels) == (self.op == "exists")


@attrs.frozen
class LabelSelector:
    """A parsed label selector; call it with an object's labels."""

    terms: tuple[_Term, ...]

    def __call__(self, labels: dict[str, str]) -> bool:
        return all(term.holds(labels) for term in self.terms)


def parse_selector(text: str) -> LabelSelector:
    """A label selector (``app=web,tier!=db,env in (a,b),!canary``) as a predicate on labels.

    Raises :class:`ApiError` 400 for a selector the API would refuse.
    """
    terms: list[_Term] = []
    if not text.strip():
        return LabelSelector(())
    for term in _split_terms(text):
        if m := _SET_TERM.match(term):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            terms.append(_Term(m.group(1), m.group(2), values))
        elif m := _EQ_TERM.match(term):
            key, op, value = m.groups()
            terms.append(_Term(key, "!=" if op == "!=" else "=", frozenset({value})))
        elif m := _EXISTS_TERM.match(term):
            terms.append(_Term(m.group(2), "absent" if m.group(1) else "exists"))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return LabelSelector(tuple(terms))


def labels_of(obj: Obj | None) -> dict[str, str]:
    if obj is None:
        return {}
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels if isinstance(labels, dict) else {}


# -- changes and watchers -----------------------------------------------------------------------
@attrs.frozen
class Change:
    """One write: the resourceVersion it made, the object before (None: created) and after
    (None: deleted)."""

    revision: int
    type: ResourceType
    key: ObjectKey
    old: Obj | None
    new: Obj | None


def watch_event(change: Change, namespace: str | None, selector: Selector) -> Obj | None:
    """The watch event one change makes for a watcher, or None when it does not see it."""
    key = change.key
    if namespace is not None and key[2] != namespace:
        return None
    was = change.old is not None and selector(labels_of(change.old))
    now = change.new is not None and selector(labels_of(change.new))
    if now and change.new is not None:
        return {"type": "MODIFIED" if was else "ADDED", "object": change.new}
    if was and change.old is not None:
        gone_obj = copy.deepcopy(change.old)
        gone_obj["metadata"]["resourceVersion"] = str(change.revision)
        return {"type": "DELETED", "object": gone_obj}
    return None


class KubeApiState:
    """Objects by type, namespace and name, with one resourceVersion counter.

    ``history`` bounds how many changes are kept for watches that resume; :meth:`compact`
    drops them all (what etcd compaction does). ``listeners`` are called with every
    :class:`Change` (the server's open watches).
    """

    def __init__(self, types: tuple[ResourceType, ...] | None = None, history: int = 1000) -> None:
        self.types = default_types() if types is None else types
        self._by_path: dict[tuple[str, str], ResourceType] = {}
        for t in self.types:
            for version in t.versions:
                self._by_path[(f"{t.group}/{version}" if t.group else version, t.plural)] = t
        self.revision = 1
        self.objects: dict[ObjectKey, Obj] = {}
        self.history: collections.deque[Change] = collections.deque(maxlen=history)
        self._floor = 1  # the oldest resourceVersion a watch may resume from
        self._managers: dict[ObjectKey, dict[str, set[str]]] = {}
        self.listeners: list[Callable[[Change], None]] = []

    # -- lookups ---------------------------------------------------------------------------
    def type_at(self, api_version: str, plural: str) -> ResourceType:
        found = self._by_path.get((api_version, plural))
        if found is None:
            raise ApiError(404, "NotFound", f"the server could not find {api_version} {plural}")
        return found

    def type_of(self, obj: Obj) -> ResourceType:
        """The type of an object by its ``apiVersion`` and ``kind``."""
        for t in self.types:
            version = obj.get("apiVersion", "")
            if t.kind == obj.get("kind") and version in (
                f"{t.group}/{v}" if t.group else v for v in t.versions
            ):
                return t
        raise ApiError(
            400, "BadRequest", f"no kind {obj.get('kind')!r} in {obj.get('apiVersion')!r}"
        )

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.objects.get((rtype.group, rtype.plural, namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{rtype.plural} "{name}" not found')
        return obj

    # -- writes ----------------------------------------------------------------------------
    def _commit(
        self, rtype: ResourceType, key: ObjectKey, old: Obj | None, new: Obj | None
    ) -> None:
        self.revision += 1
        if new is not None:
            new["metadata"]["resourceVersion"] = str(self.revision)
            self.objects[key] = new
        else:
            self.objects.pop(key, None)
            self._managers.pop(key, None)
        if len(self.history) == self.history.maxlen:
            self._floor = self.history[0].revision
        change = Change(self.revision, rtype, key, old, new)
        self.history.append(change)
        for listener in list(self.listeners):
            listener(change)

    def _key(self, rtype: ResourceType, namespace: str, obj: Obj) -> ObjectKey:
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if rtype.namespaced:
            namespace = namespace or meta.get("namespace") or ""
            if not namespace:
                raise ApiError(422, "Invalid", "metadata.namespace: Required value")
            if meta.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the object does not match")
        else:
            namespace = ""
        return (rtype.group, rtype.plural, namespace, meta["name"])

    def create(self, rtype: ResourceType, namespace: str, obj: Obj) -> Obj:
        key = self._key(rtype, namespace, obj)
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{rtype.plural} "{key[3]}" already exists')
        new = copy.deepcopy(obj)
        new.setdefault("apiVersion", rtype.api_version)
        new.setdefault("kind", rtype.kind)
        meta = new["metadata"]
        if rtype.namespaced:
            meta["namespace"] = key[2]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["generation"] = 1
        meta.pop("managedFields", None)
        self._commit(rtype, key, None, new)
        return new

    def update(self, rtype: ResourceType, namespace: str, obj: Obj, *, status: bool) -> Obj:
        """PUT: replace the object (``status``: only its status), checking resourceVersion."""
        key = self._key(rtype, namespace, obj)
        old = self.get(rtype, key[2], key[3])
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted not in (None, "") and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rtype.plural} "{key[3]}": the object has '
                "been modified; please apply your changes to the latest version and try again",
            )
        new = copy.deepcopy(old)
        if status:
            if "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            else:
                new.pop("status", None)
        else:
            kept = {k: v for k, v in old.items() if k in ("status",)}
            new = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
            new.update(kept)
            meta = new.setdefault("metadata", {})
            for field in ("uid", "creationTimestamp", "generation", "namespace", "managedFields"):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
            new.setdefault("apiVersion", old.get("apiVersion"))
            new.setdefault("kind", old.get("kind"))
            if _body(new) != _body(old):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
        if _same(new, old):
            return old
        self._commit(rtype, key, old, new)
        return new

    def delete(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        old = self.get(rtype, namespace, name)
        key = (rtype.group, rtype.plural, namespace if rtype.namespaced else "", name)
        self._commit(rtype, key, old, None)
        return old

    def apply_status(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        patch: Obj,
        *,
        manager: str,
        force: bool,
    ) -> Obj:
        """Server-side apply of the status subresource by ``manager``."""
        if not manager:
            raise ApiError(400, "BadRequest", "PATCH with apply-patch+yaml requires a fieldManager")
        old = self.get(rtype, namespace, name)
        key = (rtype.group, rtype.plural, namespace if rtype.namespaced else "", name)
        applied = patch.get("status") or {}
        if not isinstance(applied, dict):
            raise ApiError(422, "Invalid", "status: must be an object")
        owners = self._managers.setdefault(key, {})
        current = dict(old.get("status") or {})
        conflicts = [
            f".status.{field} (owned by {other!r})"
            for field, value in applied.items()
            for other, fields in owners.items()
            if other != manager and field in fields and current.get(field) != value
        ]
        if conflicts and not force:
            raise ApiError(409, "Conflict", f"Apply failed with conflicts: {', '.join(conflicts)}")
        mine = owners.get(manager, set())
        for field in mine - set(applied):
            if not any(field in f for other, f in owners.items() if other != manager):
                current.pop(field, None)
        for other, fields in owners.items():
            if other != manager:
                fields.difference_update(applied)
        owners[manager] = set(applied)
        current.update(copy.deepcopy(applied))
        new = copy.deepcopy(old)
        if current:
            new["status"] = current
        else:
            new.pop("status", None)
        new["metadata"]["managedFields"] = [
            {
                "manager": who,
                "operation": "Apply",
                "apiVersion": old.get("apiVersion"),
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {f"f:{f}": {} for f in sorted(fields)}},
                "subresource": "status",
            }
            for who, fields in sorted(owners.items())
            if fields
        ]
        if _same(new, old):
            return old
        self._commit(rtype, key, old, new)
        return new

    def compact(self) -> None:
        """Forget the history: a watch or continue token from an earlier version gets 410."""
        self.history.clear()
        self._floor = self.revision

    # -- reads -----------------------------------------------------------------------------
    def list_objects(
        self,
        rtype: ResourceType,
        namespace: str | None,
        selector: Selector,
        *,
        limit: int = 0,
        token: str = "",
        resource_version: str = "",
    ) -> Obj:
        """A List object; ``limit`` pages it and ``token`` continues a previous page."""
        start: ObjectKey | None = None
        list_rv = self.revision
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                list_rv, start = int(state["rv"]), tuple(state["start"])
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise ApiError(400, "BadRequest", "invalid continue token") from exc
            if list_rv < self._floor:
                raise gone(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter."
                )
        elif limit and resource_version not in ("", "0"):
            # a paged list at an exact version is served from storage, which forgets old ones
            self._check_version(resource_version)
        items = [
            obj
            for key, obj in sorted(self.objects.items())
            if key[:2] == (rtype.group, rtype.plural)
            and (namespace is None or key[2] == namespace)
            and (start is None or key > start)
            and selector(labels_of(obj))
        ]
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            items = items[:limit]
            last = items[-1]
            last_key = (
                rtype.group,
                rtype.plural,
                last["metadata"].get("namespace", ""),
                last["metadata"]["name"],
            )
            state_text = json.dumps({"rv": list_rv, "start": list(last_key)})
            meta["continue"] = base64.urlsafe_b64encode(state_text.encode()).decode()
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": meta,
            "items": items,
        }

    def _check_version(self, text: str) -> int:
        since = _version(text)
        if since < self._floor:
            raise gone(f"too old resource version: {since} ({self._floor})")
        return since

    def watch_start(
        self, rtype: ResourceType, namespace: str | None, selector: Selector, resource_version: str
    ) -> list[Obj]:
        """The events a new watch starts with; raises 410 for a version too old."""
        if resource_version in ("", "0"):
            listed = self.list_objects(rtype, namespace, selector)
            return [{"type": "ADDED", "object": obj} for obj in listed["items"]]
        since = self._check_version(resource_version)
        out = []
        for change in self.history:
            if change.revision > since and change.key[:2] == (rtype.group, rtype.plural):
                event = watch_event(change, namespace, selector)
                if event is not None:
                    out.append(event)
        return out


def _version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid resourceVersion {text!r}") from None


def _body(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _same(a: Obj, b: Obj) -> bool:
    def bare(obj: Obj) -> Obj:
        out = dict(obj)
        out["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
        return out

    return bare(a) == bare(b)

"""The analysis driver: analyzers as pure functions over a :class:`Snapshot`, and their result.

An analyzer yields :class:`Finding` values (which resource, which code, the template's
arguments, the field the finding is about); :func:`analyze` runs every analyzer whose inputs
are present, turns findings into :class:`Message` values with their origin, drops what the
resources' ``galley.istio.io/analyze-suppress`` annotation or the given suppressions ask to
drop, and sorts and de-duplicates them as istioctl does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from istio_sdk.config import Resource
from istio_sdk.galley.analysis._messages import (
    MESSAGE_TYPES,
    Level,
    Message,
    Origin,
    sorted_unique,
)
from istio_sdk.galley.analysis._snapshot import RUNTIME_KINDS, Entry, Location, Snapshot

__all__ = [
    "ANALYZERS",
    "AnalysisResult",
    "Analyzer",
    "Finding",
    "Suppression",
    "analyze",
    "register",
]

SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"


@attrs.frozen
class Finding:
    """What an analyzer reports: ``code`` on ``entry``, with the template's arguments."""

    entry: Entry
    code: str
    arguments: tuple[object, ...] = ()
    path: str | None = None
    """Field path (``spec.http[0].route[0].destination.host``) whose line the message shows."""


@attrs.frozen
class Analyzer:
    """One named analyzer (istioctl's name), the kinds it reads and its function."""

    name: str
    description: str
    inputs: tuple[str, ...]
    run: Callable[[Snapshot], Iterable[Finding]]
    any_input: bool = False
    """Run when any one of its Kubernetes runtime inputs is present (not all of them)."""

    def missing(self, snapshot: Snapshot) -> tuple[str, ...]:
        """The Kubernetes runtime kinds it needs and the snapshot lacks (skipped when any)."""
        runtime = [k for k in self.inputs if k in RUNTIME_KINDS]
        absent = tuple(k for k in runtime if not snapshot.has(k))
        if self.any_input and len(absent) < len(runtime):
            return ()
        return absent


ANALYZERS: list[Analyzer] = []


def register(
    name: str, description: str, inputs: Sequence[str], *, any_input: bool = False
) -> Callable[[Callable[[Snapshot], Iterable[Finding]]], Callable[[Snapshot], Iterable[Finding]]]:
    """Decorator: add an analyzer function to :data:`ANALYZERS`."""

    def add(
        run: Callable[[Snapshot], Iterable[Finding]],
    ) -> Callable[[Snapshot], Iterable[Finding]]:
        ANALYZERS.append(Analyzer(name, description, tuple(inputs), run, any_input))
        return run

    return add


@attrs.frozen
class Suppression:
    """``-S CODE=RESOURCE``: drop ``code`` on resources matching ``resource`` (``*`` globs).

    ``resource`` is istioctl's ``Kind name.namespace`` (``Pod *.testing``); the
    ``Kind namespace/name`` form messages print is accepted too.
    """

    code: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Suppression:
        """``IST0103=Pod mypod.testing``; raises ValueError when it has not one ``=``."""
        parts = text.split("=")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{text} is not a valid suppression value (CODE=Kind name.namespace)")
        return cls(parts[0].strip(), parts[1].strip())

    def matches(self, message: Message) -> bool:
        origin = message.origin
        if origin is None or message.code != self.code:
            return False
        dotted = f"{origin.kind} {origin.name}" + (
            f".{origin.namespace}" if origin.namespace else ""
        )
        return _glob(self.resource, dotted) or _glob(self.resource, origin.friendly_name)


def _glob(pattern: str, text: str) -> bool:
    """``*`` matches any run of characters; everything else matches itself."""
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == text
    if not text.startswith(pieces[0]) or not text.endswith(pieces[-1]):
        return False
    position = len(pieces[0])
    end = len(text) - len(pieces[-1])
    for piece in pieces[1:-1]:
        found = text.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return position <= end


@attrs.frozen
class AnalysisResult:
    """The messages of one analysis (sorted, de-duplicated) and which analyzers ran."""

    messages: tuple[Message, ...]
    executed: tuple[str, ...]
    skipped: tuple[str, ...]
    """Analyzers not run, each as ``name (missing: Pod, Service)``."""

    def at_least(self, level: Level) -> tuple[Message, ...]:
        """The messages at ``level`` or worse."""
        return tuple(m for m in self.messages if m.level.at_least(level))

    def __str__(self) -> str:
        return "\n".join(str(m) for m in self.messages)


def _message(finding: Finding) -> Message:
    entry = finding.entry
    location = entry.location
    origin = Origin(
        kind=entry.resource.kind,
        namespace=entry.namespace,
        name=entry.name,
        file=None if location is None else location.file,
        line=entry.line_of(finding.path),
    )
    arguments = tuple(str(a) for a in finding.arguments)
    return Message(MESSAGE_TYPES[finding.code], arguments, origin)


def _suppressed_by_annotation(finding: Finding) -> bool:
    value = finding.entry.annotations.get(SUPPRESS_ANNOTATION, "")
    return bool(value) and any(c.strip() in ("*", finding.code) for c in value.split(","))


def _load_analyzers() -> None:
    # Importing the analyzer modules registers them (in istioctl's order of families).
    from istio_sdk.galley.analysis import (  # noqa: F401
        _annotations,
        _authz,
        _destinationrule,
        _envoyfilter,
        _gateway,
        _injection,
        _schema,
        _selectors,
        _service,
        _serviceentry,
        _virtualservice,
    )


def analyze(
    resources: Iterable[Resource | tuple[Resource, Location | None]],
    *,
    namespace: str = "default",
    suppressions: Iterable[Suppression] = (),
    analyzers: Iterable[str] | None = None,
) -> AnalysisResult:
    """Run istioctl's analyzers over ``resources`` and return their messages.

    ``resources`` are :class:`~istio_sdk.config.Resource` values, or ``(resource, location)``
    pairs when the file and lines are known (:func:`load_for_analysis` gives those). A
    namespaced resource without a namespace is in ``namespace``. Services, Pods, Namespaces,
    Nodes and Secrets are used when given; an analyzer that needs one of them that is absent
    is skipped (listed in :attr:`AnalysisResult.skipped`). ``analyzers`` picks analyzers by
    name (all by default); an unknown name raises ValueError.
    """
    _load_analyzers()
    snapshot = Snapshot(resources, namespace=namespace)
    chosen = list(ANALYZERS)
    if analyzers is not None:
        wanted = list(analyzers)
        known = {a.name for a in ANALYZERS}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ValueError(f"unknown analyzer(s): {', '.join(unknown)}")
        chosen = [a for a in ANALYZERS if a.name in wanted]
    rules = tuple(suppressions)
    executed: list[str] = []
    skipped: list[str] = []
    messages: list[Message] = []
    for analyzer in chosen:
        missing = analyzer.missing(snapshot)
        if missing:
            skipped.append(f"{analyzer.name} (missing: {', '.join(missing)})")
            continue
        executed.append(analyzer.name)
        for finding in analyzer.run(snapshot):
            if _suppressed_by_annotation(finding):
                continue
            message = _message(finding)
            if any(rule.matches(message) for rule in rules):
                continue
            messages.append(message)
    return AnalysisResult(tuple(sorted_unique(messages)), tuple(executed), tuple(skipped))


def iter_analyzers() -> Iterator[Analyzer]:
    """Every analyzer, in the order they run."""
    _load_analyzers()
    yield from ANALYZERS

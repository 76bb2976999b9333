"""``serviceentry.ConflictingServiceEntryProtocolAnalyzer``: ServiceEntries that give one
host and port different protocols within one exportTo scope (IST0177 on each of them)."""

from __future__ import annotations

from collections.abc import Iterator

from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._lookup import ALL_NAMESPACES
from istio_sdk.galley.analysis._snapshot import Entry, Snapshot


@register(
    "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
    "Checks if multiple ServiceEntries define the same host and port with different protocols",
    ("ServiceEntry",),
)
def conflicting_protocols(snapshot: Snapshot) -> Iterator[Finding]:
    index: dict[tuple[str, str, int], list[tuple[str, Entry]]] = {}
    for entry in snapshot.of("ServiceEntry"):
        spec = entry.spec
        export_to = list(spec.export_to)
        if not export_to or ALL_NAMESPACES in export_to:
            scopes = {ALL_NAMESPACES}
        else:
            scopes = {entry.namespace if e == "." else e for e in export_to}
        for scope in scopes:
            for host in spec.hosts:
                for port in spec.ports:
                    index.setdefault((scope, host, port.number), []).append((port.protocol, entry))
    reported: set[tuple[str, str]] = set()
    for (scope, host, number), entries in sorted(index.items()):
        claims = list(entries)
        if scope != ALL_NAMESPACES:
            claims += index.get((ALL_NAMESPACES, host, number), [])
        protocols = sorted({protocol.upper() for protocol, _ in claims})
        if len(protocols) < 2:
            continue
        names = ", ".join(sorted({e.full_name for _, e in claims}))
        for _, entry in claims:
            key = (entry.namespace, entry.name)
            if key in reported:
                continue
            reported.add(key)
            args = (names, f'"{host}"', number, ", ".join(protocols))
            yield Finding(entry, "IST0177", args, "spec.ports")

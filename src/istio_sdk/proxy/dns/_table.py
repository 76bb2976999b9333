"""The DNS proxy's lookup table: Pilot's name table turned into ready answers, as the agent does.

:meth:`LookupTable.build` expands each name-table entry into the names a client may ask for and
precomputes their records (istio-agent's ``BuildAlternateHosts`` and ``buildDNSAnswers``):

- a Kubernetes service ``reviews.bookinfo.svc.cluster.local`` (registry ``Kubernetes``, with
  ``shortname`` and ``namespace``) answers as itself, ``reviews.bookinfo.``,
  ``reviews.bookinfo.svc.`` and, from a Pod in ``bookinfo``, ``reviews.``; only when its host is
  in the proxy's own DNS domain (``svc.cluster.local``), since ``name.namespace`` cannot be told
  apart across cluster domains;
- any other host answers as written (wildcards ``*.example.com`` match any name below);
- every name also gets its expansion with the first ``search`` domain of resolv.conf
  (``reviews.bookinfo.svc.cluster.local`` for ``reviews.`` from ``bookinfo``), answered with a
  CNAME to the name and its records, so a client's search walk ends after one query.

:meth:`LookupTable.lookup` then says, for a name and a type, whether the table knows the name
(else the query goes upstream) and which records answer it: a known name without records of the
asked family is NOERROR with no answers (NODATA, never NXDOMAIN: clients asking A and AAAA in
parallel would give up on the name), and types other than A and AAAA go upstream.
Pure and synchronous; building a large table is meant to run off the event loop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset

__all__ = ["DEFAULT_TTL", "LookupTable", "NameInfo"]

DEFAULT_TTL = 30
"""Seconds: short, so a client that honours it soon sees a changed address (istio-agent's)."""

_KUBERNETES = "Kubernetes"
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_CNAME = dns.rdatatype.CNAME
_IN = dns.rdataclass.IN


_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_*")


def _dns_name(text: str) -> str | None:
    """``text`` as an absolute lower-case host name, or None when it is not one (an empty or
    over-long label, more than 253 characters, anything but letters, digits, ``-``, ``_`` and
    ``*``). Checked as text: far cheaper than parsing, and what a mesh hostname can be."""
    name = text.lower().rstrip(".") + "."
    if len(name) > 254 or name == ".":
        return None
    for label in name[:-1].split("."):
        if not label or len(label) > 63 or not _LABEL_CHARS.issuperset(label):
            return None
    return name


class NameInfo(Protocol):
    """One name-table entry (``istio.networking.nds.v1.NameTable.NameInfo`` has these)."""

    ips: list[str]
    registry: str
    shortname: str
    namespace: str
    alt_hosts: list[str]


def _rrset(name: str, rdtype: dns.rdatatype.RdataType, rdatas: Iterable[object]) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(dns.name.from_text(name), _IN, rdtype)
    rrset.update_ttl(DEFAULT_TTL)
    for rdata in rdatas:
        rrset.add(rdata)  # type: ignore[arg-type]
    return rrset


class LookupTable:
    """Names (lower case, absolute: ``reviews.``) to A, AAAA and CNAME answers.

    Records are made on a name's first query and kept, so building a table of many services
    costs little more than its names.
    """

    def __init__(self) -> None:
        self.hosts: set[str] = set()
        """Every name the table knows (records or not)."""
        self.skipped: list[str] = []
        """Name-table hosts left out, with why (not a DNS name, no usable address)."""
        self._addresses: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._cnames: dict[str, str] = {}
        self._records: dict[tuple[str, int], dns.rrset.RRset | None] = {}
        self._wildcards = False

    @classmethod
    def build(
        cls,
        table: Mapping[str, NameInfo],
        *,
        namespace: str,
        domain: str = "",
        search: Sequence[str] = (),
    ) -> LookupTable:
        """The lookup table of a name table, for a proxy in ``namespace``.

        ``domain`` is the proxy's DNS domain (``bookinfo.svc.cluster.local`` or
        ``svc.cluster.local``: a leading namespace is dropped); ``search`` are resolv.conf's
        search domains (only the first is used, as istio-agent).
        """
        parts = domain.split(".") if domain else []
        if parts and parts[0] == namespace:
            parts = parts[1:]
        proxy_domain = ".".join(parts)
        first_search = search[0] if search else ""
        out = cls()
        for hostname in sorted(table):
            info = table[hostname]
            if info.registry == _KUBERNETES:
                names = _kubernetes_names(hostname, info, namespace, proxy_domain, parts)
            else:
                names = [hostname if hostname.endswith(".") else hostname + "."]
            v4: list[str] = []
            v6: list[str] = []
            for ip in info.ips:
                try:
                    address = ipaddress.ip_address(ip)
                except ValueError:
                    continue
                (v4 if address.version == 4 else v6).append(str(address))
            if not (v4 or v6):
                out.skipped.append(f"{hostname}: no IP address")
                continue
            out._add(hostname, names, v4, v6, first_search)
        return out

    def _add(
        self, host: str, names: Iterable[str], v4: list[str], v6: list[str], search: str
    ) -> None:
        parsed: set[str] = set()
        for name in names:
            text = _dns_name(name)
            if text is None:
                self.skipped.append(f"{host}: {name!r:.300} is not a DNS name")
            else:
                parsed.add(text)
        addresses = (tuple(v4), tuple(v6))
        suffix = search.lower().rstrip(".") + "." if search else ""
        for name in sorted(parsed):
            self.hosts.add(name)
            self._wildcards = self._wildcards or name.startswith("*.")
            self._addresses[name] = addresses
            if not suffix or name.endswith(suffix):
                continue
            expanded = _dns_name(name + suffix)
            if expanded is None or expanded in parsed:
                continue  # too long to ask for, or a name of its own
            self._cnames[expanded] = name
            self.hosts.add(expanded)
            self._wildcards = self._wildcards or expanded.startswith("*.")

    def _answer(self, name: str, rdtype: int) -> dns.rrset.RRset | None:
        key = (name, rdtype)
        if key in self._records:
            return self._records[key]
        found: dns.rrset.RRset | None = None
        if rdtype == _CNAME:
            target = self._cnames.get(name)
            if target is not None:
                rdata = dns.rdtypes.ANY.CNAME.CNAME(  # type: ignore[no-untyped-call]
                    _IN, _CNAME, dns.name.from_text(target)
                )
                found = _rrset(name, _CNAME, [rdata])
        else:
            v4, v6 = self._addresses.get(name, ((), ()))
            if rdtype == _A and v4:
                rdatas: list[object] = [
                    dns.rdtypes.IN.A.A(_IN, _A, ip)  # type: ignore[no-untyped-call]
                    for ip in v4
                ]
                found = _rrset(name, _A, rdatas)
            elif rdtype == _AAAA and v6:
                rdatas = [
                    dns.rdtypes.IN.AAAA.AAAA(_IN, _AAAA, ip)  # type: ignore[no-untyped-call]
                    for ip in v6
                ]
                found = _rrset(name, _AAAA, rdatas)
        self._records[key] = found
        return found

    def __len__(self) -> int:
        return len(self.hosts)

    def lookup(self, qname: dns.name.Name, qtype: int) -> list[dns.rrset.RRset] | None:
        """The answer records for ``qname``/``qtype``; None when the query must go upstream.

        Called on the event loop: everything it makes is kept for the next query.

        An empty list is a known name without records of that type (NODATA).
        """
        question = qname.to_text().lower()
        host = question
        wildcard = False
        if host not in self.hosts:
            if not self._wildcards:
                return None
            labels = qname.labels
            for i in range(1, len(labels) - 1):
                candidate = dns.name.Name((b"*", *labels[i:])).to_text().lower()
                if candidate in self.hosts:
                    host, wildcard = candidate, True
                    break
            else:
                return None
        if qtype not in (_A, _AAAA):
            return None  # not answered here: upstream knows (istio-agent has no PTR, MX, ...)
        chain: list[dns.rrset.RRset] = []
        cname = self._answer(host, _CNAME)
        if cname is not None:
            if host != question:  # a wildcard's expansion: the CNAME is the name asked
                cname = _rrset(question, _CNAME, cname)
            chain.append(cname)
            host = self._cnames[host]
        records = self._answer(host, qtype)
        if records is None:
            return []
        if wildcard:
            # A wildcard answers as the name asked, or as itself after a CNAME to it.
            owner = host if chain else question
            records = _rrset(owner, records.rdtype, records)
        return [*chain, records]


def _kubernetes_names(
    hostname: str, info: NameInfo, namespace: str, proxy_domain: str, parts: Sequence[str]
) -> list[str]:
    if hostname.endswith("."):
        return []  # istio-agent makes no names for an absolute Kubernetes host
    names = [hostname + "."]
    if not proxy_domain or not hostname.endswith(proxy_domain):
        return names  # another cluster domain: name.namespace would be ambiguous
    names.append(f"{info.shortname}.{info.namespace}.")
    if info.namespace == namespace:
        names.append(f"{info.shortname}.")
    names.append(f"{info.shortname}.{info.namespace}.{parts[0]}.")
    names.extend(alt + "." for alt in info.alt_hosts)
    return names

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


def _dns_name(text: str) -> str | None:
    """``text`` as a canonical absolute name (lower case), or None when it is not one."""
    try:
        return dns.name.from_text(text).to_text().lower()
    except dns.exception.DNSException:
        return None


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
    """Names (lower case, absolute: ``reviews.``) to precomputed A, AAAA and CNAME records."""

    def __init__(self) -> None:
        self.hosts: set[str] = set()
        """Every name the table knows (records or not)."""
        self.a: dict[str, dns.rrset.RRset] = {}
        self.aaaa: dict[str, dns.rrset.RRset] = {}
        self.cname: dict[str, dns.rrset.RRset] = {}
        self.skipped: list[str] = []
        """Name-table hosts left out, with why (not a DNS name, no usable address)."""
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
        a_rdatas = [dns.rdtypes.IN.A.A(_IN, _A, ip) for ip in v4]  # type: ignore[no-untyped-call]
        aaaa_rdatas = [
            dns.rdtypes.IN.AAAA.AAAA(_IN, _AAAA, ip)  # type: ignore[no-untyped-call]
            for ip in v6
        ]
        suffix = search.lower().rstrip(".") + "." if search else ""
        for name in sorted(parsed):
            self.hosts.add(name)
            self._wildcards = self._wildcards or name.startswith("*.")
            if a_rdatas:
                self.a[name] = _rrset(name, _A, a_rdatas)
            if aaaa_rdatas:
                self.aaaa[name] = _rrset(name, _AAAA, aaaa_rdatas)
            if not suffix or name.endswith(suffix):
                continue
            expanded = _dns_name(name + suffix)
            if expanded is None or expanded in parsed:
                continue  # too long to ask for, or a name of its own
            target = dns.rdtypes.ANY.CNAME.CNAME(  # type: ignore[no-untyped-call]
                _IN, _CNAME, dns.name.from_text(name)
            )
            self.cname[expanded] = _rrset(expanded, _CNAME, [target])
            self.hosts.add(expanded)
            self._wildcards = self._wildcards or expanded.startswith("*.")

    def __len__(self) -> int:
        return len(self.hosts)

    def lookup(self, qname: dns.name.Name, qtype: int) -> list[dns.rrset.RRset] | None:
        """The answer records for ``qname``/``qtype``; None when the query must go upstream.

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
        chain: list[dns.rrset.RRset] = []
        cname = self.cname.get(host)
        if cname is not None:
            if cname.name.to_text().lower() != question:
                cname = _rrset(question, _CNAME, cname)
            chain.append(cname)
            host = next(iter(cname)).target.to_text().lower()
        if qtype == _A:
            records = self.a.get(host)
        elif qtype == _AAAA:
            records = self.aaaa.get(host)
        else:
            return None  # not answered here: upstream knows (istio-agent has no PTR, MX, ...)
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

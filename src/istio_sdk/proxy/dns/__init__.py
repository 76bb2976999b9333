"""pilot-agent's DNS proxy: answers a Pod's DNS from Pilot's name table, forwards the rest.

istio-iptables' ``--redirect-dns`` sends the Pod's port 53 traffic to 15053, where
:class:`DnsProxy` listens on UDP and TCP. Names Pilot knows (services with an address, headless
services' endpoints, Kubernetes short names from the Pod's namespace) are answered from the name
table Pilot sends over NDS, which :class:`NameTableFollower` keeps up to date; every other query
goes upstream, to resolv.conf's servers, as it came. The parts:

- :class:`LookupTable` (pure): a name table turned into ready answers, with the names a client
  may ask (``reviews``, ``reviews.bookinfo``, ``reviews.bookinfo.svc``, search-domain expansions);
- :class:`Resolver` (pure, sans I/O): what to do with one packet (answer, forward, refuse, drop);
- :class:`DnsProxy`: the sockets, upstream forwarding with timeouts and bounded concurrency;
- :class:`NameTableFollower`: an NDS subscription on :class:`~istio_sdk.pilot.PilotClient`.
"""

from istio_sdk.proxy.dns._nds import NameTableFollower, dns_node
from istio_sdk.proxy.dns._resolver import Drop, Forward, Reply, Resolver
from istio_sdk.proxy.dns._server import DEFAULT_PORT, DnsProxy, DnsProxyError, DnsStats
from istio_sdk.proxy.dns._table import DEFAULT_TTL, LookupTable

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TTL",
    "DnsProxy",
    "DnsProxyError",
    "DnsStats",
    "Drop",
    "Forward",
    "LookupTable",
    "NameTableFollower",
    "Reply",
    "Resolver",
    "dns_node",
]

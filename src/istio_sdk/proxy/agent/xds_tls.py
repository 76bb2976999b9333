"""TLS from the agent's xDS proxy to Pilot, with the workload certificate the Citadel agent keeps.

pilot-agent dials istiod's 15012 over mutual TLS: it trusts the mesh root and presents the
workload certificate its Citadel agent obtained (a proxy with no certificate yet presents none).
:func:`workload_tls` returns the factory :class:`~istio_sdk.proxy.agent.xds_proxy.XdsProxy`
calls at every connect; it reads ``cert-chain.pem`` and ``key.pem`` from the Citadel agent's
output directory each time, so a rotated certificate is presented on the next connection.
"""

from __future__ import annotations

import pathlib
import ssl
from collections.abc import Callable

from istio_sdk.citadel.files import CERT_CHAIN_FILE, KEY_FILE

__all__ = ["workload_tls"]


def workload_tls(root_pem: str, cert_dir: str | None = None) -> Callable[[], ssl.SSLContext]:
    """A TLS context factory trusting ``root_pem`` and, once the files exist, presenting the
    workload certificate in ``cert_dir``. Raises ``ssl.SSLError`` for a root that is no PEM."""
    ssl.create_default_context(cadata=root_pem)  # refuse a bad root now, not at every connect

    def context() -> ssl.SSLContext:
        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=root_pem)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.set_alpn_protocols(["h2"])
        if cert_dir is not None:
            chain = pathlib.Path(cert_dir) / CERT_CHAIN_FILE
            key = pathlib.Path(cert_dir) / KEY_FILE
            if chain.is_file() and key.is_file():
                tls.load_cert_chain(chain, key)
        return tls

    return context

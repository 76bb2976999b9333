"""The data-plane side of the mesh: what istio-init, pilot-agent and the injector do for a Pod.

Subpackages: :mod:`istio_sdk.proxy.iptables` (istio-iptables: the traffic capture rules),
:mod:`istio_sdk.proxy.bootstrap` (the Envoy bootstrap pilot-agent writes) and
:mod:`istio_sdk.proxy.dns` (pilot-agent's DNS proxy). Nothing is
re-exported here, so importing one part never loads the others.
"""

"""The data-plane side of the mesh: what istio-init, pilot-agent and the injector do for a Pod.

Subpackages: :mod:`istio_sdk.proxy.iptables` (istio-iptables: the traffic capture rules) and
:mod:`istio_sdk.proxy.bootstrap` (the Envoy bootstrap pilot-agent writes). Nothing is
re-exported here, so importing one part never loads the others.
"""

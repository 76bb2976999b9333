"""The data-plane side of the mesh: what istio-init and pilot-agent do for a proxy.

Subpackages: :mod:`istio_sdk.proxy.iptables` (istio-iptables: the traffic capture rules).
Nothing is re-exported here, so importing one part never loads the others.
"""

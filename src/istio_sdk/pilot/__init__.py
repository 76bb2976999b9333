"""Pilot: xDS discovery server, ADS client, service registry and Istio-to-Envoy translation."""

"""Galley: configuration distribution (MCP) and, beside it, Istio's validation and analysis.

:mod:`istio_sdk.galley.mcp` is the Mesh Configuration Protocol as Istio 1.3 spoke it;
:mod:`istio_sdk.galley.webhook` is the validating admission webhook.
"""

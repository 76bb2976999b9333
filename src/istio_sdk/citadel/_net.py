"""Kept for :mod:`istio_sdk.citadel.server`: the home of these helpers is :mod:`istio_sdk._net`."""

from __future__ import annotations

from istio_sdk._net import bind_tcp, bound_port

__all__ = ["bind_tcp", "bound_port"]

"""The Mixer end-to-end tests' Redis: one redis-server per module (see support.redis_server)."""

from __future__ import annotations

from support.redis_server import redis_server

__all__ = ["redis_server"]

"""A real Redis for the redisquota tests: ``redis-server`` on 127.0.0.1, a free port, no disk."""

from __future__ import annotations

from support.redis_server import fresh_redis, redis_server

__all__ = ["fresh_redis", "redis_server"]

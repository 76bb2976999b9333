"""``redisquota``: rate limits kept in Redis, so every Mixer replica shares one count.

Compatible with Istio 1.3's ``mixer/adapter/redisquota``: the same keys, the same script
arguments, the same arithmetic, so replicas of this server and of Istio's Mixer can share one
Redis. Per request the handler runs one Lua script (EVALSHA, loaded when the handler is built)
with ``KEYS = [<key>.meta, <key>.data]`` and
``ARGV = [max_amount, window_ns, bucket_ns, best_effort (1/0), amount, now_unix_ns, dedup_id]``,
where ``<key>`` is memquota's ``name;k=v;...`` key, plus ``-<fnv32a>`` of the override's
sorted ``k\\tv\\n`` lines when an override applies. The script answers ``{granted, expiry_ns}``.

- FIXED_WINDOW (the default): the hash ``<key>.meta`` holds ``token`` and ``expire``; a window
  starts at the first request after the previous one expired.
- ROLLING_WINDOW: ``<key>.meta`` holds ``token``, ``bucket.token``, ``bucket.timestamp`` and a
  ``key`` counter; closed buckets go to the sorted set ``<key>.data`` (score: the bucket's start,
  member ``<n>.<tokens>``) and are reclaimed once older than the window.
- A deduplication id stores the grant in ``<dedup_id>-<key>.meta`` until the window ends.

Where Istio returns an empty result on a Redis failure, this handler returns the same grant
(0) with an ``UNAVAILABLE`` status that says what failed; Mixer's server does not forward a
quota status, so proxies see the same thing.
"""

from __future__ import annotations

import datetime
import enum
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs
import redis.asyncio as aioredis
import redis.exceptions
from grpclib.const import Status as Code
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from istio_sdk import timeutil
from istio_sdk.mixer.adapters import _values
from istio_sdk.mixer.adapters._params import Reader
from istio_sdk.mixer.adapters.base import (
    AdapterError,
    Handler,
    HandlerBuildError,
    QuotaArgs,
    QuotaResult,
    RpcStatus,
)
from istio_sdk.mixer.templates import Quota

_READ = Reader("redisquota")
_ZERO = datetime.timedelta(0)

# Both scripts start the same way: answer a repeated deduplication id from its stored grant.
_DEDUP = """
local meta, data = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local partial_ok = tonumber(ARGV[4]) == 1
local wanted = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
local dedup = ARGV[7] or ''
local dedup_key = dedup .. '-' .. meta

local function remember(granted, expire, ttl_ms)
  if dedup ~= '' then
    redis.call('HMSET', dedup_key, 'token', granted, 'expire', expire)
    redis.call('PEXPIRE', dedup_key, math.max(1, math.floor(ttl_ms)))
  end
end

if dedup ~= '' then
  local old_granted = tonumber(redis.call('HGET', dedup_key, 'token'))
  local old_expire = tonumber(redis.call('HGET', dedup_key, 'expire'))
  if old_granted and old_expire and now < old_expire then
    return {old_granted, old_expire - now}
  end
end
"""

FIXED_WINDOW_SCRIPT = (
    _DEDUP
    + """
local used = tonumber(redis.call('HGET', meta, 'token'))
local expire = tonumber(redis.call('HGET', meta, 'expire'))
if not used or not expire or now >= expire then
  used = 0
  expire = now + window
  redis.call('HMSET', meta, 'token', used, 'expire', expire)
  redis.call('PEXPIRE', meta, math.max(1, math.floor(window / 1000000)))
end

if used + wanted <= limit then
  redis.call('HMSET', meta, 'token', used + wanted)
  remember(wanted, expire, (expire - now) / 1000000)
  return {wanted, expire - now}
end
local over = used + wanted - limit
if partial_ok and over < wanted then
  redis.call('HMSET', meta, 'token', limit)
  remember(wanted - over, expire, (expire - now) / 1000000)
  return {wanted - over, expire - now}
end
return {0, 0}
"""
)

ROLLING_WINDOW_SCRIPT = (
    _DEDUP
    + """
local used = tonumber(redis.call('HGET', meta, 'token'))
local open_tokens = tonumber(redis.call('HGET', meta, 'bucket.token'))
local open_since = tonumber(redis.call('HGET', meta, 'bucket.timestamp'))
if not used or not open_tokens or not open_since then
  used, open_tokens, open_since = 0, 0, now
  redis.call('HMSET', meta, 'token', 0, 'bucket.token', 0, 'bucket.timestamp', now, 'key', 0)
end

-- close the open bucket once it is older than a bucket's length
if now - open_since + 1 > bucket then
  if open_tokens > 0 then
    local serial = redis.call('HINCRBY', meta, 'key', 1)
    redis.call('ZADD', data, open_since, tostring(serial) .. '.' .. tostring(open_tokens))
  end
  redis.call('HMSET', meta, 'bucket.token', 0, 'bucket.timestamp', now)
end

-- give back what buckets older than the window held
local oldest = now - window
local back = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', data, 0, oldest)) do
  back = back + tonumber(string.sub(member, string.find(member, '%.') + 1))
end
redis.call('ZREMRANGEBYSCORE', data, 0, oldest)
if back > 0 then
  used = math.max(used - back, 0)
  redis.call('HSET', meta, 'token', used)
end
redis.call('PEXPIRE', meta, math.max(1, math.floor(window / 1000000)))

local room = limit - used
if room <= 0 then
  return {0, 0}
end
local granted = wanted
if room < wanted then
  if not partial_ok then
    return {0, 0}
  end
  granted = room
end
redis.call('HINCRBY', meta, 'token', granted)
redis.call('HINCRBY', meta, 'bucket.token', granted)
remember(granted, now + window, window / 1000000)
return {granted, window}
"""
)


class Algorithm(enum.Enum):
    FIXED_WINDOW = 0
    ROLLING_WINDOW = 1


@attrs.frozen
class Override:
    dimensions: Mapping[str, str]
    max_amount: int

    @property
    def key_suffix(self) -> bytes:
        lines = "".join(f"{k}\t{self.dimensions[k]}\n" for k in sorted(self.dimensions))
        return b"-" + str(_values.fnv32a(lines.encode("utf-8", "surrogatepass"))).encode()


@attrs.frozen
class QuotaLimit:
    name: str
    max_amount: int
    valid_duration: datetime.timedelta
    bucket_duration: datetime.timedelta = _ZERO
    rate_limit_algorithm: Algorithm = Algorithm.FIXED_WINDOW
    overrides: tuple[Override, ...] = ()


@attrs.frozen
class RedisQuotaParams:
    quotas: tuple[QuotaLimit, ...]
    redis_server_url: str = "localhost:6379"
    connection_pool_size: int = 10

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> RedisQuotaParams:
        found = _READ.fields(params, "", ["quotas", "redis_server_url", "connection_pool_size"])
        if "quotas" not in found or not found["quotas"][1]:
            raise _READ.error("quotas", "quota should not be empty")
        quotas = [_quota(path, item) for path, item in _READ.items(*found["quotas"])]
        names: set[str] = set()
        for index, quota in enumerate(quotas):
            if quota.name in names:
                raise _READ.error(f"quotas[{index}].name", f"quota {quota.name!r} is defined twice")
            names.add(quota.name)
        url = "localhost:6379"
        if "redis_server_url" in found:
            url = _READ.string(*found["redis_server_url"])
            if not url:
                raise _READ.error(found["redis_server_url"][0], "should not be empty")
            _address(found["redis_server_url"][0], url)
        pool = 10
        if "connection_pool_size" in found:
            path, value = found["connection_pool_size"]
            pool = _READ.integer(path, value)
            if pool < 0:
                raise _READ.error(path, f"connection_pool_size of {pool} is invalid, must be > 0")
            pool = pool or 10
        return cls(tuple(quotas), url, pool)


def _quota(path: str, item: object) -> QuotaLimit:
    names = ["name", "max_amount", "valid_duration", "bucket_duration"]
    q = _READ.fields(item, path, [*names, "rate_limit_algorithm", "overrides"])
    name = _READ.string(*q["name"]) if "name" in q else ""
    if not name:
        raise _READ.error(f"{path}.name", "quotas.name should not be empty")
    max_amount = _READ.integer(*q["max_amount"]) if "max_amount" in q else 0
    valid = _READ.duration(*q["valid_duration"]) if "valid_duration" in q else _ZERO
    if valid <= _ZERO:
        raise _READ.error(f"{path}.validDuration", "must be > 0")
    bucket = _READ.duration(*q["bucket_duration"]) if "bucket_duration" in q else _ZERO
    algorithm = Algorithm.FIXED_WINDOW
    if "rate_limit_algorithm" in q:
        algorithm = _READ.enum(*q["rate_limit_algorithm"], Algorithm)
    if algorithm is Algorithm.ROLLING_WINDOW:
        if bucket <= _ZERO:
            raise _READ.error(
                f"{path}.bucketDuration", "must be > 0 for the ROLLING_WINDOW algorithm"
            )
        if bucket >= valid:
            raise _READ.error(
                f"{path}.validDuration",
                f"{valid} should be longer than bucketDuration {bucket} for ROLLING_WINDOW",
            )
    overrides: list[Override] = []
    for opath, oitem in _READ.items(*q["overrides"]) if "overrides" in q else []:
        o = _READ.fields(oitem, opath, ["dimensions", "max_amount"])
        amount = _READ.integer(*o["max_amount"]) if "max_amount" in o else 0
        if amount <= 0:
            raise _READ.error(f"{opath}.maxAmount", "quotas.overrides.max_amount must be > 0")
        dims = _READ.string_map(*o["dimensions"]) if "dimensions" in o else {}
        if not dims:
            raise _READ.error(f"{opath}.dimensions", "quotas.overrides.dimensions is empty")
        overrides.append(Override(dims, amount))
    return QuotaLimit(name, max_amount, valid, bucket, algorithm, tuple(overrides))


def _address(path: str, url: str) -> tuple[str, int, int]:
    """``host:port`` (go-redis's Addr) or a ``redis://host:port/db`` URL."""
    text = url if "://" in url else f"redis://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port or 6379
    except ValueError as exc:
        raise _READ.error(path, f"invalid redis address {url!r}: {exc}") from None
    if parts.scheme != "redis" or not parts.hostname:
        raise _READ.error(path, f"invalid redis address {url!r} (expected host:port)")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise _READ.error(path, f"invalid redis database {db_text!r} in {url!r}")
    return parts.hostname, port, int(db_text)


class RedisQuotaHandler(Handler):
    adapter: ClassVar[str] = "redisquota"
    templates: ClassVar[frozenset[str]] = frozenset({"quota"})

    def __init__(
        self,
        name: str,
        params: RedisQuotaParams,
        client: aioredis.Redis,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(name)
        self.params = params
        self._client = client
        self._clock_ns = clock_ns
        self._limits = {quota.name: quota for quota in params.quotas}
        self._scripts = {
            Algorithm.FIXED_WINDOW: client.register_script(FIXED_WINDOW_SCRIPT),
            Algorithm.ROLLING_WINDOW: client.register_script(ROLLING_WINDOW_SCRIPT),
        }

    @classmethod
    async def create(
        cls,
        name: str,
        params: Mapping[str, Any] | None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        socket_timeout: float = 1.0,
    ) -> RedisQuotaHandler:
        """Parse ``params``, connect, ping and load both scripts (as Istio's Validate does)."""
        parsed = RedisQuotaParams.from_dict(params)
        host, port, db = _address("redisServerUrl", parsed.redis_server_url)
        client = aioredis.Redis(
            host=host,
            port=port,
            db=db,
            max_connections=parsed.connection_pool_size,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # one immediate retry survives a pooled connection that Redis closed; no backoff,
            # so a Redis that is gone costs one round of connection attempts, not seconds
            retry=Retry(NoBackoff(), 1),
        )
        handler = cls(name, parsed, client, clock_ns=clock_ns)
        try:
            await client.ping()
            for script in (FIXED_WINDOW_SCRIPT, ROLLING_WINDOW_SCRIPT):
                await client.script_load(script)
        except (redis.exceptions.RedisError, OSError) as exc:
            await client.aclose()
            raise HandlerBuildError(
                f"redisquota: could not create a connection to redis server at "
                f"{parsed.redis_server_url}: {exc}"
            ) from None
        return handler

    def key_and_limit(self, instance: Quota) -> tuple[bytes, int]:
        """The Redis key prefix and the max amount that apply to ``instance``."""
        quota = self._limits.get(instance.name)
        if quota is None:
            known = ", ".join(sorted(self._limits))
            raise AdapterError(f"no quota named {instance.name!r} in redisquota params ({known})")
        key = _values.quota_key(quota.name, instance.dimensions)
        for override in quota.overrides:
            if all(
                k in instance.dimensions and _values.string_equals(v, instance.dimensions[k])
                for k, v in override.dimensions.items()
            ):
                return key + override.key_suffix, override.max_amount
        return key, quota.max_amount

    async def handle_quota(self, instance: Quota, args: QuotaArgs) -> QuotaResult:
        key, max_amount = self.key_and_limit(instance)
        quota = self._limits[instance.name]
        script = self._scripts[quota.rate_limit_algorithm]
        argv = [
            max_amount,
            timeutil.duration_nanos(quota.valid_duration),
            timeutil.duration_nanos(quota.bucket_duration),
            1 if args.best_effort else 0,
            args.amount,
            self._clock_ns(),
            args.deduplication_id,
        ]
        try:
            reply = await script(keys=[key + b".meta", key + b".data"], args=argv)
        except (redis.exceptions.RedisError, OSError) as exc:
            return QuotaResult(
                status=RpcStatus(
                    Code.UNAVAILABLE,
                    f"redisquota: redis at {self.params.redis_server_url} failed: "
                    f"{exc or type(exc).__name__}",
                )
            )
        if (
            not isinstance(reply, list)
            or len(reply) != 2
            or not all(isinstance(part, int) for part in reply)
        ):
            raise AdapterError(f"invalid response from the redis server: {reply!r}")
        granted, expiry = reply
        if granted <= 0:
            return QuotaResult(
                granted,
                timeutil.Duration.from_nanoseconds(expiry),
                RpcStatus(Code.RESOURCE_EXHAUSTED, "redisquota: Resource exhausted"),
            )
        return QuotaResult(granted, timeutil.Duration.from_nanoseconds(expiry))

    async def close(self) -> None:
        await self._client.aclose()

"""Quotas on Check through the wire: memquota, best effort, deduplication, redisquota replicas."""

from __future__ import annotations

import datetime

from grpclib.const import Status
from support.mixer_server import DENY_REVIEWS, serve
from support.redis_server import RedisServer

DENY_RATINGS = DENY_REVIEWS.replace('"reviews"', '"ratings"')

MEMQUOTA = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotahandler, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas:
    - name: requestcount.instance.istio-system
      maxAmount: 3
      validDuration: 30s
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcount, namespace: istio-system}
spec:
  compiledTemplate: quota
  params:
    dimensions:
      destination: destination.service.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions:
  - handler: quotahandler
    instances: [requestcount]
"""

REVIEWS = {"destination.service.name": "reviews"}


async def test_memquota_grants_until_the_limit_then_nothing() -> None:
    async with serve(MEMQUOTA) as (_, proxy):
        results = []
        for _ in range(4):
            response = await proxy.check(REVIEWS, quotas={"RequestCount": (1, False)})
            results.append(response.quotas["RequestCount"])  # short names match ignoring case
        assert [result.granted_amount for result in results] == [1, 1, 1, 0]
        # exhaustion shows as amount 0 only: Mixer never fills the quota's status
        assert all(r.status is not None and r.status.code == Status.OK.value for r in results)
        assert results[0].valid_duration == datetime.timedelta(seconds=30)
        refs = results[0].referenced_attributes
        assert refs is not None and len(refs.attribute_matches) > 0
        # another destination has its own count
        other = await proxy.check(
            {"destination.service.name": "ratings"}, quotas={"requestcount": (1, False)}
        )
        assert other.quotas["requestcount"].granted_amount == 1


async def test_best_effort_gets_what_is_left_and_a_repeated_dedup_id_is_not_counted_twice() -> None:
    async with serve(MEMQUOTA) as (_, proxy):
        first = await proxy.check(
            REVIEWS, quotas={"requestcount": (2, False)}, deduplication_id="call-1"
        )
        retry = await proxy.check(
            REVIEWS, quotas={"requestcount": (2, False)}, deduplication_id="call-1"
        )
        assert first.quotas["requestcount"].granted_amount == 2
        assert retry.quotas["requestcount"].granted_amount == 2  # the same grant, not counted
        strict = await proxy.check(REVIEWS, quotas={"requestcount": (2, False)})
        assert strict.quotas["requestcount"].granted_amount == 0
        lenient = await proxy.check(REVIEWS, quotas={"requestcount": (2, True)})
        assert lenient.quotas["requestcount"].granted_amount == 1


async def test_a_quota_no_rule_configures_is_granted_in_full_for_a_minute() -> None:
    async with serve(MEMQUOTA) as (_, proxy):
        response = await proxy.check(REVIEWS, quotas={"unknownquota": (7, False)})
        result = response.quotas["unknownquota"]
        assert result.granted_amount == 7
        assert result.valid_duration == datetime.timedelta(minutes=1)


async def test_quotas_are_not_charged_when_the_precondition_fails() -> None:
    async with serve(MEMQUOTA + "---\n" + DENY_RATINGS) as (_, proxy):
        ratings = {"destination.service.name": "ratings"}
        for _ in range(5):
            denied = await proxy.check(ratings, quotas={"requestcount": (1, False)})
            assert denied.precondition is not None and denied.precondition.status is not None
            assert denied.precondition.status.code == Status.PERMISSION_DENIED.value
            assert denied.quotas == {}


def redisquota(url: str, name: str) -> str:
    return f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: redishandler, namespace: istio-system}}
spec:
  compiledAdapter: redisquota
  params:
    redisServerUrl: {url}
    quotas:
    - name: {name}.instance.istio-system
      maxAmount: 5
      validDuration: 60s
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: {name}, namespace: istio-system}}
spec:
  compiledTemplate: quota
  params:
    dimensions:
      destination: destination.service.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: quota, namespace: istio-system}}
spec:
  actions:
  - handler: redishandler
    instances: [{name}]
"""


async def test_two_replicas_share_one_redisquota_limit(redis_server: RedisServer) -> None:
    config = redisquota(redis_server.url, "sharedcount")
    async with serve(config) as (_, first), serve(config) as (_, second):
        granted = []
        for proxy in (first, second, first, second, first, second, first, second):
            response = await proxy.check(REVIEWS, quotas={"sharedcount": (1, False)})
            granted.append(response.quotas["sharedcount"].granted_amount)
        assert granted == [1, 1, 1, 1, 1, 0, 0, 0]
        # a retried call (the same deduplication id) on the other replica is not charged again
        again = await second.check(
            {"destination.service.name": "ratings"},
            quotas={"sharedcount": (2, False)},
            deduplication_id="retried",
        )
        retried = await first.check(
            {"destination.service.name": "ratings"},
            quotas={"sharedcount": (2, False)},
            deduplication_id="retried",
        )
        rest = await first.check(
            {"destination.service.name": "ratings"}, quotas={"sharedcount": (5, True)}
        )
        assert again.quotas["sharedcount"].granted_amount == 2
        assert retried.quotas["sharedcount"].granted_amount == 2
        assert rest.quotas["sharedcount"].granted_amount == 3


async def test_a_check_asking_for_thousands_of_quotas_gets_an_answer_for_each() -> None:
    async with serve(MEMQUOTA) as (_, proxy):
        asked = {f"quota-{n}": (1, False) for n in range(3000)} | {"requestcount": (1, False)}
        response = await proxy.check(REVIEWS, quotas=asked)
        assert len(response.quotas) == 3001
        assert response.quotas["quota-2999"].granted_amount == 1  # not configured: granted
        assert response.quotas["requestcount"].granted_amount == 1
        again = await proxy.check(REVIEWS, quotas={"requestcount": (3, False)})
        assert again.quotas["requestcount"].granted_amount == 0  # 1 of 3 was used above

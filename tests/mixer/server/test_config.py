"""Configuration: broken pieces are reported while the rest works; changes apply without restart."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import httpx
import pytest
from grpclib.const import Status
from grpclib.const import Status as Code
from support.mixer_server import DENY_REVIEWS as DENY
from support.mixer_server import apply_yaml, eventually, legacy, serve

from istio_sdk.api.istio.mixer.v1 import CheckResponse
from istio_sdk.config import ConfigStore
from istio_sdk.mixer.adapters import ADAPTERS, CheckResult, Handler, RpcStatus
from istio_sdk.mixer.templates import CheckInstance

BROKEN = """
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: typo, namespace: istio-system}
spec:
  match: request.size == "big"
  actions:
  - handler: deny
    instances: [nothing]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: unparsable, namespace: istio-system}
spec:
  match: destination.service.name = "ratings"
  actions:
  - handler: deny
    instances: [nothing]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: badinstance, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params:
    value: source.nosuchattribute
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: usesbadinstance, namespace: istio-system}
spec:
  match: destination.service.name == "details"
  actions:
  - handler: deny
    instances: [badinstance]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: badquota, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas: [{name: q.instance.istio-system, maxAmount: many}]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: q, namespace: istio-system}
spec:
  compiledTemplate: quota
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions:
  - handler: badquota
    instances: [q]
"""


def code(response: CheckResponse) -> int:
    assert response.precondition is not None and response.precondition.status is not None
    return response.precondition.status.code


async def test_rules_that_fail_to_compile_are_reported_and_the_others_keep_working() -> None:
    async with serve(DENY + "---\n" + BROKEN) as (server, proxy):
        problems: dict[str, str] = {}
        for problem in server.problems:  # one line per name, its messages joined
            problems[problem.name] = "; ".join(
                filter(None, [problems.get(problem.name), problem.message])
            )
        assert problems["typo.rule.istio-system"] == (
            'match: EQ($request.size, "big") arg 2 ("big") typeError got STRING, expected INT64'
        )
        assert problems["unparsable.rule.istio-system"].startswith(
            "match: unable to parse expression"
        )
        assert problems["badinstance.instance.istio-system"] == (
            "value: unknown attribute source.nosuchattribute"
        )
        assert problems["usesbadinstance.rule.istio-system"] == (
            "actions[0]: no instance badinstance.instance.istio-system; "
            "no usable action; the rule is skipped"
        )
        assert "maxAmount: expected an integer" in problems["badquota.handler.istio-system"]
        assert [rule.name for rule in server.routing.rules] == [
            "denyreviews.rule.istio-system",
            "quota.rule.istio-system",
        ]

        assert code(await proxy.check({"destination.service.name": "reviews"})) == 7
        fine = await proxy.check(
            {"destination.service.name": "ratings", "request.size": 10},
            quotas={"q": (1, False)},
        )
        assert code(fine) == Status.OK.value
        # the quota's handler did not build: nobody configures the quota, granted in full
        assert fine.quotas["q"].granted_amount == 1

        port = await server.start_prometheus("127.0.0.1", 0)
        async with httpx.AsyncClient() as client:
            debug = (await client.get(f"http://127.0.0.1:{port}/debug/config")).json()
        assert len(debug["problems"]) == len(server.problems) == 6
        assert any(
            line.startswith("rule typo.rule.istio-system: match: EQ(") for line in debug["problems"]
        )


async def test_config_changes_apply_without_a_restart() -> None:
    store = ConfigStore()
    async with serve(store=store) as (server, proxy):
        reviews = {"destination.service.name": "reviews"}
        assert code(await proxy.check(reviews)) == Status.OK.value

        apply_yaml(store, DENY)
        await eventually(lambda: proxy.check(reviews), lambda r: code(r) == 7)

        apply_yaml(store, DENY.replace("code: 7, message: closed", "code: 16, message: who?"))
        denied = await eventually(lambda: proxy.check(reviews), lambda r: code(r) == 16)
        assert denied.precondition is not None and denied.precondition.status is not None
        assert denied.precondition.status.message == "deny.handler.istio-system:who?"

        store.delete("rule", "denyreviews", "istio-system")
        await eventually(lambda: proxy.check(reviews), lambda r: code(r) == Status.OK.value)
        assert server.problems == ()


QUOTA = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotahandler, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas: [{name: requestcount.instance.istio-system, maxAmount: 2, validDuration: 60s}]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcount, namespace: istio-system}
spec:
  compiledTemplate: quota
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions:
  - handler: quotahandler
    instances: [requestcount]
"""


async def test_a_handler_whose_params_did_not_change_keeps_its_state_across_a_change() -> None:
    store = ConfigStore()
    apply_yaml(store, QUOTA)
    async with serve(store=store) as (server, proxy):
        ask = {"requestcount": (1, False)}
        assert (await proxy.check({}, quotas=ask)).quotas["requestcount"].granted_amount == 1
        builds = server.stats.config_builds
        apply_yaml(store, DENY)  # an unrelated change
        await eventually(
            lambda: proxy.check({"destination.service.name": "reviews"}),
            lambda r: code(r) == 7,
        )
        assert server.stats.config_builds > builds
        granted = [
            (await proxy.check({}, quotas=ask)).quotas["requestcount"].granted_amount
            for _ in range(2)
        ]
        assert granted == [1, 0]  # the count from before the change still holds


async def test_a_problem_is_logged_once_not_at_every_rebuild(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ConfigStore()
    apply_yaml(store, DENY + "---\n" + BROKEN)
    caplog.set_level(logging.WARNING, logger="istio_sdk.mixer.server")
    async with serve(store=store) as (server, proxy):
        apply_yaml(store, QUOTA)  # unrelated changes: two more rebuilds
        apply_yaml(store, DENY.replace("closed", "shut"))
        await eventually(
            lambda: proxy.check({"destination.service.name": "reviews"}),
            lambda r: (
                r.precondition is not None
                and r.precondition.status is not None
                and r.precondition.status.message.endswith(":shut")
            ),
        )
        assert server.stats.config_builds >= 2
    typo = [r for r in caplog.records if "rule typo.rule.istio-system" in r.getMessage()]
    assert len(typo) == 1


class _Slow(Handler):
    """Answers after a while, and fails if it was closed in between."""

    adapter = "slow"
    templates = frozenset({"checknothing"})
    started = asyncio.Event()

    @classmethod
    async def create(cls, name: str, params: object) -> _Slow:
        handler = cls(name)
        handler.closed = False
        return handler

    async def handle_check(self, instance: CheckInstance) -> CheckResult:
        type(self).started.set()
        await asyncio.sleep(0.5)
        if self.closed:
            raise RuntimeError("closed while answering")
        return CheckResult(RpcStatus(Code.PERMISSION_DENIED, "slowly"), datetime.timedelta(1), 1)

    async def close(self) -> None:
        self.closed = True


SLOW = DENY.replace("compiledAdapter: denier", "compiledAdapter: slow").replace(
    "params: {status: {code: 7, message: closed}}", "params: {version: 1}"
)


async def test_a_call_in_flight_finishes_on_the_handler_it_started_with() -> None:
    registry: Any = ADAPTERS
    registry["slow"] = _Slow
    _Slow.started = asyncio.Event()
    store = ConfigStore()
    apply_yaml(store, SLOW)
    try:
        async with serve(store=store, adapter_timeout=2) as (server, proxy):
            call = asyncio.ensure_future(proxy.check({"destination.service.name": "reviews"}))
            await _Slow.started.wait()
            before = server.handlers["deny.handler.istio-system"]
            apply_yaml(store, SLOW.replace("version: 1", "version: 2"))  # a new handler
            await eventually(
                lambda: asyncio.sleep(0, server.handlers["deny.handler.istio-system"]),
                lambda handler: handler is not before,
            )
            response = await call
            assert response.precondition is not None and response.precondition.status is not None
            assert response.precondition.status.message == "deny.handler.istio-system:slowly"
        assert before.closed  # and closed once the server stopped, at the latest
    finally:
        del registry["slow"]


async def test_changes_to_legacy_kinds_apply_without_a_restart_too() -> None:
    store = ConfigStore()
    apply_yaml(
        store,
        DENY.replace("handler: deny", "handler: closed.denier").replace(
            "instances: [nothing]", "instances: [nothing.checknothing]"
        ),
    )
    async with serve(store=store) as (server, proxy):
        assert {p.name for p in server.problems} == {"denyreviews.rule.istio-system"}
        store.apply(legacy("denier", "closed", {"status": {"code": 8, "message": "legacy"}}))
        store.apply(legacy("checknothing", "nothing", {}))
        denied = await eventually(
            lambda: proxy.check({"destination.service.name": "reviews"}),
            lambda r: code(r) == 8,
        )
        assert denied.precondition is not None and denied.precondition.status is not None
        assert denied.precondition.status.message == "closed.denier.istio-system:legacy"
        assert server.problems == ()

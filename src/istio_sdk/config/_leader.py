"""``LeaderElector``: one leader among replicas through a ``coordination.k8s.io/v1`` Lease.

The rules are client-go's ``leaderelection`` package's:

- a replica becomes leader by creating the Lease, or by updating it once the holder has not
  renewed it for ``lease_duration`` seconds as measured on this replica's own clock (the time
  it last saw the record change, not the ``renewTime`` written in it, so clock skew between
  replicas does not matter); taking it from another holder bumps ``leaseTransitions`` and sets
  ``acquireTime``;
- the leader renews (``renewTime``) every ``retry_period``; if it cannot renew for
  ``renew_deadline`` it stops leading;
- every write carries the resourceVersion last read, so two replicas racing for an expired
  Lease cannot both win: the API answers the second with 409 Conflict;
- :meth:`LeaderElector.stop` releases the Lease (empty ``holderIdentity``, a 1 s duration), so
  another replica takes over at its next try instead of after ``lease_duration``.

Requests go through ``lightkube``'s ``AsyncClient`` (the typed ``Lease`` model).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from istio_sdk.timeutil import utcnow

__all__ = ["LeaderElector"]

log = logging.getLogger("istio_sdk.config.leader")


class LeaderElector:
    """Compete for the Lease ``namespace/name`` as ``identity`` through ``client`` (a
    ``lightkube.AsyncClient``).

    :attr:`is_leader` says whether this replica leads now; ``on_change(is_leader)`` is called
    each time that changes. :meth:`try_acquire_or_renew` is one round (for tests and scripts);
    :meth:`start` runs rounds every ``retry_period`` seconds until :meth:`stop`.
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not identity:
            raise ValueError("a leader election needs a non-empty identity")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.is_leader = False
        self.transitions_seen = 0
        """``leaseTransitions`` of the Lease as last read or written."""
        self._clock = clock or time.monotonic
        self._observed: tuple[str, str, int] | None = None  # holder, renewTime, transitions
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- one round -------------------------------------------------------------------------
    def _spec(self, *, holder: str, acquired: datetime.datetime | None, transitions: int) -> Any:
        from lightkube.models.coordination_v1 import LeaseSpec

        return LeaseSpec(
            holderIdentity=holder,
            leaseDurationSeconds=max(1, math.ceil(self.lease_duration)),
            acquireTime=acquired,
            renewTime=utcnow(),
            leaseTransitions=transitions,
        )

    async def try_acquire_or_renew(self) -> bool:
        """One round: take or renew the Lease if this replica may. True: it leads now."""
        from lightkube import ApiError
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.coordination_v1 import Lease

        now = self._clock()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                log.warning("cannot read lease %s/%s: %s", self.namespace, self.name, exc)
                return False
            fresh = Lease(
                metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(holder=self.identity, acquired=utcnow(), transitions=0),
            )
            try:
                await self.client.create(fresh)
            except ApiError as exc2:  # another replica created it first
                log.info("lost the race to create lease %s: %s", self.name, exc2.status.message)
                return False
            self.transitions_seen = 0
            self._observe(self.identity, "", 0, now)
            return True
        except Exception as exc:  # connection refused, TLS, a garbage response
            log.warning("cannot read lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        spec = lease.spec
        holder = (spec.holderIdentity if spec else None) or ""
        renewed = str(spec.renewTime) if spec and spec.renewTime else ""
        transitions = (spec.leaseTransitions if spec else None) or 0
        if self._observed != (holder, renewed, transitions):
            self._observe(holder, renewed, transitions, now)
        duration = (spec.leaseDurationSeconds if spec else None) or self.lease_duration
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # someone else holds a lease that has not expired (by our clock)
        taking = holder != self.identity
        lease.spec = self._spec(
            holder=self.identity,
            acquired=utcnow() if taking else (spec.acquireTime if spec else None),
            transitions=transitions + 1 if taking else transitions,
        )
        try:
            await self.client.replace(lease)  # carries the resourceVersion read above
        except ApiError as exc:
            log.info("cannot update lease %s: %s", self.name, exc.status.message)
            return False
        except Exception as exc:
            log.warning("cannot update lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        self.transitions_seen = lease.spec.leaseTransitions
        self._observe(self.identity, "", self.transitions_seen, now)
        return True

    def _observe(self, holder: str, renewed: str, transitions: int, now: float) -> None:
        self._observed = (holder, renewed, transitions)
        self._observed_at = now

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        log.info(
            "%s %s lease %s/%s",
            self.identity,
            "now holds" if leading else "no longer holds",
            self.namespace,
            self.name,
        )
        if self.on_change is not None:
            try:
                self.on_change(leading)
            except Exception:
                log.exception("leader election on_change callback failed")

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            ok = await self.try_acquire_or_renew()
            now = self._clock()
            if ok:
                self._last_renew = now
                self._set_leader(True)
            elif self.is_leader and now - self._last_renew >= self.renew_deadline:
                self._set_leader(False)  # could not renew in time: someone may take over
            elif self.is_leader and self._observed and self._observed[0] != self.identity:
                self._set_leader(False)  # the Lease says someone else holds it
            # a candidate waits a little longer, at random, so replicas do not try in step
            jitter = 0.0 if self.is_leader else 0.2 * random.random()
            await asyncio.sleep(self.retry_period * (1 + jitter))

    async def start(self) -> None:
        """Compete for (and, once held, renew) the Lease in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, *, release: bool = True) -> None:
        """Stop competing; with ``release`` a leader gives the Lease up at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if release and self.is_leader:
            await self._release()
        self._set_leader(False)

    async def _release(self) -> None:
        from lightkube.resources.coordination_v1 import Lease

        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is None or lease.spec.holderIdentity != self.identity:
                return
            lease.spec.holderIdentity = ""
            lease.spec.leaseDurationSeconds = 1
            lease.spec.renewTime = utcnow()
            await self.client.replace(lease)
        except Exception as exc:  # the Lease then simply expires
            log.warning("cannot release lease %s/%s: %s", self.namespace, self.name, exc)

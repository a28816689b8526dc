"""The Lease elector (sluice.shell.leader) against a fake Lease API and a fake clock."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from sluice.shell.kube import ApiError
from sluice.shell.leader import LeaseElector


class FakeLeases:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ApiError(503, "Service Unavailable")

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any]:
        self._check()
        if self.lease is None:
            raise ApiError(404, "Not Found")
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if self.lease is not None:
            raise ApiError(409, "Conflict")
        return self._store(lease)

    async def replace_lease(
        self, namespace: str, name: str, lease: dict[str, Any]
    ) -> dict[str, Any]:
        self._check()
        assert self.lease is not None
        if lease["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict")
        return self._store(lease)

    def _store(self, lease: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.lease = copy.deepcopy(lease)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.lease)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def elector(api: FakeLeases, clock: Clock, who: str, log: list[str]) -> LeaseElector:
    return LeaseElector(
        api,  # type: ignore[arg-type]
        "default",
        "sluice-operator",
        who,
        lease_duration=6,
        renew_deadline=4,
        retry_period=1,
        on_started=lambda: log.append(f"{who} started"),
        on_stopped=lambda: log.append(f"{who} stopped"),
        clock=clock,
    )


def test_one_leads_the_other_takes_over_after_the_lease_expires_on_its_own_clock() -> None:
    async def run() -> None:
        api, clock, log = FakeLeases(), Clock(), []
        a, b = elector(api, clock, "a", log), elector(api, clock, "b", log)
        assert await a.try_once() and not await b.try_once()
        clock.t = 5.9
        assert not await b.try_once()  # a's record unchanged for 5.9 s < 6 s
        assert await a.try_once()  # a renews: b's count starts again
        clock.t = 11.0
        assert not await b.try_once()
        clock.t = 17.0
        assert await b.try_once()  # 6 s without a renewal, as b saw it
        assert api.lease is not None and api.lease["spec"]["leaseTransitions"] == 1

    asyncio.run(run())


@pytest.mark.parametrize("lost", ["api down", "taken"])
def test_the_leader_is_demoted_past_the_renew_deadline_and_released_on_stop(lost: str) -> None:
    async def run() -> None:
        api, clock, log = FakeLeases(), Clock(), []
        a = elector(api, clock, "a", log)
        a.retry_period = 0

        async def until(what: str) -> None:
            for _ in range(1000):
                if what in log:
                    return
                clock.t += 0.5
                await asyncio.sleep(0)
            raise AssertionError(f"no {what!r} in {log}")

        task = asyncio.create_task(a.run())
        await until("a started")
        if lost == "api down":
            api.down = True
        else:
            assert api.lease is not None
            api.lease["spec"]["holderIdentity"] = "b"
            api.lease["spec"]["renewTime"] = "later"
        await until("a stopped")
        assert log == ["a started", "a stopped"]
        api.down = False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())


def test_release_hands_the_lease_over_at_once() -> None:
    async def run() -> None:
        api, clock, log = FakeLeases(), Clock(), []
        a, b = elector(api, clock, "a", log), elector(api, clock, "b", log)
        assert await a.try_once()
        a.is_leader = True
        await a.release()
        assert api.lease is not None
        assert "holderIdentity" not in api.lease["spec"]
        assert log == ["a stopped"]
        assert await b.try_once()  # no wait for an expiry

    asyncio.run(run())

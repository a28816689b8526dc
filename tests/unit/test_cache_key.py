"""sluice.core.cache_key: the key is stable, every listed input changes it, others do not."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.api import TaskSpec, parse_task_spec
from sluice.api.schedule import CachePolicy
from sluice.core.cache_key import (
    MAX_ENTRY_AGE_SECONDS,
    CacheEntry,
    cache_key,
    effective_cache,
    ignores_cache,
    lookup,
    remember,
)

BASE: dict[str, Any] = {
    "image": "ghcr.io/acme/train:1.2",
    "command": ["python", "-m", "train"],
    "args": ["--lr", "0.1"],
    "workingDir": "/w",
    "env": [
        {"name": "MODE", "value": "full"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "cfg"}}],
    "params": [{"name": "lr"}, {"name": "epochs", "default": "3"}],
    "results": [{"name": "model"}],
    "resources": {"limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}},
    "cacheVersion": "a",
    "retry": {"limit": 1},
    "timeoutSeconds": 60,
    "serviceAccountName": "trainer",
    "podTemplate": {"spec": {"nodeSelector": {"pool": "gpu"}}},
}
PARAMS = {"lr": "0.1", "epochs": "3"}
UPSTREAM = {"prepare": {"uri": "s3://b/data"}}


def key(
    task: dict[str, Any] = BASE, params: dict[str, str] = PARAMS, upstream: Any = UPSTREAM
) -> str:
    return cache_key(parse_task_spec(task), params, upstream)


def changed(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


def test_the_key_is_a_versioned_sha256() -> None:
    k = key()
    assert k.startswith("v1-") and len(k) == 3 + 64
    assert k == key()


def test_the_key_is_the_same_in_another_process() -> None:
    code = (
        "from sluice.api import parse_task_spec; from sluice.core.cache_key import cache_key; "
        f"print(cache_key(parse_task_spec({BASE!r}), {PARAMS!r}, {UPSTREAM!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == key()


LISTED: dict[str, Callable[[], str]] = {
    "image": lambda: key(changed(image="ghcr.io/acme/train:1.3")),
    "command": lambda: key(changed(command=["python", "-m", "train2"])),
    "command unset": lambda: key({k: v for k, v in BASE.items() if k != "command"}),
    "args": lambda: key(changed(args=["--lr", "0.2"])),
    "args order": lambda: key(changed(args=["0.1", "--lr"])),
    "workingDir": lambda: key(changed(workingDir="/x")),
    "env value": lambda: key(changed(env=[{"name": "MODE", "value": "fast"}, BASE["env"][1]])),
    "env valueFrom": lambda: key(
        changed(
            env=[
                BASE["env"][0],
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k2"}}},
            ]
        )
    ),
    "envFrom": lambda: key(changed(envFrom=[{"configMapRef": {"name": "cfg2"}}])),
    "param value": lambda: key(params={**PARAMS, "lr": "0.2"}),
    "upstream result": lambda: key(upstream={"prepare": {"uri": "s3://b/other"}}),
    "upstream step": lambda: key(upstream={"prep": {"uri": "s3://b/data"}}),
    "declared results": lambda: key(changed(results=[{"name": "model"}, {"name": "auc"}])),
    "gpu count": lambda: key(changed(resources={"limits": {"cpu": "2", "nvidia.com/gpu": "2"}})),
    "gpu kind": lambda: key(changed(resources={"limits": {"cpu": "2", "amd.com/gpu": "1"}})),
    "cacheVersion": lambda: key(changed(cacheVersion="b")),
    "cacheVersion unset": lambda: key({k: v for k, v in BASE.items() if k != "cacheVersion"}),
}


@pytest.mark.parametrize("name", sorted(LISTED))
def test_every_listed_input_changes_the_key(name: str) -> None:
    assert LISTED[name]() != key()


UNLISTED: dict[str, Callable[[], str]] = {
    "retry": lambda: key(changed(retry={"limit": 5})),
    "timeout": lambda: key(changed(timeoutSeconds=3600)),
    "serviceAccountName": lambda: key(changed(serviceAccountName="other")),
    "podTemplate": lambda: key(changed(podTemplate={"spec": {"tolerations": []}})),
    "cpu and memory": lambda: key(
        changed(resources={"limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"}})
    ),
    "gpu spelled 1000m": lambda: key(
        changed(resources={"limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1000m"}})
    ),
    "hugepages": lambda: key(
        changed(resources={"limits": {"cpu": "2", "nvidia.com/gpu": "1", "hugepages-2Mi": "1Gi"}})
    ),
    "an undeclared param": lambda: key(params={**PARAMS, "unused": "x"}),
    "param default text": lambda: key(
        changed(params=[{"name": "lr", "description": "learning rate"}, {"name": "epochs"}])
    ),
    "result description": lambda: key(changed(results=[{"name": "model", "description": "uri"}])),
    "mapping order": lambda: key(params=dict(reversed(PARAMS.items()))),
}


@pytest.mark.parametrize("name", sorted(UNLISTED))
def test_unlisted_inputs_do_not_change_the_key(name: str) -> None:
    assert UNLISTED[name]() == key()


text = st.text(max_size=12)


@given(
    args=st.lists(text, max_size=4),
    params=st.dictionaries(st.sampled_from(["lr", "epochs"]), text),
    upstream=st.dictionaries(st.sampled_from(["a", "b"]), st.dictionaries(text, text, max_size=2)),
    version=st.one_of(st.none(), text),
)
def test_same_inputs_same_key_and_a_changed_arg_changes_it(
    args: list[str],
    params: dict[str, str],
    upstream: dict[str, dict[str, str]],
    version: str | None,
) -> None:
    task = changed(args=args, cacheVersion=version)
    assert key(task, params, upstream) == key(dict(task), dict(params), dict(upstream))
    assert key(changed(args=[*args, "x"], cacheVersion=version), params, upstream) != key(
        task, params, upstream
    )


# --- policy ---

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(step: str = "train", k: str = "v1-a", run: int = 1, age: float = 0) -> CacheEntry:
    return CacheEntry(step, k, run, T0 - timedelta(seconds=age), {"model": f"m{run}"})


def test_lookup_takes_the_newest_entry_within_max_age() -> None:
    entries = [entry(run=1, age=500), entry(run=2, age=100), entry(k="v1-b", run=3)]
    assert lookup(entries, "v1-a", now=T0, max_age_seconds=None) == entries[1]
    assert lookup(entries, "v1-a", now=T0, max_age_seconds=50) is None
    assert lookup(entries, "v1-c", now=T0, max_age_seconds=None) is None
    old = [entry(age=MAX_ENTRY_AGE_SECONDS + 1)]
    assert lookup(old, "v1-a", now=T0, max_age_seconds=None) is None


def test_remember_keeps_one_entry_per_step_and_key_and_a_cap() -> None:
    kept = remember([entry(run=1, age=10)], entry(run=2), now=T0)
    assert [e.run for e in kept] == [2]
    many: list[CacheEntry] = []
    for i in range(10):
        many = remember(many, entry(k=f"v1-{i}", run=i, age=100 - i), now=T0, cap=4)
    assert [e.run for e in many] == [9, 8, 7, 6]
    expired = remember([entry(k="v1-x", age=MAX_ENTRY_AGE_SECONDS + 5)], entry(), now=T0)
    assert [e.key for e in expired] == ["v1-a"]


def test_the_step_policy_wins_and_disabled_means_none() -> None:
    on, off = CachePolicy(enabled=True, max_age_seconds=60), CachePolicy(enabled=False)
    assert effective_cache(None, on) == on
    assert effective_cache(off, on) is None
    assert effective_cache(on, off) == on
    assert effective_cache(None, None) is None


def test_nocache_prefix() -> None:
    assert ignores_cache("nocache-2026-01-01")
    assert not ignores_cache("2026-01-01") and not ignores_cache(None) and not ignores_cache("")


def test_taskspec_is_the_input_type() -> None:
    assert isinstance(parse_task_spec(BASE), TaskSpec)

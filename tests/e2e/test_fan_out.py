"""Fan-out (issue 15) on the real control plane: one Job per combination with its own
params, a dynamic fan-out over a list result, minSuccess, a failed combination rerun
alone, maxParallel, and a kill -9 of the operator in the middle of a 50-wide fan-out.

A combination is made to fail by labelling its running pod ``sim.sluice.dev/outcome:
fail`` (the simulation contract, hack/cluster/kwok-stages.yaml): every combination shares
one pod template, so the test picks the one that fails."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.cluster import ROOT, Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"
MESSAGE = "sim.sluice.dev/termination-message"
COMBINATION = "sluice.dev/combination"


@pytest.fixture
def s(api_client: client.ApiClient, e2e_namespace: str) -> Sluice:
    return Sluice(api_client, e2e_namespace)


def _template(duration: str = "1s", message: dict[str, str] | None = None) -> dict[str, Any]:
    template = sim(duration=duration)
    if message is not None:
        template["metadata"]["annotations"][MESSAGE] = json.dumps(message)
    return template


def _sweep(duration: str = "1s", **matrix: Any) -> dict[str, Any]:
    return {
        "name": "sweep",
        "matrix": {
            "params": [
                {"name": "lr", "values": ["0.1", "0.01", "0.001"]},
                {"name": "depth", "values": ["4", "8"]},
            ],
            **matrix,
        },
        "task": {
            "image": BUSYBOX,
            "params": [{"name": "lr"}, {"name": "depth"}],
            "args": ["--lr=$(params.lr)", "--depth=$(params.depth)"],
            "env": [{"name": "LR", "value": "$(params.lr)"}],
            "results": [{"name": "auc"}],
            "podTemplate": _template(duration, {"auc": "0.9"}),
        },
    }


def _jobs_of(s: Sluice, pipeline: str, step: str) -> list[Any]:
    return [j for j in s.jobs(pipeline) if j.metadata.annotations["sluice.dev/task-name"] == step]


def _main(job: Any) -> Any:
    return next(c for c in job.spec.template.spec.containers if c.name == "main")


def _fail_combination(s: Sluice, pipeline: str, index: int) -> str:
    """Label the running pod of combination ``index`` to fail; returns its Job's name."""

    def running_pod() -> Any:
        pods = s.core.list_namespaced_pod(
            s.ns, label_selector=f"sluice.dev/pipeline={pipeline},{COMBINATION}={index}"
        ).items
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = wait_for(running_pod, timeout=60, what=f"combination {index}'s pod to run")
    s.core.patch_namespaced_pod(
        pod.metadata.name, s.ns, {"metadata": {"labels": {"sim.sluice.dev/outcome": "fail"}}}
    )
    return str(pod.metadata.labels["job-name"])


def test_a_3x2_sweep_gives_each_job_its_params_and_hands_on_the_results(s: Sluice) -> None:
    s.pipeline(
        "sweep",
        {
            "tasks": [
                _sweep(),
                {
                    "name": "best",
                    "params": [{"name": "aucs", "value": "$(tasks.sweep.results.auc)"}],
                    "task": {
                        "image": BUSYBOX,
                        "params": [{"name": "aucs"}],
                        "args": ["$(params.aucs)"],
                        "podTemplate": _template(),
                    },
                },
            ]
        },
    )
    st = s.wait_phase("sweep", "Succeeded", "Failed", "Degraded", timeout=120)
    assert st["phase"] == "Succeeded", st
    jobs = _jobs_of(s, "sweep", "sweep")
    seen = {
        int(j.metadata.labels[COMBINATION]): (tuple(_main(j).args), _main(j).env[0].value)
        for j in jobs
    }
    assert len(jobs) == 6
    assert seen[0] == (("--lr=0.1", "--depth=4"), "0.1")
    assert seen[5] == (("--lr=0.001", "--depth=8"), "0.001")
    assert len({args for args, _ in seen.values()}) == 6
    sweep = s.task_status("sweep", "sweep")
    assert sweep["matrix"]["width"] == 6 and sweep["matrix"]["done"] == "0-5"
    assert json.loads(sweep["results"]["auc"]) == ["0.9"] * 6
    (best,) = _jobs_of(s, "sweep", "best")
    assert _main(best).args == [json.dumps(["0.9"] * 6, separators=(",", ":"))]
    assert st["progress"] == "7/7"


def test_a_dynamic_fan_out_over_a_list_result(s: Sluice) -> None:
    shards = ["a", "b", "c", "d"]
    s.pipeline(
        "dyn",
        {
            "tasks": [
                {
                    "name": "list",
                    "task": {
                        "image": BUSYBOX,
                        "results": [{"name": "shards"}],
                        "podTemplate": _template(message={"shards": json.dumps(shards)}),
                    },
                },
                {
                    "name": "work",
                    "matrix": {
                        "params": [{"name": "shard", "fromResult": "$(tasks.list.results.shards)"}]
                    },
                    "task": {
                        "image": BUSYBOX,
                        "params": [{"name": "shard"}],
                        "args": ["--shard=$(params.shard)"],
                        "podTemplate": _template(),
                    },
                },
            ]
        },
    )
    st = s.wait_phase("dyn", "Succeeded", "Failed", "Degraded", timeout=120)
    assert st["phase"] == "Succeeded", st
    jobs = _jobs_of(s, "dyn", "work")
    args = {int(j.metadata.labels[COMBINATION]): _main(j).args for j in jobs}
    assert args == {i: [f"--shard={x}"] for i, x in enumerate(shards)}


def test_min_success_tolerates_a_failing_combination(s: Sluice) -> None:
    step = {**_sweep(duration="6s", minSuccess=5), "retry": {"limit": 0}}
    s.pipeline("tolerant", {"tasks": [step]})
    _fail_combination(s, "tolerant", 3)
    st = s.wait_phase("tolerant", "Succeeded", "Failed", "Degraded", timeout=120)
    assert st["phase"] == "Succeeded", st
    sweep = s.task_status("tolerant", "sweep")
    assert sweep["matrix"]["failed"] == 1 and sweep["matrix"]["succeeded"] == 5
    assert json.loads(sweep["results"]["auc"])[3] == ""


def test_a_failed_combination_is_rerun_alone_after_a_retry_request(s: Sluice) -> None:
    step = {**_sweep(duration="6s"), "retry": {"limit": 0}}
    s.pipeline("fix", {"tasks": [step]})
    failed_job = _fail_combination(s, "fix", 2)
    st = s.wait_phase("fix", "Degraded", "Succeeded", timeout=120)
    assert st["phase"] == "Degraded", st
    wait_for(
        lambda: s.task_status("fix", "sweep")["matrix"]["succeeded"] == 5,
        timeout=60,
        what="the other combinations to finish",
    )
    before = {j.metadata.name for j in _jobs_of(s, "fix", "sweep")}
    assert len(before) == 6 and failed_job in before
    s.annotate("fix", "sluice.dev/retry", "1")
    st = s.wait_phase("fix", "Succeeded", timeout=120)
    after = {j.metadata.name: j for j in _jobs_of(s, "fix", "sweep")}
    new = set(after) - before
    assert len(new) == 1, new
    (job,) = (after[n] for n in new)
    assert job.metadata.labels[COMBINATION] == "2"
    assert job.metadata.labels["sluice.dev/attempt"] == "2"


def test_max_parallel_is_never_exceeded(s: Sluice) -> None:
    step = {**_sweep(duration="2s", maxParallel=2)}
    s.pipeline("capped", {"maxParallel": 3, "tasks": [step]})
    peak = 0

    def done() -> bool:
        nonlocal peak
        # A combination counts as done once its pod succeeded (the pod view): count pods.
        pods = s.core.list_namespaced_pod(s.ns, label_selector="sluice.dev/pipeline=capped")
        live = [p for p in pods.items if p.status.phase not in ("Succeeded", "Failed")]
        peak = max(peak, len(live))
        assert len(live) <= 2, [p.metadata.name for p in live]
        return s.status("capped").get("phase") == "Succeeded"

    wait_for(done, timeout=120, what="the capped sweep to succeed", interval=0.2)
    assert peak >= 1
    assert len(_jobs_of(s, "capped", "sweep")) == 6


# ---------------------------------------------------------------------- kill -9


@pytest.fixture
def own_ns(crds: None, make_namespace: Callable[[str], str]) -> str:
    return make_namespace("fanout-")


@pytest.fixture
def start_operator(
    cluster: Cluster, own_ns: str, tmp_path: Path
) -> Iterator[Callable[[], OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        op = OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"operator-{len(started)}.log",
            namespaces=[own_ns],
            extra_args=["--lease-duration", "3"],
        )
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()


def test_kill_9_in_a_50_wide_fan_out_starts_no_combination_twice_and_loses_none(
    api_client: client.ApiClient, own_ns: str, start_operator: Callable[[], OperatorProcess]
) -> None:
    s = Sluice(api_client, own_ns)
    values = [str(i) for i in range(50)]
    s.pipeline(
        "wide",
        {
            "tasks": [
                {
                    "name": "shard",
                    "matrix": {"params": [{"name": "i", "values": values}], "maxParallel": 20},
                    "task": {
                        "image": BUSYBOX,
                        "params": [{"name": "i"}],
                        "args": ["$(params.i)"],
                        "podTemplate": _template("2s"),
                    },
                }
            ]
        },
    )
    op = start_operator()
    for target in (8, 30):
        wait_for(lambda t=target: len(s.jobs("wide")) >= t, timeout=90, what=f"{target} Jobs")
        op.kill()
        op = start_operator()
    st = s.wait_phase("wide", "Succeeded", "Failed", "Degraded", timeout=150)
    assert st["phase"] == "Succeeded", st
    jobs = s.jobs("wide")
    indexes = sorted(int(j.metadata.labels[COMBINATION]) for j in jobs)
    assert indexes == list(range(50))  # each combination once: none twice, none lost
    assert all(j.metadata.labels["sluice.dev/attempt"] == "1" for j in jobs)
    task = st["tasks"][0]
    assert task["matrix"]["succeeded"] == 50 and task["attempts"] == 50
    assert st["progress"] == "50/50"


def test_the_hyperparameter_sweep_example_runs(
    cluster: Cluster, api_client: client.ApiClient, e2e_namespace: str
) -> None:
    s = Sluice(api_client, e2e_namespace)
    example = ROOT / "examples" / "hyperparameter-sweep.yaml"
    cluster.kubectl("apply", "-n", e2e_namespace, "-f", str(example))
    st = s.wait_phase("hyperparameter-sweep", "Succeeded", "Degraded", "Failed", timeout=150)
    assert st["phase"] == "Succeeded", st
    assert st["results"] == {"best-model": "s3://acme/models/sim"}
    assert st["progress"] == "11/11"  # 6 combinations, select-best, list, 3 evaluations
    evaluate = _jobs_of(s, "hyperparameter-sweep", "evaluate")
    commands = sorted(_main(j).command[-1] for j in evaluate)
    assert commands == ["apac", "eu", "us"]

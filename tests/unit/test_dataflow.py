"""Unit tests for sluice.core.dataflow, and the building blocks of issue 14 used together."""

from __future__ import annotations

import time
from collections.abc import Mapping

from sluice.core import dag, references, settle, when
from sluice.core.dataflow import StepFlow, analyse, text_values, when_values
from sluice.core.references import Ref

TRAIN = StepFlow("train", results=["model-uri"], external=True)
EVALUATE = StepFlow(
    "evaluate",
    texts=list(references.iter_texts(None, ["--model=$(tasks.train.results.model-uri)"], None)),
    results=["auc"],
)
DEPLOY = StepFlow(
    "deploy",
    texts=list(
        references.iter_texts(
            None, None, [{"name": "MODEL", "value": "$(tasks.train.results.model-uri)"}]
        )
    ),
    when='double(tasks.evaluate.results.auc) >= 0.8 && params.threshold != ""',
)
REPORT = StepFlow("report", depends_on=["deploy"])
NOTIFY = StepFlow(
    "notify",
    texts=[("args[0]", "run $(tasks.status), deploy $(tasks.deploy.status)")],
    when='tasks.status != "Succeeded" || tasks.deploy.status == "Succeeded"',
)
MAIN = [TRAIN, EVALUATE, DEPLOY, REPORT]


def test_the_ml_lifecycle_flows() -> None:
    flow = analyse(["threshold"], MAIN, [NOTIFY])
    assert flow.problems == []
    assert flow.main_deps == {
        "train": [],
        "evaluate": ["train"],
        "deploy": ["train", "evaluate"],
        "report": ["deploy"],
    }
    assert flow.finally_deps == {"notify": []}
    assert flow.result_producers == {
        "train": [],
        "evaluate": ["train"],
        "deploy": ["train", "evaluate"],
        "report": [],
        "notify": [],
    }
    assert set(flow.whens) == {"deploy", "notify"}
    assert ("when", Ref.run_status()) in flow.refs["notify"]


def test_problems_name_steps_and_cycles() -> None:
    bad_train = StepFlow("train", when="tasks.deploy.phase == 'Succeeded'", results=["model-uri"])
    bad_deploy = StepFlow(
        "deploy",
        texts=[("args[0]", "$(tasks.evaluate.results.acc) $(tasks.Oops.results.x)")],
        when="tasks.evalute.results.auc == '1' || tasks.notify.phase == ''",
        depends_on=["train"],
    )
    flow = analyse([], [bad_train, EVALUATE, bad_deploy], [NOTIFY])
    messages = [p.message for p in flow.problems]
    assert messages[0] == 'task "deploy": args[0] has "$(tasks." that is not a reference: ' + (
        "a reference is $(tasks.NAME.results.RESULT), $(tasks.NAME.status) or $(tasks.status)"
    )
    assert messages[1].startswith('task "deploy": when: 1:22: unknown variable tasks.evalute')
    assert '"notify" is a finally task' in messages[1]
    assert 'declares no result "acc" (it declares "auc")' in messages[2]
    assert messages[-1].startswith("cycle: deploy -> ")
    assert '"train" refers to "deploy"' in messages[-1]
    assert flow.problems[-1].step is None
    assert [p.severity for p in flow.problems] == ["warning", "error", "error", "error"]


def test_when_and_text_values_come_from_the_status() -> None:
    flow = analyse(["threshold"], MAIN, [NOTIFY])
    results = {"train": {"model-uri": "s3://m/1"}, "evaluate": {"auc": "0.9"}}
    values = when_values(
        flow.whens["deploy"],
        params={"threshold": "x"},
        phases={},
        results=results,
    )
    assert when.evaluate(flow.whens["deploy"], values) is True
    refs = [r for _, r in flow.refs["notify"] if _ != "when"]
    texts = text_values(
        refs, results=results, run_status="Degraded", statuses={"deploy": "Blocked"}
    )
    assert references.substitute(NOTIFY.texts[0][1], texts, kubelet=True) == (
        "run Degraded, deploy Blocked"
    )


def run(auc: str, *, fail: str | None = None) -> dict[str, str]:
    """A whole run with the pure pieces: gate, outcome, finally, phase."""
    flow = analyse(["threshold"], MAIN, [NOTIFY])
    produced = {"train": {"model-uri": "s3://m/1"}, "evaluate": {"auc": auc}}
    phases = {s.name: "Pending" for s in [*MAIN, NOTIFY]}
    results: dict[str, Mapping[str, str]] = {}
    run_status: str | None = None

    def condition(
        step: str, now: Mapping[str, str]
    ) -> bool | when.WhenFalse | when.WhenError | None:
        compiled = flow.whens.get(step)
        if compiled is None:
            return None
        statuses = settle.step_statuses({s.name: now[s.name] for s in MAIN})
        values = when_values(
            compiled,
            params={"threshold": "x"},
            phases=now,
            results=results,
            run_status=run_status,
            statuses=statuses,
        )
        return when.decide(compiled, values)

    for _ in range(10):
        outcome = settle.main_outcome([phases[s.name] for s in MAIN])
        deps = flow.main_deps if outcome is None else flow.finally_deps
        if outcome is not None:
            run_status = outcome
        decisions = settle.gate(
            deps, phases, result_producers=flow.result_producers, condition=condition
        )
        if not decisions:
            break
        for step, decision in decisions.items():
            if decision.action != "run":
                phases[step] = "Skipped" if decision.action == "skip" else "Failed"
            elif step == fail:
                phases[step] = "Failed"
            else:
                phases[step] = "Succeeded"
                results[step] = produced.get(step, {})
        failed = {s for s, p in phases.items() if p == "Failed"}
        for blocked in dag.dependents(flow.main_deps, failed):
            phases[blocked] = "Blocked"
    phase, finished = settle.run_phase(
        [phases[s.name] for s in MAIN],
        [phases["notify"]],
        settle.main_outcome([phases[s.name] for s in MAIN]),
    )
    return {**phases, "run": str(phase), "finished": str(finished), "status": str(run_status)}


def test_deploy_runs_above_the_threshold_and_is_skipped_below() -> None:
    above = run("0.91")
    assert above["deploy"] == above["report"] == "Succeeded"
    assert above["notify"] == "Succeeded" and above["status"] == "Succeeded"
    assert (above["run"], above["finished"]) == ("Succeeded", "True")
    below = run("0.5")
    assert below["deploy"] == "Skipped"
    assert below["report"] == "Succeeded"  # it only dependsOn deploy: skipped counts as done
    assert below["notify"] == "Skipped"  # its when: Succeeded, and deploy was not
    assert (below["run"], below["finished"]) == ("Succeeded", "True")


def test_a_when_error_fails_the_step_and_finally_sees_degraded() -> None:
    result = run("abc")
    assert result["deploy"] == "Failed"
    assert result["report"] == "Blocked"
    assert result["status"] == "Degraded"
    assert result["notify"] == "Succeeded"
    assert (result["run"], result["finished"]) == ("Degraded", "True")


def test_300_steps_with_16_results_analyse_quickly() -> None:
    steps = [
        StepFlow(
            f"step-{i}",
            results=[f"r{j}" for j in range(16)],
            texts=[("args[0]", f"$(tasks.step-{i - 1}.results.r3)")] if i else [],
            when=f"$(tasks.step-{i - 1}.results.r0) != 'stop'" if i else None,
        )
        for i in range(300)
    ]
    started = time.perf_counter()
    flow = analyse(["p"], steps, [StepFlow("notify", when="tasks.status == 'Degraded'")])
    elapsed = time.perf_counter() - started
    assert flow.problems == []
    assert len(flow.whens) == 300
    assert flow.main_deps["step-299"] == ["step-298"]
    assert elapsed < 5  # about 0.2 s on a busy 2-core machine

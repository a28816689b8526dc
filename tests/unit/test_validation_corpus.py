"""The corpus of invalid manifests through the pure core, no cluster needed.

On the cluster (tests/integration/test_admission.py) each case is refused by the layer
its header names. Here: whatever the layer, the operator's own checks reject it too (an
object that never met the schema or the webhook still fails, never runs), and for the
webhook's cases with the exact fragment the API server shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.core.validation import check_pipeline, check_task
from support.world import World

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CASES = sorted(CORPUS.glob("*.yaml"))


def _load(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    text = path.read_text()
    meta = {
        key: value
        for line in text.splitlines()
        if line.startswith("# ") and ": " in line
        for key, value in [line[2:].split(": ", 1)]
        if key in ("layer", "expect")
    }
    obj: dict[str, Any] = yaml.safe_load(text)
    return obj, meta


def test_the_corpus_is_big_and_every_case_says_what_it_expects() -> None:
    layers = [_load(p)[1]["layer"] for p in CASES]

    assert len(CASES) >= 60
    assert set(layers) == {"schema", "cel", "webhook"}
    for path in CASES:
        obj, meta = _load(path)
        assert meta["expect"].strip()
        assert path.stem == f"{meta['layer']}-{obj['metadata']['name']}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_the_operator_rejects_every_corpus_case_too(path: Path) -> None:
    obj, meta = _load(path)
    name = obj["metadata"]["name"]
    if obj["kind"] == "Task":
        report = check_task(obj.get("spec"))
        assert report.errors, "the operator would use this Task"
        if meta["layer"] == "webhook":
            assert meta["expect"] in report.message()
        return
    report = check_pipeline(obj.get("spec"), name=name, tasks={})
    assert report.errors, "the operator would run this pipeline"
    if meta["layer"] == "webhook":
        refusal = report.refusal()
        assert refusal is not None and meta["expect"] in refusal
    # The reconciler fails it, with the findings' message and without creating a Job.
    w = World.of(obj.get("spec"), name=name)  # type: ignore[arg-type]
    plan = w.reconcile()
    assert w.phase == "Failed"
    assert w.status["message"] == report.message()
    assert plan.create == []


@pytest.mark.parametrize(
    "path",
    [p for p in CASES if _load(p)[1]["layer"] == "cel"],
    ids=lambda p: p.stem,
)
def test_cel_cases_get_the_same_words_from_the_operator(path: Path) -> None:
    obj, meta = _load(path)
    spec = obj.get("spec")
    report = check_task(spec) if obj["kind"] == "Task" else check_pipeline(spec, tasks={})

    assert meta["expect"] in report.message()

"""The validating webhook on the real control plane: `sluice run --admission local`.

Every webhook registration here is scoped (namespaceSelector) to this module's own
namespaces, so tests running concurrently elsewhere on the cluster never meet it, and
each operator removes it when it stops.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from sluice.core import validation
from sluice.shell import admission
from support.cluster import ROOT, Cluster
from support.operator import OperatorProcess, free_port
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster

CORPUS = ROOT / "tests" / "corpus"
BUSYBOX = "busybox:1.36"
CASES = sorted(CORPUS.glob("*.yaml"))


def header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}: "):
            return line.removeprefix(f"# {key}: ")
    raise AssertionError(f"{path.name} has no '# {key}:' line")


def _namespace(api_client: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    wait_for(sa, timeout=60, what=f"the default ServiceAccount in {name}")
    return name


@pytest.fixture(scope="module")
def namespaces(api_client: client.ApiClient) -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(_namespace(api_client, prefix))
        return made[-1]

    yield make
    core = client.CoreV1Api(api_client)
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


def registration(api_client: client.ApiClient, namespaces: list[str]) -> Any | None:
    api = client.AdmissionregistrationV1Api(api_client)
    try:
        return api.read_validating_webhook_configuration(
            admission.local_configuration_name(namespaces)
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_webhook_answers(cluster: Cluster, namespace: str) -> None:
    """Until the API server calls our webhook: its configuration is cached for a moment."""
    probe = CORPUS / "webhook-cycle-two.yaml"

    def refused_by_webhook() -> bool:
        r = cluster.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", str(probe), check=False
        )
        return "admission webhook" in r.stderr

    wait_for(refused_by_webhook, timeout=30, what="the webhook to answer the API server")


class WebhookOperator:
    """`sluice run --admission local` watching one namespace, plus its registration."""

    def __init__(
        self, cluster: Cluster, api_client: client.ApiClient, namespace: str, log: Path
    ) -> None:
        self.cluster = cluster
        self.api_client = api_client
        self.namespace = namespace
        self.proc = OperatorProcess(
            cluster.kubeconfig,
            log,
            namespaces=[namespace],
            extra_args=["--admission", "local", "--no-leader-elect"],
        )

    def start(self) -> WebhookOperator:
        self.proc.start()
        wait_for(
            lambda: registration(self.api_client, [self.namespace]),
            timeout=30,
            what="the ValidatingWebhookConfiguration",
        )
        wait_webhook_answers(self.cluster, self.namespace)
        return self

    def registration(self) -> Any | None:
        return registration(self.api_client, [self.namespace])


@pytest.fixture(scope="module")
def webhook(
    cluster: Cluster,
    crds: None,
    api_client: client.ApiClient,
    namespaces: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookOperator]:
    ns = namespaces("adm")
    op = WebhookOperator(cluster, api_client, ns, tmp_path_factory.mktemp("adm") / "op.log")
    op.start()
    yield op
    op.proc.stop()
    assert op.registration() is None, "a clean stop removes the registration"


# --- the registration ------------------------------------------------------------------


def test_registration_is_scoped_to_the_watched_namespace_and_fails_open(
    webhook: WebhookOperator,
) -> None:
    vwc = webhook.registration()
    assert vwc is not None
    assert {w.name for w in vwc.webhooks} == {admission.PIPELINE_WEBHOOK, admission.TASK_WEBHOOK}
    for w in vwc.webhooks:
        assert w.failure_policy == "Ignore"
        assert w.side_effects == "None"
        assert w.client_config.url.startswith("https://127.0.0.1:")
        assert w.client_config.ca_bundle
        (expr,) = w.namespace_selector.match_expressions
        assert (expr.key, expr.operator, expr.values) == (
            "kubernetes.io/metadata.name",
            "In",
            [webhook.namespace],
        )
        assert sorted(w.rules[0].operations) == ["CREATE", "UPDATE"]


def test_other_namespaces_never_meet_the_webhook(
    webhook: WebhookOperator, cluster: Cluster, namespaces: Callable[[str], str]
) -> None:
    other = namespaces("adm-other")
    r = cluster.kubectl(
        "apply", "-n", other, "-f", str(CORPUS / "webhook-cycle-two.yaml"), check=False
    )
    assert r.returncode == 0, r.stderr  # no webhook there: only the schema applies


# --- the corpus ------------------------------------------------------------------------


def test_corpus_has_enough_cases_in_every_layer() -> None:
    layers = [header(p, "layer") for p in CASES]
    assert len(CASES) >= 60
    assert {layer: layers.count(layer) for layer in set(layers)}.keys() == {
        "schema",
        "cel",
        "webhook",
    }


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_corpus_case_is_refused_at_apply_with_its_message(
    webhook: WebhookOperator, cluster: Cluster, path: Path
) -> None:
    expect, layer = header(path, "expect"), header(path, "layer")
    r = cluster.kubectl("apply", "-n", webhook.namespace, "-f", str(path), check=False)

    assert r.returncode != 0, f"{path.name} was admitted"
    assert expect in r.stderr, r.stderr
    by_webhook = "admission webhook" in r.stderr
    assert by_webhook == (layer == "webhook"), f"{path.name}: caught by the wrong layer: {r.stderr}"
    if layer == "webhook":
        kind = header_kind(path)
        assert f'admission webhook "validate.{kind}s.sluice.dev" denied the request' in r.stderr


def header_kind(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["kind"]).lower()


# --- what is admitted ------------------------------------------------------------------


def test_a_task_ref_to_a_task_not_applied_yet_is_a_warning_and_runs_once_it_is(
    webhook: WebhookOperator, cluster: Cluster, api_client: client.ApiClient
) -> None:
    manifest = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "early"},
        "spec": {"tasks": [{"name": "a", "taskRef": {"name": "later"}}]},
    }
    r = cluster.kubectl("apply", "-n", webhook.namespace, "-f", "-", stdin=yaml.safe_dump(manifest))

    assert 'Warning: task "a" refers to Task "later", which does not exist' in r.stderr
    s = Sluice(api_client, webhook.namespace)
    st = s.wait_phase("early", "Failed")
    assert (
        st["message"] == 'Invalid pipeline: task "a" refers to Task "later", which does not exist.'
    )
    s.task("later", {"image": BUSYBOX})
    s.wait_phase("early", "Succeeded")


def test_metadata_only_updates_are_admitted_spec_changes_are_checked(
    webhook: WebhookOperator, cluster: Cluster, api_client: client.ApiClient
) -> None:
    s = Sluice(api_client, webhook.namespace)
    s.pipeline("edit-me", {"tasks": [{"name": "a", "task": {"image": BUSYBOX}}]})
    s.wait_phase("edit-me", "Succeeded")
    s.annotate("edit-me", "sluice.dev/rerun", "1")  # metadata only: never refused
    with pytest.raises(client.ApiException) as refused:
        s.patch("edit-me", {"spec": INVALID})
    assert "denied the request: Invalid pipeline: cycle:" in str(refused.value.body)
    assert s.get("edit-me")["spec"]["tasks"] == [{"name": "a", "task": {"image": BUSYBOX}}]


# --- a dead webhook never locks anyone out --------------------------------------------


INVALID = {
    "tasks": [
        {"name": "extract", "dependsOn": ["clean"], "task": {"image": BUSYBOX}},
        {"name": "clean", "dependsOn": ["extract"], "task": {"image": BUSYBOX}},
    ]
}
INVALID_MESSAGE = "Invalid pipeline: cycle: clean -> extract -> clean."


def test_with_the_webhook_registered_but_dead_applies_succeed_and_the_operator_checks(
    cluster: Cluster,
    crds: None,
    api_client: client.ApiClient,
    namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    ns = namespaces("adm-dead")
    first = WebhookOperator(cluster, api_client, ns, tmp_path / "first.log").start()
    first.proc.kill()  # SIGKILL: no cleanup, the registration stays behind
    assert first.registration() is not None
    s = Sluice(api_client, ns)
    # The API server calls a webhook that is gone, ignores the failure and admits.
    s.pipeline("invalid", INVALID)
    s.pipeline("valid", {"tasks": [{"name": "a", "task": {"image": BUSYBOX}}]})

    # An operator without the webhook still refuses to run it, with the webhook's words.
    assert validation.check_pipeline(INVALID, name="invalid", tasks={}).refusal() == INVALID_MESSAGE
    plain = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "plain.log",
        namespaces=[ns],
        extra_args=["--no-leader-elect"],
    ).start()
    try:
        st = s.wait_phase("invalid", "Failed")
        assert st["message"] == INVALID_MESSAGE
        assert {c["type"]: c["reason"] for c in st["conditions"]}["Succeeded"] == "InvalidSpec"
        events = [e for e in s.events("invalid") if e.reason == "InvalidSpec"]
        assert events and events[0].message == INVALID_MESSAGE and events[0].type == "Warning"
        assert s.jobs("invalid") == []
        s.wait_phase("valid", "Succeeded")
    finally:
        plain.stop()

    # A new webhook takes the stale registration over; the invalid pipeline can still be
    # annotated (metadata only), and fixed.
    second = WebhookOperator(cluster, api_client, ns, tmp_path / "second.log").start()
    try:
        s.annotate("invalid", "sluice.dev/retry", "1")
        with pytest.raises(client.ApiException) as refused:
            s.patch(
                "invalid",
                {
                    "spec": {
                        "tasks": [
                            {"name": "extract", "dependsOn": ["ghost"], "task": {"image": BUSYBOX}},
                            {"name": "clean", "task": {"image": BUSYBOX}},
                        ]
                    }
                },
            )
        assert 'task \\"extract\\" depends on unknown task \\"ghost\\"' in str(refused.value.body)
        s.patch(
            "invalid",
            {
                "spec": {
                    "tasks": [
                        {"name": "extract", "task": {"image": BUSYBOX}},
                        {"name": "clean", "dependsOn": ["extract"], "task": {"image": BUSYBOX}},
                    ]
                }
            },
        )
        s.wait_phase("invalid", "Succeeded")
    finally:
        second.proc.stop()
    assert second.registration() is None


# --- bad input never affects good input -----------------------------------------------


def _twenty(prefix: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    bad_specs = [
        INVALID,
        {"tasks": [{"name": "a", "dependsOn": ["ghost"], "task": {"image": BUSYBOX}}]},
        {"tasks": [{"name": "a", "task": {"image": BUSYBOX, "command": ["$(params.nope)"]}}]},
        {"tasks": [{"name": "a", "task": {"image": "Busybox"}}]},
        {
            "tasks": [
                {
                    "name": "a",
                    "task": {
                        "image": BUSYBOX,
                        "params": [{"name": "x"}],
                        "command": ["$(params.x)"],
                    },
                }
            ]
        },
        {
            "tasks": [
                {
                    "name": "a",
                    "task": {
                        "image": BUSYBOX,
                        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                    },
                }
            ]
        },
        {
            "tasks": [
                {
                    "name": "a",
                    "task": {
                        "image": BUSYBOX,
                        "podTemplate": {"metadata": {"labels": {"x": "a b"}}},
                    },
                }
            ]
        },
        {"tasks": [{"name": "a", "task": {"image": BUSYBOX, "podTemplate": {"spce": {}}}}]},
        {
            "tasks": [
                {"name": "a", "task": {"image": BUSYBOX}},
                {"name": "b", "dependsOn": ["c"], "task": {"image": BUSYBOX}},
                {"name": "c", "dependsOn": ["b"], "task": {"image": BUSYBOX}},
            ]
        },
        {
            "tasks": [
                {"name": "a", "task": {"image": BUSYBOX, "env": [{"name": "A=B", "value": "x"}]}}
            ]
        },
    ]
    docs, bad, good = [], [], []
    for i, spec in enumerate(bad_specs):
        bad.append(f"{prefix}-bad-{i}")
        docs.append(
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Pipeline",
                "metadata": {"name": bad[-1]},
                "spec": spec,
            }
        )
        good.append(f"{prefix}-good-{i}")
        steps = [
            {"name": f"s{j}", "task": {"image": BUSYBOX, "podTemplate": sim(duration="1s")}}
            for j in range(3)
        ]
        steps[2]["dependsOn"] = ["s0", "s1"]
        docs.append(
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Pipeline",
                "metadata": {"name": good[-1]},
                "spec": {"tasks": steps},
            }
        )
    return docs, bad, good


def test_ten_invalid_and_ten_valid_applied_together_at_the_webhook(
    webhook: WebhookOperator, cluster: Cluster, api_client: client.ApiClient
) -> None:
    docs, bad, good = _twenty("w")
    r = cluster.kubectl(
        "apply", "-n", webhook.namespace, "-f", "-", stdin=yaml.safe_dump_all(docs), check=False
    )

    assert r.returncode != 0
    assert r.stderr.count("denied the request: Invalid pipeline:") == len(bad), r.stderr
    s = Sluice(api_client, webhook.namespace)
    for name in good:
        s.wait_phase(name, "Succeeded", timeout=120)
    existing = {
        p["metadata"]["name"]
        for p in s.custom.list_namespaced_custom_object(
            "sluice.dev", "v1alpha1", webhook.namespace, "pipelines"
        )["items"]
    }
    assert not existing & set(bad)


def test_ten_invalid_and_ten_valid_applied_together_without_a_webhook(
    cluster: Cluster,
    crds: None,
    api_client: client.ApiClient,
    namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    ns = namespaces("adm-off")
    op = OperatorProcess(
        cluster.kubeconfig, tmp_path / "op.log", namespaces=[ns], extra_args=["--no-leader-elect"]
    ).start()
    try:
        docs, bad, good = _twenty("o")
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump_all(docs))
        s = Sluice(api_client, ns)
        for name, doc in zip(bad, docs[::2], strict=True):
            st = s.wait_phase(name, "Failed", timeout=60)
            assert (
                st["message"]
                == validation.check_pipeline(doc["spec"], name=name, tasks={}).refusal()
            )
            assert s.jobs(name) == []
        for name in good:
            s.wait_phase(name, "Succeeded", timeout=120)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- operator log ---\n{op.log()}") from None
    finally:
        op.stop()


# --- cluster mode: certificates from files, the configuration from the chart ------------


def test_cluster_mode_serves_with_certificates_from_files_and_registers_nothing(
    cluster: Cluster,
    crds: None,
    api_client: client.ApiClient,
    namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    ns = namespaces("adm-cluster")
    # What the chart mounts from its Secret (self-signed or cert-manager's).
    certs = admission.make_certificates(tmp_path / "certs", hosts=["127.0.0.1"])
    port = free_port()
    op = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "op.log",
        namespaces=[ns],
        extra_args=[
            "--admission",
            "cluster",
            "--webhook-address",
            "127.0.0.1",
            "--webhook-port",
            str(port),
            "--webhook-cert-file",
            str(certs.cert),
            "--webhook-key-file",
            str(certs.key),
            "--no-leader-elect",
        ],
    ).start()
    api = client.AdmissionregistrationV1Api(api_client)
    # What the chart creates (with a Service reference where this test has a URL).
    name = f"sluice-chart-{ns}"
    vwc = admission.webhook_configuration(name, f"https://127.0.0.1:{port}", certs.ca_bundle, [ns])
    try:
        assert registration(api_client, [ns]) is None  # the operator registers nothing
        api.create_validating_webhook_configuration(vwc)
        wait_webhook_answers(cluster, ns)
        r = cluster.kubectl(
            "apply", "-n", ns, "-f", str(CORPUS / "webhook-unknown-dependency.yaml"), check=False
        )
        assert 'task "load" depends on unknown task "transform"' in r.stderr
        cluster.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            stdin=yaml.safe_dump(
                {
                    "apiVersion": "sluice.dev/v1alpha1",
                    "kind": "Pipeline",
                    "metadata": {"name": "ok"},
                    "spec": {"tasks": [{"name": "a", "task": {"image": BUSYBOX}}]},
                }
            ),
        )
        Sluice(api_client, ns).wait_phase("ok", "Succeeded")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- operator log ---\n{op.log()}") from None
    finally:
        api.delete_validating_webhook_configuration(name)
        op.stop()


def test_a_standby_replica_answers_reviews_as_well_as_the_leader(
    cluster: Cluster,
    crds: None,
    api_client: client.ApiClient,
    namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    # Two replicas with leader election: the Service in front of them may send a review
    # to either, so the one waiting for the Lease must answer it too.
    ns = namespaces("adm-ha")
    certs = admission.make_certificates(tmp_path / "certs", hosts=["127.0.0.1"])
    ports = [free_port(), free_port()]

    def replica(i: int) -> OperatorProcess:
        return OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"replica-{i}.log",
            namespaces=[ns],
            extra_args=[
                "--admission=cluster",
                "--webhook-address=127.0.0.1",
                f"--webhook-port={ports[i]}",
                f"--webhook-cert-file={certs.cert}",
                f"--webhook-key-file={certs.key}",
            ],
        )

    leader = replica(0).start()
    s = Sluice(api_client, ns)
    s.pipeline("first", {"tasks": [{"name": "a", "task": {"image": BUSYBOX}}]})
    s.wait_phase("first", "Succeeded")  # replica 0 leads
    standby = replica(1).start()
    api = client.AdmissionregistrationV1Api(api_client)
    name = f"sluice-standby-{ns}"
    vwc = admission.webhook_configuration(
        name, f"https://127.0.0.1:{ports[1]}", certs.ca_bundle, [ns]
    )
    try:
        api.create_validating_webhook_configuration(vwc)
        wait_webhook_answers(cluster, ns)  # answered by the standby
        assert "another replica leads" in standby.log()
        assert "leading (lease" not in standby.log()
        s.pipeline("second", {"tasks": [{"name": "a", "task": {"image": BUSYBOX}}]})
        s.wait_phase("second", "Succeeded")  # and the leader still runs everything
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- standby log ---\n{standby.log()}") from None
    finally:
        api.delete_validating_webhook_configuration(name)
        standby.stop()
        leader.stop()


def test_a_standby_stopped_cleanly_removes_its_local_registration(
    cluster: Cluster,
    crds: None,
    api_client: client.ApiClient,
    namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    # Issue 19, item 9: a replica with --admission local that is still waiting for the
    # Lease when it gets SIGTERM must not leave its webhook configuration behind.
    ns = namespaces("adm-standby")
    leader = OperatorProcess(cluster.kubeconfig, tmp_path / "leader.log", namespaces=[ns]).start()
    standby = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "standby.log",
        namespaces=[ns],
        extra_args=["--admission", "local"],
    )
    try:
        wait_for(lambda: "leading" in leader.log() or None, timeout=30, what="a leader")
        standby.start()
        wait_for(lambda: registration(api_client, [ns]), timeout=30, what="the registration")
        wait_webhook_answers(cluster, ns)  # a standby serves the webhook too
        assert "leading (lease" not in standby.log()
        standby.stop()
        assert standby.proc is not None and standby.proc.returncode == 0, standby.log()
        assert registration(api_client, [ns]) is None, standby.log()
    finally:
        standby.stop()
        leader.stop()
        with contextlib.suppress(client.ApiException):
            client.AdmissionregistrationV1Api(api_client).delete_validating_webhook_configuration(
                admission.local_configuration_name([ns])
            )

"""The webhook's own logic without a cluster: handlers, scoping, configuration, certificates."""

from __future__ import annotations

import base64
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import kopf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sluice.shell import admission
from sluice.shell.admission import (
    AdmissionConfig,
    install,
    local_configuration_name,
    make_certificates,
    namespace_selector,
    watched,
    webhook_configuration,
)

BUSYBOX = "busybox:1.36"
CYCLE = {
    "tasks": [
        {"name": "a", "dependsOn": ["b"], "task": {"image": BUSYBOX}},
        {"name": "b", "dependsOn": ["a"], "task": {"image": BUSYBOX}},
    ]
}
VALID = {"tasks": [{"name": "a", "task": {"image": BUSYBOX}}]}


def body(spec: Any, namespace: str = "team-a", **meta: Any) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Pipeline",
            "metadata": {"name": "p", "namespace": namespace, **meta},
            "spec": spec,
        }
    )


def handlers(*namespaces: str) -> admission._Handlers:
    return admission._Handlers(list(namespaces))


# --- scoping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "patterns", "expected"),
    [
        ("any", [], True),
        ("team-a", ["team-a"], True),
        ("team-b", ["team-a"], False),
        ("e2e-x", ["e2e-*"], True),
        ("e2e-pr-1", ["e2e-*, !*-pr-*"], False),
        ("prod", ["!kube-*"], True),
        ("kube-system", ["!kube-*"], False),
        (None, ["team-a"], False),
    ],
)
def test_watched_follows_kopf_namespace_patterns(
    namespace: str | None, patterns: list[str], expected: bool
) -> None:
    assert watched(namespace, patterns) is expected


def test_the_selector_names_exact_namespaces() -> None:
    assert namespace_selector(["b", "a", "a"]) == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
        ]
    }


@pytest.mark.parametrize("namespaces", [[], ["team-*"], ["a", "!b"]])
def test_all_namespaces_or_globs_select_everything_but_kube_system(
    namespaces: list[str],
) -> None:
    assert namespace_selector(namespaces) == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]
    }


def test_each_watched_scope_has_its_own_configuration_name() -> None:
    assert local_configuration_name([]) == "sluice-admission-local"
    assert local_configuration_name(["a", "b"]) == local_configuration_name(["b", "a"])
    assert local_configuration_name(["a"]) != local_configuration_name(["b"])
    assert len(local_configuration_name(["x" * 63] * 10)) <= 63


def test_the_configuration_fails_open_and_covers_create_and_update_only() -> None:
    vwc = webhook_configuration("n", "https://127.0.0.1:4443", b"PEM", ["team-a"])

    assert [w["name"] for w in vwc["webhooks"]] == [
        "validate.pipelines.sluice.dev",
        "validate.tasks.sluice.dev",
    ]
    for w, path in zip(vwc["webhooks"], ("/validate-pipeline", "/validate-task"), strict=True):
        assert w["failurePolicy"] == "Ignore"
        assert w["sideEffects"] == "None"
        assert w["clientConfig"] == {
            "url": f"https://127.0.0.1:4443{path}",
            "caBundle": base64.b64encode(b"PEM").decode(),
        }
        assert w["rules"][0]["operations"] == ["CREATE", "UPDATE"]
        assert "status" not in w["rules"][0]["resources"][0]
        assert w["namespaceSelector"] == namespace_selector(["team-a"])
        assert 1 <= w["timeoutSeconds"] <= 30


# --- handlers --------------------------------------------------------------------------


def test_an_invalid_pipeline_is_refused_with_the_operators_message() -> None:
    warnings: list[str] = []
    with pytest.raises(kopf.AdmissionError) as refused:
        handlers("team-a").pipeline(body(CYCLE), None, "CREATE", warnings)

    assert str(refused.value) == "Invalid pipeline: cycle: a -> b -> a."
    assert refused.value.code == 422
    assert warnings == []


def test_external_problems_are_warnings_from_the_tasks_of_the_namespace() -> None:
    asked: list[str] = []

    def tasks_of(namespace: str) -> dict[str, Any]:
        asked.append(namespace)
        return {"other": {"spec": {"image": BUSYBOX}}}

    spec = {"tasks": [{"name": "a", "taskRef": {"name": "later"}}]}
    warnings: list[str] = []
    admission._Handlers([], tasks_of).pipeline(body(spec), None, "CREATE", warnings)

    assert warnings == ['task "a" refers to Task "later", which does not exist']
    assert asked == ["team-a"]
    admission._Handlers([], tasks_of).pipeline(body(VALID), None, "CREATE", [])
    assert asked == ["team-a"], "no Task lookup for a pipeline without taskRefs"


def test_when_the_tasks_cannot_be_listed_task_refs_are_not_judged() -> None:
    spec = {"tasks": [{"name": "a", "taskRef": {"name": "later"}}]}
    warnings: list[str] = []
    admission._Handlers([], lambda ns: None).pipeline(body(spec), None, "CREATE", warnings)

    assert warnings == []


def test_the_task_lookup_is_the_operators_task_index_and_unknown_before_it_exists() -> None:
    from sluice.shell.handlers import TaskIndex

    index = TaskIndex()
    assert index.known("ns") is None  # before kopf's startup: taskRefs are not judged
    index.bind({"ns": [{"name": "t", "spec": {"image": "x"}}]})  # type: ignore[arg-type]
    assert index.known("ns") == {"t": {"name": "t", "spec": {"image": "x"}}}
    assert index.known("other") == {}


@pytest.mark.parametrize(
    ("operation", "old", "meta"),
    [
        ("UPDATE", body(CYCLE), {}),  # only metadata changed: retry/rerun annotations, labels
        ("UPDATE", body(VALID), {"deletionTimestamp": "2026-11-26T12:00:00Z"}),
        ("CREATE", None, {"namespace": "elsewhere"}),
    ],
)
def test_what_the_webhook_always_admits(
    operation: str, old: kopf.Body | None, meta: dict[str, Any]
) -> None:
    namespace = meta.pop("namespace", "team-a")
    new = body(CYCLE, namespace=namespace, **meta)
    handlers("team-a").pipeline(new, old, operation, [])


def test_an_update_that_changes_the_spec_is_checked() -> None:
    with pytest.raises(kopf.AdmissionError):
        handlers().pipeline(body(CYCLE), body(VALID), "UPDATE", [])
    handlers().pipeline(body(VALID), body(CYCLE), "UPDATE", [])  # a fix is admitted


def test_an_invalid_task_is_refused_and_a_suspicious_one_warned_about() -> None:
    bad = kopf.Body({"metadata": {"name": "t", "namespace": "n"}, "spec": {"image": "Busybox"}})
    odd = kopf.Body(
        {
            "metadata": {"name": "t", "namespace": "n"},
            "spec": {"image": BUSYBOX, "params": [{"name": "unused", "default": "1"}]},
        }
    )
    with pytest.raises(kopf.AdmissionError, match=r'^Invalid task: image "Busybox" is not'):
        handlers().task(bad, None, "CREATE", [])
    warnings: list[str] = []
    handlers().task(odd, None, "CREATE", warnings)
    assert warnings == ['parameter "unused" is declared but not used']


def test_a_pipeline_without_a_name_yet_is_still_checked() -> None:
    new = kopf.Body({"metadata": {"generateName": "p-", "namespace": "n"}, "spec": CYCLE})
    with pytest.raises(kopf.AdmissionError):
        handlers().pipeline(new, None, "CREATE", [])


# --- certificates ----------------------------------------------------------------------


def test_generated_certificates_chain_to_the_ca_and_name_the_loopback(tmp_path: Path) -> None:
    files = make_certificates(tmp_path, hosts=["127.0.0.1", "localhost"])
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())

    assert cert.issuer == ca.subject
    pub = ca.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert files.key.stat().st_mode & 0o777 == 0o600
    # What a TLS server (and the API server as its client) will load.
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.cert, files.key)
    client_side = ssl.create_default_context(cafile=str(files.ca))
    assert client_side.verify_mode == ssl.CERT_REQUIRED


# --- install ---------------------------------------------------------------------------


def _install(config: AdmissionConfig) -> tuple[Any, kopf.OperatorRegistry, kopf.OperatorSettings]:
    registry, settings = kopf.OperatorRegistry(), kopf.OperatorSettings()
    return install(config, registry, settings, kube=None), registry, settings


def test_off_installs_nothing() -> None:
    webhook, registry, settings = _install(AdmissionConfig("off"))
    assert webhook is None and settings.admission.server is None
    assert registry._webhooks.get_all_handlers() == []


def test_cluster_mode_serves_from_the_operators_kopf_on_the_given_files(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    result, registry, settings = _install(
        AdmissionConfig("cluster", namespaces=["a"], cert_file=files.cert, key_file=files.key)
    )

    assert result is not None and result.registrar is None
    ids = sorted(h.id for h in registry._webhooks.get_all_handlers())
    assert ids == ["validate-pipeline", "validate-task"]
    assert kopf.get_default_registry()._webhooks.get_all_handlers() == []
    server = settings.admission.server
    assert isinstance(server, kopf.WebhookServer) and server is result.server
    assert (server.addr, server.port) == ("0.0.0.0", admission.CLUSTER_PORT)
    assert settings.admission.managed is None


def test_cluster_mode_needs_the_certificate_files() -> None:
    with pytest.raises(ValueError, match="--webhook-cert-file"):
        _install(AdmissionConfig("cluster"))


def test_sluice_run_refuses_cluster_mode_without_certificate_files(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sluice.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run", "--admission", "cluster"])

    assert exited.value.code == 2
    assert "--admission cluster needs --webhook-cert-file and --webhook-key-file" in (
        capsys.readouterr().err
    )

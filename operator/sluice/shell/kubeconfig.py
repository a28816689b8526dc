"""Where the operator's API client gets its configuration: the official ``kubernetes``
package loads it (in-cluster service account or kubeconfig, exec plugins and token refresh
included), once; ``sluice.shell.kube`` makes a TLS context of it for its own session."""

from __future__ import annotations

import ssl

from kubernetes import client, config

__all__ = ["load_config", "ssl_context"]


def load_config() -> client.Configuration:
    """In-cluster config when running in a pod, else KUBECONFIG / ~/.kube/config."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    return cfg


def ssl_context(cfg: client.Configuration) -> ssl.SSLContext:
    """The TLS context of ``cfg``: its CA, its client certificate, whether to verify."""
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx

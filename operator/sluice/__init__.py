"""Sluice: a Kubernetes operator that runs DAGs of batch Jobs."""

__version__ = "0.1.0"

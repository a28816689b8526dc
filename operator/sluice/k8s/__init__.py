"""Kubernetes facts Sluice relies on, in one pure place: syntax rules and the pinned
upstream schema of core/v1 types (no I/O beyond reading the package's own data)."""

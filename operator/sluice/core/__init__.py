"""Pure decision logic: no I/O, no clocks, no Kubernetes client."""

"""Helpers shared by the tests: the local cluster, waiting on conditions."""

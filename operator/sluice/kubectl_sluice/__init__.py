"""``kubectl sluice``: the command-line plugin of the Sluice operator.

A client of the Kubernetes API (the official ``kubernetes`` package), built on the pure
core (``sluice.core``) and the API models (``sluice.api``); it never imports
``sluice.shell``. The entry point is :func:`sluice.kubectl_sluice.app.main`, installed as
the console script ``kubectl-sluice``.
"""

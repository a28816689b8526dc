"""``python -m sluice.kubectl_sluice``: the same as ``kubectl sluice``."""

import sys

from sluice.kubectl_sluice.app import main

sys.exit(main())

"""``python -m mimic_nwb`` runs the ``mimic-nwb`` command."""

import sys

from .cli import main

sys.exit(main())

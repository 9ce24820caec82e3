"""``python -m gradw`` (also what ``torchrun -m gradw`` runs)."""

import sys

from gradw.cli import main

sys.exit(main())

"""`python -m mogulflow.cli`: the same as the `mogulflow` console script."""

import sys

from mogulflow.cli import main

sys.exit(main())

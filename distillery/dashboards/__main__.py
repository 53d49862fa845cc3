"""``python -m distillery.dashboards generate|check``."""

import sys

from distillery.dashboards.generate import main

sys.exit(main())

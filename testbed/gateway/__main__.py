"""``python -m testbed.gateway``."""

from __future__ import annotations

import sys

from testbed.gateway.app import main

sys.exit(main())

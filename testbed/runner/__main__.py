"""``python -m testbed.runner``: run one function replica."""

from __future__ import annotations

import sys

from testbed.runner.server import main

sys.exit(main())

"""Code shared by the shipped functions: JSON request/response helpers, the digit toolkit and
models of the ml-pipeline, and the SQLite store and text tools of the social network.

Handlers import these modules as ``functions.common.<module>``. Nothing here imports torch or
scikit-learn at import time; the modules that need them import them inside functions.
"""

from __future__ import annotations

__all__: list[str] = []

"""Name validation shared by specs, workflows and the gateway."""

from __future__ import annotations

import re

from testbed.core.errors import ConfigError

__all__ = ["check_name"]

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_name(name: object, *, what: str = "name") -> str:
    """Return ``name`` if it is a DNS-1123 label (as OpenFaaS requires), else raise ConfigError."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"{what} must be lowercase letters, digits and '-', 1-63 chars, got {name!r}"
        )
    return name

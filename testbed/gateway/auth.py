"""Basic auth for ``/system/*``: user ``admin``, a password generated at first start.

The password lives in ``$AQUATOPE_HOME/basic-auth-password`` with mode 0600 and is never
logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from pathlib import Path

from testbed.core.atomic import atomic_write_text

__all__ = ["ADMIN_USER", "check_basic_auth", "ensure_password", "read_password"]

ADMIN_USER = "admin"
PASSWORD_FILE = "basic-auth-password"


def read_password(home: Path) -> str | None:
    """The stored password, or ``None`` when none was generated yet."""
    try:
        return (home / PASSWORD_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_password(home: Path) -> str:
    """Read the password, generating and storing one (mode 0600) if absent."""
    existing = read_password(home)
    if existing:
        return existing
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    path = home / PASSWORD_FILE
    atomic_write_text(path, password + "\n", mode=0o600)
    return password


def check_basic_auth(header: str | None, password: str) -> bool:
    """True when ``header`` is ``Basic base64(admin:password)``; constant-time compare.

    Credentials are compared as UTF-8 bytes, so non-ASCII ones are simply wrong, never an
    error.
    """
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:], validate=True)
    except (binascii.Error, ValueError):
        return False
    user, _, given = decoded.partition(b":")
    return hmac.compare_digest(user, ADMIN_USER.encode()) & hmac.compare_digest(
        given, password.encode()
    )

"""Text work of the social network's text-filter: mentions, URLs, shortening, banned words."""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "BANNED_WORDS",
    "SHORT_URL_PREFIX",
    "extract_mentions",
    "extract_urls",
    "filter_banned",
    "shorten",
]

SHORT_URL_PREFIX = "https://aq.to/"
BANNED_WORDS = frozenset({"spam", "scam", "clickbait", "malware", "phishing"})
_MENTION_RE = re.compile(r"(?<![\w@/])@([A-Za-z0-9_]{1,30})\b")
_URL_RE = re.compile(r"\bhttps?://[^\s<>\"'()]+", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z]+")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def extract_mentions(text: str) -> list[str]:
    """``@name`` mentions in order of first appearance, without the ``@`` (lower-cased)."""
    return list(dict.fromkeys(m.lower() for m in _MENTION_RE.findall(text)))


def extract_urls(text: str) -> list[str]:
    """http(s) URLs in order of first appearance (trailing punctuation dropped)."""
    return list(dict.fromkeys(u.rstrip(".,;:!?") for u in _URL_RE.findall(text)))


def shorten(url: str, length: int = 10) -> str:
    """A stable short URL: base-62 of the URL's SHA-256, under :data:`SHORT_URL_PREFIX`."""
    number = int.from_bytes(hashlib.sha256(url.encode()).digest()[:12], "big")
    chars = []
    for _ in range(length):
        number, rem = divmod(number, 62)
        chars.append(_ALPHABET[rem])
    return SHORT_URL_PREFIX + "".join(chars)


def filter_banned(text: str) -> tuple[str, int]:
    """Mask banned words (whole words, any case) with asterisks.

    Returns:
        ``(filtered text, number of words masked)``.
    """
    count = 0

    def mask(match: re.Match[str]) -> str:
        nonlocal count
        word = match.group(0)
        if word.lower() in BANNED_WORDS:
            count += 1
            return "*" * len(word)
        return word

    return _WORD_RE.sub(mask, text), count

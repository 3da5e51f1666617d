"""Reading YAML files that users write: one place that turns every failure into one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from testbed.core.errors import ConfigError

__all__ = ["read_yaml", "read_yaml_with_node", "yaml_error"]


def yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    """A one-line error naming the file, line and column (when known) and the problem."""
    mark = getattr(exc, "problem_mark", None)
    at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"character {exc.character!r} at position {exc.position}: {exc.reason}"
    else:
        problem = str(getattr(exc, "problem", None) or exc)
    return ConfigError(f"{path}:{at} invalid YAML: {' '.join(problem.split())}")


def _text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_yaml(path: str | Path, *, what: str) -> Any:
    """The parsed content of a YAML file.

    Args:
        path: the file.
        what: what the file is, for messages ("stack file", "workflow file", ...).

    Raises:
        ConfigError: missing, unreadable or invalid YAML (one line, with the location).
    """
    path = Path(path)
    text = _text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None


def read_yaml_with_node(path: str | Path, *, what: str) -> tuple[Any, yaml.Node | None]:
    """The parsed content and its node tree (for error messages that name lines)."""
    path = Path(path)
    text = _text(path, what)
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None

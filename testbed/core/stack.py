"""Load a faas-cli ``stack.yml`` into validated :class:`FunctionSpec` objects.

The file format is faas-cli's (version 1.0, provider openfaas, lang python3-http), so the
same file deploys to a real OpenFaaS with ``faas-cli up``. ``environment.max_inflight``
is read like OpenFaaS's of-watchdog does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testbed.core.config import DEFAULT_MAX_INFLIGHT, Limits
from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec
from testbed.core.yamlfile import read_yaml

__all__ = ["Stack", "load_stack"]

SUPPORTED_LANGS = {"python3-http", "python3-http-debian", "python3-flask", "python3"}


class _Provider(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = "openfaas"
    gateway: str | None = None


class _Function(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    lang: str = "python3-http"
    handler: str
    image: str = ""
    environment: dict[str, str | int | float | bool] = Field(default_factory=dict)
    labels: dict[str, str | int] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str | int | float] | None = None
    requests: dict[str, str | int | float] | None = None

    @field_validator("lang")
    @classmethod
    def _lang(cls, value: str) -> str:
        if value not in SUPPORTED_LANGS:
            raise ValueError(f"unsupported lang {value!r}; use one of {sorted(SUPPORTED_LANGS)}")
        return value


class _StackFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str | float = "1.0"
    provider: _Provider = Field(default_factory=_Provider)
    functions: dict[str, _Function]


class Stack:
    """A parsed stack file: ``functions`` in file order, handler paths made absolute."""

    def __init__(self, path: Path, functions: dict[str, FunctionSpec]) -> None:
        self.path = path
        self.functions = functions

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.functions.values())

    def __len__(self) -> int:
        return len(self.functions)

    def __getitem__(self, name: str) -> FunctionSpec:
        try:
            return self.functions[name]
        except KeyError:
            raise ConfigError(f"{self.path}: no function named {name!r}") from None


def _error_location(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg']}"


def _spec(name: str, fn: _Function, root: Path, where: str) -> FunctionSpec:
    env = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fn.environment.items()}
    try:
        max_inflight = int(env.get("max_inflight", DEFAULT_MAX_INFLIGHT))
    except ValueError:
        raise ConfigError(f"{where}.environment.max_inflight must be an integer") from None
    handler = (root / fn.handler).resolve()
    if not (handler / "handler.py").is_file():
        raise ConfigError(f"{where}.handler: {handler} has no handler.py")
    try:
        return FunctionSpec(
            name=name,
            image=fn.image or f"aquatope/{name}:latest",
            handler=str(handler),
            env=env,
            labels={k: str(v) for k, v in fn.labels.items()},
            annotations=dict(fn.annotations),
            limits=Limits.from_openfaas(fn.limits, where=f"{where}.limits"),  # type: ignore[arg-type]
            requests=Limits.from_openfaas(fn.requests, where=f"{where}.requests"),  # type: ignore[arg-type]
            max_inflight=max_inflight,
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_stack(path: str | Path) -> Stack:
    """Parse and validate a stack file.

    Raises:
        ConfigError: one line naming the file and the offending field.
    """
    path = Path(path)
    raw: Any = read_yaml(path, what="stack file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a stack file is a mapping with a 'functions' key")
    try:
        parsed = _StackFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_error_location(exc)}") from None
    specs = {
        name: _spec(name, fn, path.parent, f"{path}: functions.{name}")
        for name, fn in parsed.functions.items()
    }
    return Stack(path, specs)

"""Backends and the one factory that picks them: :func:`connect`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.core.errors import ConfigError
from testbed.core.platform import Platform

__all__ = ["BACKENDS", "connect"]

BACKENDS = ("local", "docker", "openfaas", "sim")


def connect(backend: str = "local", **options: Any) -> Platform:
    """Open a Platform.

    - ``"local"`` / ``"docker"``: start a private gateway process on a free loopback port
      (replicas as processes or containers); closing the platform stops it and its replicas.
      Options: ``state_dir``, ``workflows_dir``, ``port``, ``cold_start_timeout_s``.
    - ``"openfaas"``: a client of an existing gateway (ours or a real OpenFaaS). Options:
      ``url``, ``password``, ``username``, ``metrics_url``; those not given come from the
      gateway ``aquatope up`` recorded in ``$AQUATOPE_HOME`` (``$OPENFAAS_PASSWORD`` first;
      for ``--platform openfaas`` the URL of its workflow front, which serves ``/workflow``).
    - ``"sim"``: the in-memory simulator; options go to ``SimPlatform``.

    Raises:
        ConfigError: unknown backend or option.
        BackendUnavailable: the gateway or engine could not be started or reached.
    """
    if backend in ("local", "docker"):
        from testbed.backends.openfaas import OpenFaaSPlatform
        from testbed.gateway.auth import ensure_password
        from testbed.gateway.launch import start_gateway

        allowed = {"state_dir", "workflows_dir", "port", "cold_start_timeout_s"}
        unknown = set(options) - allowed
        if unknown:
            raise ConfigError(f"connect({backend!r}): unknown option(s) {sorted(unknown)}")
        state_dir = Path(options["state_dir"]) if options.get("state_dir") else None
        if state_dir is None:
            from testbed.core.config import aquatope_home

            state_dir = aquatope_home()
        password = ensure_password(state_dir)
        gateway = start_gateway(
            backend=backend,
            port=int(options.get("port", 0)),
            state_dir=state_dir,
            workflows_dir=Path(options["workflows_dir"]) if options.get("workflows_dir") else None,
            cold_start_timeout_s=options.get("cold_start_timeout_s"),
        )
        platform = OpenFaaSPlatform(gateway.url, password=password)
        platform.own(gateway)
        return platform
    if backend == "openfaas":
        from testbed.backends.openfaas import OpenFaaSPlatform

        recorded = _running_gateway()
        urls = recorded.pop("urls", ())
        if "url" not in options or str(options["url"]).rstrip("/") in urls:
            options = {**recorded, **options}
        if "url" not in options:
            raise ConfigError(
                "connect('openfaas') needs url=... (or a gateway started by `aquatope up`)"
            )
        return OpenFaaSPlatform(options.pop("url"), **options)
    if backend == "sim":
        from testbed.backends.sim import SimPlatform

        return SimPlatform(**options)
    raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _running_gateway() -> dict[str, Any]:
    """url (and every recorded url), metrics_url and password of the gateway `aquatope up`
    recorded, if any."""
    import json
    import os

    from testbed.core.config import aquatope_home
    from testbed.gateway.auth import read_password

    home = aquatope_home()
    try:
        info = json.loads((home / "gateway.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if not info.get("url"):
        return {}
    urls = tuple(str(u) for u in (info.get("workflow_url"), info["url"]) if u)
    out: dict[str, Any] = {"url": urls[0], "urls": urls}
    if info.get("metrics_url"):
        out["metrics_url"] = str(info["metrics_url"])
    password = os.environ.get("OPENFAAS_PASSWORD") or read_password(home)
    if password:
        out["password"] = password
    return out

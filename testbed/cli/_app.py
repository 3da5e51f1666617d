"""The CLI's context object: settings and a platform factory, handed to every command."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from testbed.core.config import DEFAULT_GATEWAY_PORT, DEFAULT_HOST, aquatope_home

if TYPE_CHECKING:
    from testbed.backends.openfaas import OpenFaaSPlatform
    from testbed.core.platform import Platform

__all__ = ["App", "pass_app"]


@dataclass
class App:
    """Settings shared by all commands."""

    home: Path
    gateway_url_option: str | None

    @classmethod
    def create(cls, *, home: str | None, gateway_url: str | None) -> App:
        path = Path(home) if home else aquatope_home()
        if home:
            os.environ["AQUATOPE_HOME"] = str(path)
        return cls(home=path, gateway_url_option=gateway_url)

    @property
    def gateway_file(self) -> Path:
        """Written by `aquatope up`: pid, url and backend of the running gateway."""
        return self.home / "gateway.json"

    def running_gateway(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.gateway_file.read_text())  # type: ignore[no-any-return]
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @property
    def gateway_url(self) -> str:
        if self.gateway_url_option:
            return self.gateway_url_option.rstrip("/")
        info = self.running_gateway()
        if info and isinstance(info.get("url"), str):
            return str(info["url"])
        return f"http://{DEFAULT_HOST}:{DEFAULT_GATEWAY_PORT}"

    def password(self) -> str:
        from testbed.gateway.auth import read_password

        env = os.environ.get("OPENFAAS_PASSWORD")
        if env:
            return env
        password = read_password(self.home)
        if password is None:
            raise click.ClickException(
                f"no gateway password in {self.home}; start one with `aquatope up`"
            )
        return password

    def platform(self) -> OpenFaaSPlatform:
        """A client of the gateway (ours or a real OpenFaaS)."""
        from testbed.backends.openfaas import OpenFaaSPlatform

        info = self.running_gateway() or {}
        # a real OpenFaaS gateway serves /metrics on its own port, recorded by `aquatope up`
        metrics_url = info.get("metrics_url") if info.get("url") == self.gateway_url else None
        return OpenFaaSPlatform(self.gateway_url, password=self.password(), metrics_url=metrics_url)

    def open_platform(self, backend: str, **options: Any) -> Platform:
        """A platform from the one factory (``testbed.connect``), closed with the command.

        The platform is registered on the current click context, so an error or Ctrl-C
        tears it down (and, for ``local``/``docker``, its private gateway and replicas).
        """
        from testbed.backends import connect

        platform = connect(backend, **options)
        click.get_current_context().call_on_close(platform.close)
        return platform


pass_app = click.make_pass_decorator(App)

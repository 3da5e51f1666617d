"""The ``aquatope`` command: a click group whose subcommands load lazily.

Each command lives in its own module under ``testbed/cli/`` and is imported only when it
runs, so ``aquatope --help`` stays instant (no torch, Locust or docker imports).
"""

from __future__ import annotations

import importlib
import sys

import click

from testbed.cli._app import App

__all__ = ["cli", "main"]

# command name -> "module:attribute"; help text is read from the module's command lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("testbed.cli.platform:up", "Start the gateway, deploy the stack, print the URL."),
    "down": ("testbed.cli.platform:down", "Stop the gateway and every replica it started."),
    "status": ("testbed.cli.platform:status", "Show deployed functions and their replicas."),
    "deploy": ("testbed.cli.platform:deploy", "Deploy (or update) functions from a stack file."),
    "remove": ("testbed.cli.platform:remove", "Remove a function and its replicas."),
    "invoke": ("testbed.cli.platform:invoke", "Invoke a function or a workflow."),
    "scale": ("testbed.cli.platform:scale", "Set a function's number of replicas."),
    "limits": ("testbed.cli.platform:limits", "Change a function's CPU/memory limits live."),
    "canary": ("testbed.cli.platform:canary", "Try limits on one canary replica of a function."),
    "password": ("testbed.cli.platform:password", "Print the gateway's admin password."),
    "gateway": ("testbed.cli.platform:gateway", "Run the gateway in the foreground."),
    "build": ("testbed.cli.images:build", "Build the function images for the docker backend."),
    "trace": ("testbed.cli.trace:trace", "Generate, inspect and plot invocation traces."),
    "load": ("testbed.cli.load:load", "Replay a trace against the gateway with Locust."),
    "scheduler": ("testbed.cli.scheduler:scheduler", "List policies or run the scheduler daemon."),
    "experiment": ("testbed.cli.experiment:experiment", "Run scheduler comparison experiments."),
    "compare": ("testbed.cli.report:compare", "Compare experiment results in a table."),
    "report": ("testbed.cli.report:report", "Write an HTML report with plots."),
    "configure": ("testbed.cli.configure:configure", "Optimise per-function CPU/memory for QoS."),
    "profile": ("testbed.cli.profile:profile", "Measure service/cold-start profiles for the sim."),
    "profile-from-runs": (
        "testbed.cli.profile:profile_from_runs",
        "Take a sim profile's warm service times from live runs.",
    ),
    "evaluate": (
        "testbed.cli.evaluate:evaluate",
        "Run the headline evaluation grid and write docs/RESULTS.md.",
    ),
}

CONTEXT_SETTINGS = {"auto_envvar_prefix": "AQUATOPE", "help_option_names": ["-h", "--help"]}


class LazyGroup(click.Group):
    """A group that imports each command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(module_name):
                return _unavailable(cmd_name, target[1])
            raise
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text + " (not available in this build)")
    def missing() -> None:
        raise click.ClickException(f"'{name}' is not available in this build")

    return missing


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="aquatope-testbed", prog_name="aquatope")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="AQUATOPE_HOME",
    help="State directory (password, pid files, caches). Default: ~/.aquatope",
)
@click.option(
    "--gateway",
    "gateway_url",
    envvar="OPENFAAS_URL",
    default=None,
    help="Gateway URL. Default: the one `aquatope up` started, else http://127.0.0.1:8080",
)
@click.pass_context
def cli(ctx: click.Context, home: str | None, gateway_url: str | None) -> None:
    """Aquatope testbed: run, study and compare schedulers for serverless workflows."""
    ctx.obj = App.create(home=home, gateway_url=gateway_url)


def main() -> None:
    """Console entry point."""
    try:
        cli.main(prog_name="aquatope")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)

"""``aquatope build``: build (or find cached) the docker backend's function images."""

from __future__ import annotations

import time

import click

from testbed.cli._app import App, pass_app
from testbed.core.errors import TestbedError

__all__ = ["build"]


@click.command()
@click.argument("names", nargs=-1)
@click.option(
    "--stack",
    "stack_path",
    type=click.Path(dir_okay=False),
    default="stack.yml",
    show_default=True,
    help="faas-cli stack file listing the functions.",
)
@click.option("--force", is_flag=True, help="Rebuild function images even when current.")
@click.option("--no-pull", is_flag=True, help="Do not try python:3.11-slim from a registry.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line.")
@pass_app
def build(
    app: App, names: tuple[str, ...], stack_path: str, force: bool, no_pull: bool, quiet: bool
) -> None:
    """Build the images of NAMES (default: every function in the stack).

    One shared base and dependency image, then a thin image per function; unchanged
    functions are not rebuilt. Works offline: the base comes from debootstrap when no
    registry answers, and Python wheels are downloaded on the host.
    """
    from testbed.core.stack import load_stack
    from testbed.gateway.runtimes.images import ImageBuilder

    def log(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    started = time.perf_counter()
    try:
        stack = load_stack(stack_path)
        specs = [stack[name] for name in names] if names else list(stack)
        builder = ImageBuilder(log=log, allow_pull=not no_pull)
        results = builder.build(specs, force=force)
    except TestbedError as exc:
        raise click.ClickException(str(exc)) from None
    for result in results:
        if not quiet:
            state = "cached" if result.cached else f"built in {result.duration_s:.1f}s"
            click.echo(f"{result.function:<24} {result.image:<44} {state}")
    built = sum(not r.cached for r in results)
    click.echo(
        f"{len(results)} image(s), {built} built, {len(results) - built} cached "
        f"({time.perf_counter() - started:.1f}s)"
    )

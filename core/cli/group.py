"""The root ``stylecomp`` click group: one-line errors, and command groups that other packages plug in.

A package adds a command group under ``stylecomp`` by declaring it as an entry point, e.g.

    [project.entry-points."stylecomp.cli"]
    timeline = "stylecomp_otio.cli:timeline"

The entry point's name is the command's name. It is imported only when that command (or the full
``--help`` listing) is asked for, so ``stylecomp`` never imports a plugin for other commands.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import NoReturn

import click

from ..errors import JobError, StyleCompError

ENTRY_POINT_GROUP = "stylecomp.cli"


def printable(text: str) -> str:
    """Text any UTF-8 stream can print: undecodable bytes from a file name or an EXR header (surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _usage_error(ctx: click.Context, exc: click.UsageError) -> NoReturn:
    """A bad command line as one line naming the option or argument (click prints usage, hint and error)."""
    where = (exc.ctx or ctx).command_path
    click.echo(f"error: {' '.join(exc.format_message().split())} (see '{where} --help')", err=True)
    ctx.exit(2)


def _plugins() -> dict[str, EntryPoint]:
    """The installed command-group plugins by command name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


class StyleCompGroup(click.Group):
    """A click group that turns StyleCompError and usage errors into a one-line message and exit status 2,
    and adds the command groups installed under the ``stylecomp.cli`` entry point."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = _plugins().get(cmd_name)
        if plugin is None:
            return None
        try:
            command = plugin.load()
        except (ImportError, AttributeError) as exc:
            raise StyleCompError(f"command {cmd_name!r} ({plugin.value}) cannot be imported: {exc}") from None
        if not isinstance(command, click.Command):
            raise StyleCompError(f"command {cmd_name!r} ({plugin.value}) is not a click command")
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _usage_error(ctx, exc)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _usage_error(ctx, exc)
        except JobError as exc:
            for problem in exc.problems:
                click.echo(printable(f"error: {exc.where}: {problem}" if exc.where else f"error: {problem}"), err=True)
            ctx.exit(2)
        except StyleCompError as exc:
            click.echo(printable(f"error: {exc}"), err=True)
            ctx.exit(2)

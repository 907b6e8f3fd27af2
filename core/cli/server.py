"""`stylecomp serve`: the engine server that hosts such as the Nuke plugin send jobs to."""

from __future__ import annotations

import os

import click

from .options import DEVICE_OPTION, DTYPE_OPTION, NO_CACHE_OPTION, cancel_on_signals, pipeline_pool


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but a loopback address lets other machines in (a warning says so).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8470,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the URL printed says which).",
)
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A folder requests may read and write in (repeat for several); every path a job names must "
    "resolve inside one, else the request gets 403. Also read from the config folder's server.json "
    '({"roots": [...]}). Default on a loopback address: your home and the stylecomp cache folder; '
    "required on any other address.",
)
@DEVICE_OPTION
@DTYPE_OPTION
@NO_CACHE_OPTION
def serve(host: str, port: int, roots: tuple[str, ...], device: str, dtype: str, no_cache: bool) -> None:
    """Run the engine server: an HTTP API on this machine that queues jobs and renders them one
    after another, keeping pipelines loaded between them (for the Nuke plugin and other hosts).

    Every request needs the token from the token file ($STYLECOMP_CONFIG_DIR, else
    $XDG_CONFIG_HOME/stylecomp, else ~/.config/stylecomp: server-token, made on first start,
    mode 0600) as `Authorization: Bearer <token>`. SIGTERM or Ctrl-C stops it: the running job
    stops mid-step and its finished frames stay; it and the queued jobs are kept in the queue file
    and run at the next start. See the README for the API.
    """
    from ..render.cache import RenderCache
    from ..server.access_token import load_or_create_token, token_file
    from ..server.app import EngineServer, bind_warning, configured_roots

    token, repaired = load_or_create_token()
    if repaired:
        click.echo(f"warning: {token_file()}: permissions were looser than 0600; repaired", err=True)
    warning = bind_warning(host)
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    chosen = [os.path.abspath(root) for root in roots] + configured_roots()
    server = EngineServer(
        (host, port), token, pipeline_pool(device, dtype), None if no_cache else RenderCache(), roots=chosen or None
    )
    with cancel_on_signals() as stop:
        server.start()
        click.echo(f"stylecomp engine server on {server.url} (device {server.pool.device})")
        click.echo(f"token file: {token_file()} (send 'Authorization: Bearer <token>')")
        click.echo(
            f"roots: {', '.join(server.roots)}"
            + ("" if chosen else " (the default: your home and the stylecomp cache folder; name others with --root)")
        )
        while not stop.wait(0.5):
            pass
        click.echo("stopping: the running job stops now and resumes, with the queued ones, at the next start", err=True)
        server.stop()
    click.echo("stopped", err=True)

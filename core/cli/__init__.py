"""The ``stylecomp`` command line.

Every user-facing failure is a StyleCompError, printed as one line
``error: <where>: <reason>`` on stderr with exit status 2; never a traceback. Each command group
lives in its own module; command groups of other packages (``timeline``, from stylecomp_otio) come
in through the ``stylecomp.cli`` entry point (see ``group``).
"""

from __future__ import annotations

import os

import click

from .. import __version__
from .checks import color, flicker, inspect
from .demo import demo
from .farm import batch, farm
from .generate import animate, ideate
from .group import StyleCompGroup
from .job import job
from .model import model
from .render import candidates, comp, pick, render
from .server import serve


@click.group(cls=StyleCompGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stylecomp")
def cli() -> None:
    """stylecomp: diffusion stylization of scene-linear EXR render plates for compositing.

    Start with `stylecomp demo` to render the built-in demo shot, `stylecomp inspect` to see
    what a plate holds, and `stylecomp job schema` for the job document.
    """


for _command in (
    inspect,
    job,
    color,
    model,
    render,
    comp,
    candidates,
    pick,
    demo,
    batch,
    serve,
    farm,
    flicker,
    animate,
    ideate,
):
    cli.add_command(_command)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from local paths only
    cli(prog_name="stylecomp")

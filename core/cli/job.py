"""`stylecomp job`: the job document's schema, and validating job files."""

from __future__ import annotations

import json
import sys

import click

from ..errors import JobError
from .group import printable
from .options import OVERWRITE_OPTION


@click.group()
def job() -> None:
    """Job documents: the JSON schema, and validation of job files."""


@job.command()
def schema() -> None:
    """Print the job document's JSON Schema."""
    from ..jobspec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@job.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@OVERWRITE_OPTION
def validate(files: tuple[str, ...], overwrite: bool) -> None:
    """Check job FILES; name every bad field and what is wrong with it. Outputs are checked too: none may be
    a file the job reads, and an existing file stylecomp did not write is refused unless --overwrite."""
    from ..jobspec import load_job
    from ..render.output_guard import check_outputs

    failed = False
    for file in files:
        try:
            job_ = load_job(file)
            problems = check_outputs(job_, overwrite=overwrite, comp=True)
            if problems:
                raise JobError("; ".join(problems), file, problems)
        except JobError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(printable(f"error: {file}: {problem}"), err=True)
            continue
        shots = ", ".join(s.name for s in job_.shots)
        click.echo(f"{file}: valid (version {job_.version}; shots: {shots})")
    if failed:
        sys.exit(2)

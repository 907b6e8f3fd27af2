"""Progress printers: render and batch events as text lines (with ETA) on stderr, or JSON lines on stdout."""

from __future__ import annotations

import json
import sys
from typing import cast

import click


class ProgressPrinter:
    """Render events as a progress line with ETA (text) or as JSON lines on stdout (json)."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict[str, object]) -> None:
        if self.style == "json":
            click.echo(json.dumps(event))
            return
        kind = event["event"]
        if kind == "start":
            first, last = cast("list[int]", event["frames"])
            click.echo(f"{event['shot']}: {event['total']} frame(s) {first}-{last}", err=True)
            if "note" in event:
                click.echo(f"  note: {event['note']}", err=True)
            if "warning" in event:
                click.echo(f"warning: {event['shot']}: {event['warning']}", err=True)
        elif kind == "frame":
            eta = float(cast(float, event.get("eta", 0)))
            line = (
                f"  {event['shot']} {event['frame']}  [{event['done']}/{event['total']}]  {event['status']:<8} "
                f"{float(cast(float, event.get('seconds', 0))):6.1f} s   ETA {int(eta // 60)}:{int(eta % 60):02d}"
            )
            if event["status"] == "failed":
                line += f"\n    {event['error']}"
            if "warning" in event:
                click.echo(
                    ("\n" if self.tty else "") + f"warning: {event['shot']} {event['frame']}: {event['warning']}",
                    err=True,
                )
            last = event["done"] == event["total"]
            click.echo(
                ("\r" + line) if self.tty and event["status"] != "failed" else line,
                nl=not self.tty or last or event["status"] == "failed",
                err=True,
            )
        elif kind == "step":  # one long generation (an animatic clip): denoising progress
            step, total = int(event["step"]), int(event["total"])  # type: ignore[call-overload]  # step events carry ints
            if self.tty or step == total or step % max(total // 4, 1) == 0:
                line = f"  {event['shot']}  denoising step {step}/{total}"
                click.echo(("\r" + line) if self.tty else line, nl=not self.tty or step == total, err=True)


def stage_progress(stage: str, done: int, total: int) -> None:
    """One updating line on a terminal; a line per quarter in a log file."""
    if sys.stderr.isatty():
        click.echo(f"\r  {stage:<28} {done:>4}/{total}", nl=done == total, err=True)
    elif done == total or done % max(1, total // 4) == 0:
        click.echo(f"  {stage:<28} {done:>4}/{total}", err=True)


class BatchPrinter:
    """Batch events as text on stderr: a line per frame (one updating line on a terminal), one per shot, overall ETA."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            click.echo(
                f"{event['job']}: {event['shot']}: {event['total']} frame(s) {event['frames'][0]}-{event['frames'][1]}",
                err=True,
            )
        elif kind == "frame":
            line = (
                f"  {event['shot']} {event['frame']}  [{event['done']}/{event['total']}]  {event['status']:<8} "
                f"{float(event.get('seconds', 0)):6.1f} s   {_overall(event['overall'])}"
            )
            if "warning" in event:
                click.echo(
                    ("\n" if self.tty else "") + f"warning: {event['job']}: {event['shot']} {event['frame']}: "
                    f"{event['warning']}",
                    err=True,
                )
            if event["status"] == "failed":
                click.echo(("\r" if self.tty else "") + f"{line}\n    {event['error']}", err=True)
            else:
                click.echo(("\r" + line) if self.tty else line, nl=not self.tty, err=True)
        elif kind == "shot_end":
            click.echo(
                ("\n" if self.tty else "") + f"{event['job']} {event['shot']}: {event['done']}/{event['total']} "
                f"frames (rendered {event['rendered']}, cached {event['cached']}, failed {event['failed']})   "
                f"{_overall(event['overall'])}",
                err=True,
            )
        elif kind == "resume":
            click.echo(
                f"{event['job']}: resuming: {event['complete']} complete output(s); removed "
                f"{len(event['removed_temp'])} temp file(s) of a killed run and "
                f"{len(event['removed_damaged'])} output(s) that did not read whole",
                err=True,
            )
        elif kind == "job_failed":
            click.echo(f"error: {event['job']}: {event['error']}", err=True)


def _overall(overall: dict) -> str:
    eta = overall["eta"]
    left = "--:--" if eta is None else f"{int(eta // 60)}:{int(eta % 60):02d}"
    return f"overall {overall['done']}/{overall['total']} frames, ETA {left}"

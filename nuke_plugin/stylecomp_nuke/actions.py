"""What the StyleCompStylize buttons do: write the inputs and the job, run the engine, show the result.

Everything here runs on Nuke's main thread; the engine runs in a background thread (its
command line through runner.EngineRun, or a job on a running engine server through
server_runner.ServerRun) and its result comes back here through nuke.executeInMainThread.
"""

from __future__ import annotations

import functools
import os
import random
import re
from dataclasses import dataclass

import nuke

from . import (
    atomic,
    cache,
    cryptomatte,
    engine,
    gizmo,
    inputs,
    jobs,
    layers,
    manifest,
    node_status,
    presets,
    regions,
    runner,
    server_client,
    server_runner,
)
from .errors import StyleCompNukeError

SEED_LIMIT = 2**31 - 1  # Nuke's Int knobs hold 32-bit values
_RUNNING: set = set()  # full names of the nodes whose engine run is in progress


@dataclass(frozen=True)
class Prepared:
    """A job written to the cache folder together with its inputs, ready for the engine."""

    engine: str | None  # the command line; None when the job goes to the engine server
    server: server_client.Server | None
    document: dict  # the job, as written to ``job``
    job: str
    shot: str
    folder: cache.CacheFolder
    first: int  # frames written and to render, handles included
    last: int


def render_frame(node, frame: int | None = None) -> None:
    """Stylize one frame, the current one unless given."""
    frame = nuke.frame() if frame is None else int(frame)
    prepared = _prepare(node, frame, frame, handles=0)
    if prepared is not None:
        _render(node, prepared, f"StyleComp {prepared.shot}: frame {frame}")


def render_range(node) -> None:
    """Stylize the node's frame range, handles included."""
    first, last = int(node["range_first"].value()), int(node["range_last"].value())
    if last < first:
        node_status.show_error(node, f"The frame range {first}-{last} ends before it starts.")
        return
    prepared = _prepare(node, first, last, handles=max(0, int(node["handles"].value())))
    if prepared is not None:
        _render(node, prepared, f"StyleComp {prepared.shot}: frames {prepared.first}-{prepared.last}")


def candidates(node) -> None:
    """Render variants of the current frame, then open the picker on them."""
    frame = nuke.frame()
    prepared = _prepare(node, frame, frame, handles=0, use_server=False)  # the server renders jobs, not candidates
    if prepared is None:
        return
    count = jobs.read_look(node).candidate_count
    command = engine.candidates_command(prepared.engine, prepared.job, prepared.shot, frame, count)
    default_manifest = os.path.join(
        os.path.dirname(prepared.folder.output), "candidates", f"{prepared.shot}.{frame}", "manifest.json"
    )
    title = f"StyleComp {prepared.shot}: {count} candidates of frame {frame}"
    _start(
        node,
        functools.partial(runner.EngineRun, command, title),
        functools.partial(_candidates_rendered, default_manifest),
    )


def apply_candidate(node_name: str, frame: int, candidate: manifest.Candidate) -> None:
    """The picker's choice: set and lock its seed (and strength), then render its frame again."""
    node = nuke.toNode(node_name)
    if node is None:
        return
    if not 0 <= candidate.seed <= SEED_LIMIT:
        node_status.show_error(
            node,
            f"Candidate {candidate.index}'s seed {candidate.seed} does not fit Nuke's seed knob (0 to {SEED_LIMIT}).",
        )
        return
    node["seed"].setValue(candidate.seed)
    node["lock_seed"].setValue(True)
    if candidate.strength is not None:
        node["strength"].setValue(candidate.strength)
    render_frame(node, frame)


def choose_preset(node) -> None:
    """Pick the model preset from the presets file."""
    try:
        names = sorted(presets.load())
    except StyleCompNukeError as exc:
        nuke.message(str(exc))
        return
    current = node["model_preset"].value()
    if current in names:
        names.remove(current)
        names.insert(0, current)
    panel = nuke.Panel("StyleComp model preset")
    panel.addEnumerationPulldown("preset", " ".join(names))
    if panel.show():
        node["model_preset"].setValue(panel.value("preset"))


def pick_region_name(node, row: int) -> None:
    """Offer the Plate's Cryptomatte names (from its manifests) and add the chosen one to region ``row``."""
    plate = node.input(gizmo.PLATE_INPUT)
    if plate is None:
        nuke.message("Connect the render to the Plate input first: its Cryptomatte names are offered here.")
        return
    try:
        names = cryptomatte.names(plate.metadata())
    except StyleCompNukeError as exc:
        nuke.message(str(exc))
        return
    if not names:
        nuke.message(
            "The Plate's metadata has no Cryptomatte manifest (exr/cryptomatte/<key>/manifest); type the "
            "names, or read the render with all its metadata."
        )
        return
    index = nuke.choice(f"StyleComp region {row}", "Cryptomatte name to add to the region", names)
    if index is not None:
        regions.add_name(node, row, names[index])


def _prepare(node, first: int, last: int, handles: int, use_server: bool = True) -> Prepared | None:
    """Write the job and inputs for frames first..last; None after showing why that was not possible."""
    if node.fullName() in _RUNNING:
        nuke.message(f"StyleComp {node.name()} is still running; let it finish or cancel it first.")
        return None
    try:
        return _write_job(node, first, last, handles, use_server)
    except StyleCompNukeError as exc:
        node_status.show_error(node, str(exc))
    except OSError as exc:
        node_status.show_error(node, f"Cannot write to the cache folder: {exc}")
    return None


def _write_job(node, first: int, last: int, handles: int, use_server: bool) -> Prepared:
    """Find the engine (a running server, else the command line), build the job, write the inputs and the job file."""
    server = server_client.find() if use_server else None
    executable = None if server is not None else engine.locate()
    plate = node.input(gizmo.PLATE_INPUT)
    if plate is None:
        raise StyleCompNukeError("Connect the render to the Plate input first.")
    folder = cache.cache_folder(node)
    styled = node.input(gizmo.STYLE_REFERENCE_INPUT) is not None
    model = presets.model_block(
        node["model_preset"].value().strip(),
        folder.style_reference if styled else None,
        float(node["style_scale"].value()),
    )
    picks = {role: node.node(shuffle)["in"].value() for role, shuffle in gizmo.LAYER_SHUFFLES.items()}
    aovs = layers.aov_mapping(picks, plate.channels())
    if not node["lock_seed"].value():
        node["seed"].setValue(random.randint(0, SEED_LIMIT))
    script = nuke.root()["name"].value() or "an unsaved script"
    job = jobs.build_job(
        shot=node.name(),
        plate=folder.plate,
        output=folder.output,
        frames=(first, last),
        handles=handles,
        aovs=aovs,
        model=model,
        look=jobs.read_look(node),
        regions=regions.read_regions(node),
        notes=[f"written by StyleComp for Nuke from {script}, node {node.fullName()}"],
    )
    inputs.write_plate(node, first - handles, last + handles)
    if job["shots"][0].get("regions"):  # the engine resolves manif_file beside the plate it reads: inputs/
        cryptomatte.copy_sidecars(plate.metadata(), os.path.dirname(folder.plate))
    if styled:
        inputs.write_style_reference(node, int(node["style_frame"].value()))
    atomic.write_text(folder.job, jobs.dumps(job))
    return Prepared(executable, server, job, folder.job, node.name(), folder, first - handles, last + handles)


def _render(node, prepared: Prepared, title: str) -> None:
    """Render the prepared frames on the engine server if there is one, else with the engine's command line."""
    if prepared.server is not None:
        make_run = functools.partial(
            server_runner.ServerRun,
            prepared.server,
            prepared.document,
            prepared.folder.root,
            prepared.shot,
            prepared.first,
            prepared.last,
            title,
        )
    else:
        command = engine.render_command(prepared.engine, prepared.job, prepared.shot, prepared.first, prepared.last)
        make_run = functools.partial(runner.EngineRun, command, title)
    _start(node, make_run, functools.partial(_rendered, prepared.folder))


def _start(node, make_run, on_result) -> None:
    """Start ``make_run(on_finish)`` in the background; ``on_result(node, result)`` follows on the main thread."""
    name = node.fullName()
    _RUNNING.add(name)
    node_status.show_state(node, "running...")
    make_run(functools.partial(_finished, name, on_result)).start()


def _finished(node_name: str, on_result, result: runner.RunResult) -> None:
    """Main thread, after a run: hand the result on unless the node was deleted meanwhile."""
    _RUNNING.discard(node_name)
    node = nuke.toNode(node_name)
    if node is not None:
        on_result(node, result)


def _rendered(folder: cache.CacheFolder, node, result: runner.RunResult) -> None:
    """After a render: show and reload the stylized frames and say what happened."""
    kept = len(result.frames("rendered")) + len(result.frames("cached"))
    if result.error or (result.returncode not in (0, 1) and not result.cancelled):
        _show_failure(node, result)
        return
    read = node.node(gizmo.READ_STYLIZED)
    frames = stylized_frames(folder)
    if frames:
        read["first"].setValue(frames[0])
        read["last"].setValue(frames[-1])
    read["reload"].execute()
    if result.cancelled:
        node_status.show_state(node, f"cancelled; {kept} frames kept")
    elif result.returncode == 0:
        node_status.show_state(
            node, f"{len(result.frames('rendered'))} rendered, {len(result.frames('cached'))} cached"
        )
    else:
        failed = result.frames("failed")
        details = "\n".join(f"frame {e.get('frame')}: {e.get('error') or 'no reason given'}" for e in failed)
        node_status.show_error(node, f"{len(failed)} frames failed; {kept} frames kept", details)


def stylized_frames(folder: cache.CacheFolder) -> list:
    """The frame numbers of the stylized EXRs in the cache folder, sorted.

    The internal Read's frame range is set to span them: outside first..last a Read shows its
    before/after mode (black here), so a range tied to the node's frame range would hide a frame
    rendered outside it (a new script says 1-100 while plates start at 1001). Within the span a
    frame not rendered shows black through the Read's on_error.
    """
    directory, pattern = os.path.split(folder.output)
    head, _, tail = pattern.partition("####")
    match = re.compile(re.escape(head) + r"(-?\d+)" + re.escape(tail) + "$").match
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(int(found.group(1)) for found in map(match, names) if found)


def _candidates_rendered(default_manifest: str, node, result: runner.RunResult) -> None:
    """After the candidates: open the picker on their manifest."""
    if result.cancelled:
        node_status.show_state(node, "candidates cancelled")
        return
    if result.error or result.returncode != 0:
        _show_failure(node, result)
        return
    path = result.last_line if result.last_line.endswith(".json") else default_manifest
    try:
        found = manifest.load(path)
    except StyleCompNukeError as exc:
        node_status.show_error(node, str(exc))
        return
    node_status.show_state(node, f"{len(found.candidates)} candidates of frame {found.frame}")
    _show_picker(node.fullName(), found)


def _show_picker(node_name: str, found: manifest.Manifest) -> None:
    """Open the candidate picker; choosing one calls apply_candidate."""
    from . import picker  # Qt is only needed once there is something to pick

    picker.show(found, functools.partial(apply_candidate, node_name, found.frame))


def _show_failure(node, result: runner.RunResult) -> None:
    """A run that could not start, or that the engine refused (exit 2) or crashed."""
    if result.error:
        node_status.show_error(node, result.error)
    elif result.returncode == 2:
        node_status.show_error(node, "The engine refused the job or its input.", "\n".join(result.error_lines()))
    else:
        node_status.show_error(
            node, f"The engine stopped with exit status {result.returncode}.", "\n".join(result.error_lines())
        )

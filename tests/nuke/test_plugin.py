"""The Nuke plugin's logic against the stand-in `nuke` module and a fake engine that speaks the CLI contract.

The fake engine is a real executable (tests/nuke/fake_engine.py, installed by the ``engine_log`` fixture): it
records its arguments, prints the ``--progress json`` events, writes output files, and stops on SIGTERM; the plugin
runs it in a background thread exactly as it runs the real one.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import time
from pathlib import Path

import nuke  # the stand-in (tests/nuke/standin), top-level as in Nuke
import pytest

from stylecomp.color import ModelEncoding
from stylecomp.jobspec import Consistency
from stylecomp_nuke import actions, gizmo, presets
from tests.nuke.stylize_node import GIZMOS_FOLDER, PLUGIN_FOLDER, PRESETS, cache, calls, job_of, press, reloads

pytestmark = pytest.mark.plates(6)  # the engine server's real plate frames

standin = nuke.standin
# ---------------------------------------------------------------------------------------------
# Startup


def test_init_adds_gizmos_without_ui(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    standin.reset()
    standin.set_gui(False)  # nuke -t / farm: any UI call raises in the stand-in
    runpy.run_path(str(PLUGIN_FOLDER / "init.py"))
    assert nuke.pluginPath() == [str(GIZMOS_FOLDER)]
    own = tmp_path / "my_gizmos"
    own.mkdir()
    monkeypatch.setenv("STYLECOMP_GIZMOS", str(own))
    runpy.run_path(str(PLUGIN_FOLDER / "init.py"))
    assert nuke.pluginPath()[0] == str(own)
    assert standin.messages == [] and standin.tasks == []


def test_init_warns_on_a_missing_gizmo_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    standin.reset()
    monkeypatch.setenv("STYLECOMP_GIZMOS", str(tmp_path / "nowhere"))
    runpy.run_path(str(PLUGIN_FOLDER / "init.py"))
    assert nuke.pluginPath() == []
    assert "STYLECOMP_GIZMOS" in capsys.readouterr().err


def test_menu_adds_toolbar_and_menu() -> None:
    standin.reset()
    runpy.run_path(str(PLUGIN_FOLDER / "init.py"))
    runpy.run_path(str(PLUGIN_FOLDER / "menu.py"))
    toolbar = standin.menus["Nodes"].items["StyleComp"].items
    assert set(toolbar) == {"StyleComp Stylize", "StyleComp Blend"}
    assert toolbar["StyleComp Blend"]().Class() == gizmo.BLEND_CLASS
    assert set(standin.menus["Nuke"].items["StyleComp"].items) == {"Set Engine Location...", "Check Engine"}


# ---------------------------------------------------------------------------------------------
# Rendering


@pytest.mark.parametrize(
    ("management", "working", "typed", "expected"),
    [
        ("Nuke", "linear", "", "Linear Rec.709 (sRGB)"),
        ("OCIO", "ACES - ACEScg", "", "ACES - ACEScg"),
        ("OCIO", "scene_linear", "", "scene_linear"),
        ("OCIO", "ACEScg", "Linear Rec.709 (sRGB)", "Linear Rec.709 (sRGB)"),  # a typed space wins
    ],
)
def test_the_plate_colour_space_follows_the_working_space(
    node, engine_log: Path, management: str, working: str, typed: str, expected: str
) -> None:
    nuke.root()["colorManagement"].setValue(management)
    nuke.root()["workingSpaceLUT"].setValue(working)
    node["plate_space"].setValue(typed)
    standin.frame = 1004
    press(node, "render_frame")
    assert job_of(node)[1].color.plate_space == expected
    ModelEncoding(plate_space=expected)  # a name the engine's OCIO config knows


def test_render_frame(node, engine_log: Path, tmp_path: Path) -> None:
    standin.frame = 1004
    press(node, "render_frame")
    folder = tmp_path / "shots" / "stylecomp" / node.name()
    assert cache(node) == folder  # the empty cache knob got the default beside the script
    assert standin.executed == [(f"{node.name()}.{gizmo.WRITE_PLATE}", 1004, 1004, 1)]
    assert node.node(gizmo.WRITE_PLATE)["disable"].value() is True  # disabled again for farm renders
    assert (folder / "inputs" / "plate.1004.exr").is_file()
    assert calls(engine_log) == [
        ["render", str(folder / "job.json"), "--shot", node.name(), "--frames", "1004-1004", "--progress", "json"]
    ]
    _, job = job_of(node)
    shot = job.shots[0]
    assert (shot.name, shot.plate, shot.output) == (
        node.name(),
        str(folder / "inputs/plate.####.exr"),
        str(folder / "stylized/stylized.####.exr"),
    )
    assert (shot.frames.first, shot.frames.last, shot.handles, shot.aovs) == (1004, 1004, 0, {})
    assert (job.prompt, job.seed.value, job.seed.policy, job.consistency.mechanisms) == (
        "ink and watercolour",
        1234,
        "fixed",
        ["locked_seed"],
    )
    assert job.model.path == "/models/sd15" and job.model.controlnets[0].path == os.path.expanduser("~/models/cn-depth")
    assert job.model.ip_adapter is None  # no StyleReference connected
    # An empty plate colour space is the script's working space: nuke-default's linear is linear Rec.709.
    assert (job.strength, job.steps, job.guidance, job.color.plate_space) == (0.5, 20, 7.0, "Linear Rec.709 (sRGB)")
    task = standin.tasks[-1]
    assert task.progress[-1] == 100 and any("frame 1004 rendered" in m for m in task.messages)
    assert reloads(node) == 1
    assert node["label"].value() == "1 rendered, 0 cached"
    assert node["tile_color"].value() == gizmo.TILE_COLOUR
    assert standin.messages == []


def test_the_fusion_knobs_reach_the_job(node, engine_log: Path) -> None:
    engine = Consistency()  # the knobs start at the engine's defaults
    knobs = (node["latent_fusion_steps"].value(), node["plate_change_tolerance"].value())
    assert knobs == (engine.latent_fusion_steps, engine.plate_change_tolerance)
    node["consistency"].setValue("warped_noise+latent_fusion+pixel_fusion")
    node["fusion_strength"].setValue(0.6)
    node["latent_fusion_steps"].setValue(1.0)
    node["plate_change_tolerance"].setValue(0.2)
    standin.frame = 1004
    press(node, "render_frame")
    consistency = job_of(node)[1].consistency
    assert consistency.mechanisms == ["warped_noise", "latent_fusion", "pixel_fusion"]
    assert (consistency.fusion_strength, consistency.latent_fusion_steps, consistency.plate_change_tolerance) == (
        0.6,
        1.0,
        0.2,
    )


def test_render_range_with_handles_and_aov_layers(node, engine_log: Path) -> None:
    node["handles"].setValue(2)
    node["consistency"].setValue("none")
    node.node("DepthLayer")["in"].setValue("depth")
    node.node("NormalsLayer")["in"].setValue("N")
    node.node("MotionLayer")["in"].setValue("motion")
    press(node, "render_range")
    assert standin.executed[-1][1:3] == (999, 1012)  # root range 1001-1010 plus 2 handles
    assert calls(engine_log)[-1][5] == "999-1012"
    data, job = job_of(node)
    assert (job.shots[0].frames.first, job.shots[0].frames.last, job.shots[0].handles) == (1001, 1010, 2)
    assert data["shots"][0]["aovs"] == {
        "depth": ["depth.Z"],
        "normals": ["N.R", "N.G", "N.B"],
        "motion": ["backward.u", "backward.v"],
    }
    assert (job.seed.policy, job.consistency.mechanisms) == ("per_frame", [])
    progress = standin.tasks[-1].progress
    assert progress == sorted(progress) and progress[-1] == 100 and len(progress) == 14
    assert sorted(p.name for p in (cache(node) / "stylized").iterdir())[0] == "stylized.0999.exr"
    assert node["label"].value() == "14 rendered, 0 cached"


def test_unlocked_seed_changes_locked_seed_stays(node) -> None:
    node["lock_seed"].setValue(False)
    seeds = []
    for _ in range(2):
        press(node, "render_frame")
        seeds.append(node["seed"].value())
        assert job_of(node)[1].seed.value == seeds[-1]
    assert 1234 != seeds[0] != seeds[1]
    node["lock_seed"].setValue(True)
    node["seed"].setValue(77)
    press(node, "render_frame")
    assert node["seed"].value() == 77 and job_of(node)[1].seed.value == 77


def test_style_reference_feeds_the_ip_adapter(node) -> None:
    node.setInput(gizmo.STYLE_REFERENCE_INPUT, standin.add_source("ReadStyle", ["rgba.red", "rgba.green"]))
    node["style_frame"].setValue(12)
    node["style_scale"].setValue(0.8)
    press(node, "render_frame")
    assert (f"{node.name()}.{gizmo.WRITE_STYLE_REFERENCE}", 12, 12, 1) in standin.executed
    adapter = job_of(node)[1].model.ip_adapter
    assert (adapter.path, adapter.image, adapter.scale) == (
        "/models/ip-adapter",
        str(cache(node) / "inputs" / "style_reference.png"),
        0.8,
    )
    assert (cache(node) / "inputs" / "style_reference.png").is_file()


def test_cancel_terminates_the_engine(node, engine_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ENGINE_MODE", "slow")
    node["render_range"].execute()
    standin.pump(lambda: standin.tasks and standin.tasks[-1].progress)  # the first frame is done
    pid = int((engine_log / "pid").read_text())
    started = time.monotonic()
    standin.tasks[-1].cancel()
    standin.pump(lambda: not actions._RUNNING)
    assert time.monotonic() - started < 5.0  # it did not run the other 9 frames (0.3 s each)
    assert (engine_log / "terminated").exists()  # the engine got SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # and is gone
    kept = len(list((cache(node) / "stylized").iterdir()))
    assert 1 <= kept < 10
    assert node["label"].value() == f"cancelled; {kept} frames kept"
    assert node["tile_color"].value() == gizmo.TILE_COLOUR and reloads(node) == 1
    assert standin.messages == []


def test_failed_frames_are_shown_on_the_node(node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ENGINE_MODE", "fail_frame")
    press(node, "render_range")
    assert node["tile_color"].value() == gizmo.ERROR_COLOUR
    assert node["label"].value() == "error: 1 frames failed; 9 frames kept"
    assert "frame 1002: CUDA out of memory" in standin.messages[-1]
    assert reloads(node) == 1  # the other frames are shown
    monkeypatch.setenv("FAKE_ENGINE_MODE", "ok")
    press(node, "render_frame")  # a good render clears the error
    assert node["tile_color"].value() == gizmo.TILE_COLOUR and not node["label"].value().startswith("error")


def test_refused_job_is_shown_with_the_engine_errors(node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ENGINE_MODE", "bad_job")
    press(node, "render_frame")
    assert node["tile_color"].value() == gizmo.ERROR_COLOUR
    assert node["label"].value() == "error: The engine refused the job or its input."
    assert "shots[0].plate: no frames found" in standin.messages[-1]
    assert "model.path: not a diffusers folder" in standin.messages[-1]
    assert reloads(node) == 0


@pytest.mark.parametrize("problem", ["unset", "missing", "not executable"])
def test_missing_engine_is_explained(
    node, engine_log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, problem: str
) -> None:
    if problem == "unset":
        monkeypatch.delenv("STYLECOMP_ENGINE")
    elif problem == "missing":
        monkeypatch.setenv("STYLECOMP_ENGINE", str(tmp_path / "no" / "stylecomp"))
    else:
        path = tmp_path / "stylecomp.txt"
        path.write_text("not a program")
        monkeypatch.setenv("STYLECOMP_ENGINE", str(path))
    press(node, "render_frame")
    message = standin.messages[-1]
    assert "STYLECOMP_ENGINE" in message and "Set Engine Location" in message
    assert {"unset": "not set up", "missing": "was not found at", "not executable": "is not executable"}[
        problem
    ] in message
    assert node["tile_color"].value() == gizmo.ERROR_COLOUR and node["label"].value().startswith("error: ")
    assert standin.executed == [] and calls(engine_log) == []


def test_engine_that_cannot_start(node, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = tmp_path / "broken-stylecomp"
    broken.write_text("#!/no/such/interpreter\n")
    broken.chmod(0o755)
    monkeypatch.setenv("STYLECOMP_ENGINE", str(broken))
    press(node, "render_frame")
    assert f"Could not start {broken}" in standin.messages[-1]
    assert node["tile_color"].value() == gizmo.ERROR_COLOUR and reloads(node) == 0


def test_engine_location_setting_wins(node, engine_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = os.environ["STYLECOMP_ENGINE"]
    monkeypatch.setenv("STYLECOMP_ENGINE", "/nowhere/stylecomp")
    runpy.run_path(str(PLUGIN_FOLDER / "menu.py"))
    standin.answers.append(engine)
    standin.menus["Nuke"].items["StyleComp"].items["Set Engine Location..."]()
    assert json.loads(Path(os.environ["STYLECOMP_SETTINGS"]).read_text()) == {"engine": engine}
    standin.pump(lambda: standin.messages)  # Check Engine ran `stylecomp --version`
    assert standin.messages[-1] == f"StyleComp engine: {engine}\nstylecomp 0.1.0"
    press(node, "render_frame")
    assert node["label"].value() == "1 rendered, 0 cached"


def test_bad_preset_and_missing_plate(node, engine_log: Path) -> None:
    node["model_preset"].setValue("anime")
    press(node, "render_frame")
    assert "no model preset 'anime'" in standin.messages[-1] and "plain, toon" in standin.messages[-1]
    node["model_preset"].setValue("plain")
    node.setInput(gizmo.STYLE_REFERENCE_INPUT, standin.add_source("ReadStyle", ["rgba.red"]))
    press(node, "render_frame")
    assert "has no IP-Adapter" in standin.messages[-1]
    node.setInput(gizmo.STYLE_REFERENCE_INPUT, None)
    node.setInput(gizmo.PLATE_INPUT, None)
    press(node, "render_frame")
    assert "Plate input" in standin.messages[-1]
    node.setInput(gizmo.PLATE_INPUT, standin.add_source("ReadFlat", ["rgba.red", "rgba.alpha"]))
    node.node("NormalsLayer")["in"].setValue("N")
    press(node, "render_frame")
    assert "no 'N' layer for normals" in standin.messages[-1]
    assert calls(engine_log) == []


def test_write_failure_is_shown_and_the_write_disabled_again(node, engine_log: Path) -> None:
    standin.execute_error = "Cancelled"
    press(node, "render_frame")
    assert "Writing the plate (frames 1001-1001) stopped: Cancelled" in standin.messages[-1]
    assert node.node(gizmo.WRITE_PLATE)["disable"].value() is True
    assert calls(engine_log) == []


def test_one_run_per_node(node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ENGINE_MODE", "slow")
    node["render_frame"].execute()
    node["render_frame"].execute()
    assert "still running" in standin.messages[-1]
    standin.pump(lambda: not actions._RUNNING)


def test_choose_preset(node) -> None:
    standin.answers.append({"preset": "plain"})
    node["choose_preset"].execute()
    assert node["model_preset"].value() == "plain"
    standin.answers.append(None)  # Cancel keeps it
    node["choose_preset"].execute()
    assert node["model_preset"].value() == "plain"


# ---------------------------------------------------------------------------------------------
# Candidates


def test_candidates_pick_locks_the_seed_and_renders(node, engine_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []
    monkeypatch.setattr(actions, "_show_picker", lambda name, found: shown.append((name, found)))
    node["lock_seed"].setValue(False)
    node["candidate_count"].setValue(3)
    standin.frame = 1003
    press(node, "candidates")
    assert calls(engine_log)[-1][:2] == ["candidates", str(cache(node) / "job.json")]
    assert calls(engine_log)[-1][2:] == ["--shot", node.name(), "--frame", "1003", "--count", "3", "--progress", "json"]
    name, found = shown[-1]
    assert name == node.fullName() and found.frame == 1003 and [c.seed for c in found.candidates] == [5000, 5011, 5022]
    assert found.candidates[1].thumbnail == str(
        cache(node) / "stylized" / "candidates" / f"{node.name()}.1003" / "candidate_01.png"
    )
    assert node["label"].value() == "3 candidates of frame 1003"

    actions.apply_candidate(name, found.frame, found.candidates[1])  # what the picker calls
    standin.pump(lambda: not actions._RUNNING)
    assert (node["seed"].value(), node["lock_seed"].value()) == (5011, True)
    assert node["strength"].value() == pytest.approx(0.5)
    assert calls(engine_log)[-1][0] == "render" and calls(engine_log)[-1][5] == "1003-1003"
    assert job_of(node)[1].seed.value == 5011 and reloads(node) == 1


def test_presets_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default presets beside the plugin load and make valid model blocks."""
    from stylecomp.jobspec import ModelSettings

    monkeypatch.delenv("STYLECOMP_PRESETS", raising=False)
    names = presets.load()
    assert presets.presets_file() == str(PLUGIN_FOLDER / "model_presets.json") and names
    for name in names:
        ModelSettings.model_validate(presets.model_block(name))
    ModelSettings.model_validate(presets.model_block("sd15", "/tmp/ref.png", 0.7))


# ---------------------------------------------------------------------------------------------
# The engine server: a real `stylecomp serve` in this process on loopback, a tiny real model


@pytest.fixture(autouse=True)
def no_server_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The command-line tests above must not find a server the developer happens to run."""
    monkeypatch.delenv("STYLECOMP_SERVER", raising=False)
    monkeypatch.setenv("STYLECOMP_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def engine_server(node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Path, plates: Path):
    """A running engine server on STYLECOMP_SERVER, a `tiny` preset, and the plate Write writing real EXRs."""
    from stylecomp.diffusion.pool import PipelinePool
    from stylecomp.render.cache import RenderCache
    from stylecomp.server.access_token import load_or_create_token
    from stylecomp.server.app import EngineServer

    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "render-cache"))
    server = EngineServer(
        ("127.0.0.1", 0), load_or_create_token()[0], PipelinePool("cpu"), RenderCache(), roots=[tmp_path.parent]
    )  # this run's temp folder: the model, plates and nodes
    server.start()
    monkeypatch.setenv("STYLECOMP_SERVER", server.url)
    presets_file = Path(os.environ["STYLECOMP_PRESETS"])
    presets_file.write_text(
        json.dumps(
            PRESETS
            | {
                "tiny": {"family": "sd15", "path": str(model)},
                "pickle": {"family": "sd15", "path": str(model), "allow_pickle": True},
            }
        ),
        encoding="utf-8",
    )
    original = nuke.execute

    def execute(write, start: int, end: int, incr: int = 1, **options) -> None:
        original(write, start, end, incr, **options)
        for number in range(start, end + 1, incr):
            if write.name() == gizmo.WRITE_PLATE:
                shutil.copyfile(plates / f"demo.{number}.exr", write["file"].evaluate(number))

    monkeypatch.setattr(nuke, "execute", execute)
    node["model_preset"].setValue("tiny")
    node["steps"].setValue(4)
    node["range_first"].setValue(1001)
    node["range_last"].setValue(1003)
    yield server
    standin.pump(lambda: not actions._RUNNING, timeout=60)
    server.stop()


def test_render_range_goes_to_the_engine_server(node, engine_server, engine_log: Path, model: Path) -> None:
    node["render_range"].execute()
    standin.pump(lambda: not actions._RUNNING, timeout=60)
    assert calls(engine_log) == [], "the command line was not used"
    assert node["label"].value() == "3 rendered, 0 cached" and node["tile_color"].value() == gizmo.TILE_COLOUR
    outputs = sorted((cache(node) / "stylized").iterdir())
    assert [p.name for p in outputs] == ["stylized.1001.exr", "stylized.1002.exr", "stylized.1003.exr"]
    from stylecomp.io.plates import read_plate

    for path in outputs:
        assert read_plate(path).parts[0].attributes["stylecomp/model"] == str(model)
    task = standin.tasks[-1]
    assert task.progress[-1] == 100 and any("frame 1003 rendered" in m for m in task.messages)
    assert reloads(node) == 1 and standin.messages == []

    node["render_frame"].execute()  # the same frame again: the server's loaded pipeline and its cache
    standin.pump(lambda: not actions._RUNNING, timeout=60)
    assert node["label"].value() == "0 rendered, 1 cached" and engine_server.pool.loads == 1
    labels = [job["label"] for job in engine_server.queue.jobs()]
    assert labels == [f"StyleComp {node.name()}: frames 1001-1003", f"StyleComp {node.name()}: frame 1001"]


def test_cancel_stops_the_server_job_and_keeps_finished_frames(node, engine_server) -> None:
    node["steps"].setValue(40)
    node["strength"].setValue(1.0)
    node["range_last"].setValue(1006)
    node["render_range"].execute()
    standin.pump(lambda: standin.tasks and standin.tasks[-1].progress, timeout=60)  # the first frame is done
    standin.tasks[-1].cancel()
    standin.pump(lambda: not actions._RUNNING, timeout=60)
    kept = len(list((cache(node) / "stylized").iterdir()))
    assert 1 <= kept < 6 and node["label"].value() == f"cancelled; {kept} frames kept"
    assert [job["status"] for job in engine_server.queue.jobs()] == ["cancelled"]


def test_a_refused_job_and_a_wrong_token_are_shown(node, engine_server, engine_log: Path) -> None:
    node["model_preset"].setValue("pickle")
    press(node, "render_frame")
    assert node["label"].value() == "error: The engine refused the job or its input."
    assert "allow_pickle is refused by the server" in standin.messages[-1]
    engine_server.token = "another-token"
    node["model_preset"].setValue("tiny")
    press(node, "render_frame")
    assert "refused the token" in standin.messages[-1] and calls(engine_log) == []


def test_the_command_line_is_used_when_no_server_answers(
    node, engine_log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    from stylecomp.server.access_token import load_or_create_token

    load_or_create_token()  # a server ran here once ...
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("STYLECOMP_SERVER", f"http://127.0.0.1:{port}")  # ... but nothing listens now
    press(node, "render_frame")
    assert calls(engine_log)[-1][0] == "render" and node["label"].value() == "1 rendered, 0 cached"


# ---------------------------------------------------------------------------------------------
# Issue 18: what the stand-in used to hide


def test_the_engine_does_not_inherit_nukes_python(
    node, engine_log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A launcher's PYTHONPATH/PYTHONHOME are for Nuke's Python; the engine's virtualenv must not see them."""
    (tmp_path / "nuke_python").mkdir()
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "nuke_python"))  # a Python here would not even start
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "nuke_site_packages"))
    monkeypatch.setenv("PYTHONSTARTUP", str(tmp_path / "startup.py"))
    press(node, "render_frame")
    assert json.loads((engine_log / "env.json").read_text()) == {
        "PYTHONPATH": None,
        "PYTHONHOME": None,
        "PYTHONSTARTUP": None,
        "PYTHONNOUSERSITE": "1",
        "FAKE_ENGINE_LOG": str(engine_log),
    }  # the rest of the environment is kept
    assert node["label"].value() == "1 rendered, 0 cached"


def test_the_standin_read_follows_its_frame_range(node) -> None:
    """The stand-in's Read is Nuke's: before/after modes outside first..last, on_error inside."""
    read = node.node(gizmo.READ_STYLIZED)
    node["cache_dir"].setValue(str(Path(os.environ["FAKE_ENGINE_LOG"]).parent / "read_model"))
    folder = Path(read["file"].evaluate(1)).parent
    folder.mkdir(parents=True)
    for frame in (11, 12, 13):
        (folder / f"stylized.{frame:04d}.exr").write_text("stylized")
    read["first"].setValue(11)
    read["last"].setValue(14)  # 14 is missing: on_error black
    shown = {}
    for mode in ("black", "hold", "loop", "bounce"):
        read["before"].setValue(mode)
        read["after"].setValue(mode)
        shown[mode] = [standin.shown(read, frame) for frame in (8, 9, 10, 12, 14, 15, 16)]
    names = {mode: [path and int(Path(path).suffixes[0][1:]) for path in paths] for mode, paths in shown.items()}
    assert names == {
        "black": [None, None, None, 12, None, None, None],
        "hold": [11, 11, 11, 12, None, None, None],
        "loop": [12, 13, None, 12, None, 11, 12],  # 14 is missing: black
        "bounce": [None, 13, 12, 12, None, 13, 12],
    }
    read["on_error"].setValue("error")
    with pytest.raises(RuntimeError):
        standin.shown(read, 14)


def test_render_frame_outside_the_scripts_range_is_shown(node, engine_log: Path) -> None:
    """A new script's range is 1-100 while the plate starts at 1001: the frame rendered at 1050 must show."""
    nuke.root()["first_frame"].setValue(1)
    nuke.root()["last_frame"].setValue(100)
    standin.frame = 1050
    press(node, "render_frame")
    read = node.node(gizmo.READ_STYLIZED)
    assert standin.shown(read, 1050) == str(cache(node) / "stylized" / "stylized.1050.exr")
    standin.frame = 1052
    press(node, "render_frame")
    assert [standin.shown(read, frame) is not None for frame in (1049, 1050, 1051, 1052, 1053)] == [
        False,
        True,
        False,
        True,
        False,
    ]  # frames not rendered stay black
    assert node["label"].value() == "1 rendered, 0 cached"


def test_a_candidate_applied_outside_the_scripts_range_is_shown(
    node, engine_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nuke.root()["first_frame"].setValue(1)
    nuke.root()["last_frame"].setValue(100)
    shown = []
    monkeypatch.setattr(actions, "_show_picker", lambda name, found: shown.append((name, found)))
    standin.frame = 1060
    press(node, "candidates")
    name, found = shown[-1]
    actions.apply_candidate(name, found.frame, found.candidates[2])
    standin.pump(lambda: not actions._RUNNING)
    assert standin.shown(node.node(gizmo.READ_STYLIZED), 1060) == str(cache(node) / "stylized" / "stylized.1060.exr")


def test_proxy_mode_writes_the_plate_at_full_resolution(node, engine_log: Path) -> None:
    """With proxy on, a Write renders proxy-scale images (the gizmo's Writes have no proxy file): the plugin writes
    the engine's plate and style reference at full size."""
    node.setInput(gizmo.STYLE_REFERENCE_INPUT, standin.add_source("ReadStyle", ["rgba.red", "rgba.green"]))
    nuke.root()["proxy"].setValue(True)
    standin.frame = 1002
    press(node, "render_frame")
    assert (cache(node) / "inputs" / "plate.1002.exr").read_bytes() == nuke.FULL_FRAME
    assert (cache(node) / "inputs" / "style_reference.png").read_bytes() == nuke.FULL_FRAME
    assert nuke.root()["proxy"].value() is True  # the artist's proxy mode is back
    assert node["label"].value() == "1 rendered, 0 cached"


def test_a_pasted_copy_gets_its_own_cache_folder(node, engine_log: Path, tmp_path: Path) -> None:
    """Copy/paste copies the filled-in cache folder; the copy must not write the original's job and frames."""
    standin.frame = 1001
    press(node, "render_frame")
    original = cache(node)
    copy = standin.paste_copy(node)
    assert copy["cache_dir"].value() == str(original)  # what Nuke's paste gives
    standin.frame = 1002
    press(copy, "render_frame")
    assert cache(copy) == tmp_path / "shots" / "stylecomp" / copy.name() != original
    assert job_of(copy)[1].shots[0].plate == str(cache(copy) / gizmo.PLATE_PATTERN)
    assert job_of(node)[1].shots[0].name == node.name()  # the original's job is untouched
    assert sorted(p.name for p in (original / "stylized").iterdir()) == ["stylized.1001.exr"]
    assert standin.shown(copy.node(gizmo.READ_STYLIZED), 1002) == str(cache(copy) / "stylized" / "stylized.1002.exr")
    press(node, "render_frame")
    assert cache(node) == original  # the original keeps its folder


def test_a_typed_cache_folder_is_kept_and_can_be_shared(node, engine_log: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "sh010"
    node["cache_dir"].setValue(str(shared))
    copy = standin.paste_copy(node)
    press(node, "render_frame")
    press(copy, "render_frame")
    assert cache(node) == cache(copy) == shared


def test_cache_folders_are_stored_with_forward_slashes(node, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows backslashes would reach the Write and Read through [value ...] and TCL would eat them."""
    import ntpath

    from stylecomp_nuke import cache as cache_module

    nuke.root()["name"].setValue(r"C:\shows\sh010\comp\sh010_comp_v001.nk")
    with monkeypatch.context() as windows:
        windows.setattr(os, "path", ntpath)
        automatic = cache_module.cache_folder(node)
    assert node["cache_dir"].value() == automatic.root == f"C:/shows/sh010/comp/stylecomp/{node.name()}"
    assert automatic.plate == f"C:/shows/sh010/comp/stylecomp/{node.name()}/inputs/plate.####.exr"
    node["cache_dir"].setValue(r"\\server\share\sh010\stylecomp")  # typed by the artist
    with monkeypatch.context() as windows:
        windows.setattr(os, "path", ntpath)
        typed = cache_module.cache_folder(node)
    assert node["cache_dir"].value() == typed.root == "//server/share/sh010/stylecomp"
    assert node.node(gizmo.WRITE_PLATE)["file"].evaluate(1001) == "//server/share/sh010/stylecomp/inputs/plate.1001.exr"
    assert node.node(gizmo.READ_STYLIZED)["file"].evaluate(1001) == (
        "//server/share/sh010/stylecomp/stylized/stylized.1001.exr"
    )

"""The job's ``performance`` settings: batched frames, overlapped plate I/O, channels-last, SDXL's bfloat16 VAE and
torch.compile, each checked against the plain path on tiny random-weight models on the CPU.

On the CPU a batched frame is not bit-identical to the same frame rendered alone: oneDNN picks
its convolution kernels by batch size, and the last bits of their sums follow (a batch of one
through the same code is bit-identical). Frames are compared in the model's display-referred
space, where the model made them: the HDR restore's inverse view transform is steep near
highlights and magnifies any difference there (scene-linear, up to 2.6e-4 relative at a value of
89). Measured there over 4 frames each of SD 1.5 (whole and tiled), SDXL and Flux: relative L2
at most 1.7e-5, largest difference 8.4e-5. The tests allow 1e-4 and 1e-3.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stylecomp.diffusion.loading import compile_cache_dir, load_pipeline
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.errors import JobError
from stylecomp.io.plates import read_plate
from stylecomp.jobspec import ColorSettings, ModelSettings, Performance, json_schema, parse_job
from stylecomp.render import loop as render_module
from stylecomp.render.loop import STYLIZED_CHANNELS, render_job

FIRST = 1001
pytestmark = [pytest.mark.usefixtures("private_cache"), pytest.mark.plates(5, width=96, height=64)]


def job(
    plates: Path,
    model: Path,
    out: Path,
    family: str = "sd15",
    frames: int = 4,
    controlnets: bool = True,
    **settings: Any,
) -> Any:
    """A job on the demo plates, float output (so differences are not hidden by half rounding), per-frame seeds."""
    nets = (
        [
            {"path": str(model / "controlnet"), "source": "depth"},
            {"path": str(model / "controlnet"), "source": "normals", "weight": 0.5},
        ]
        if controlnets
        else []
    )
    document = {
        "shots": [
            {
                "name": "demo",
                "plate": str(plates / "demo.####.exr"),
                "frames": {"first": FIRST, "last": FIRST + frames - 1},
                "output": str(out / "demo.####.exr"),
            }
        ],
        "model": {"family": family, "path": str(model), "controlnets": nets},
        "prompt": "ink and watercolour",
        "negative_prompt": "blurry",
        "steps": 4,
        "strength": 0.5,
        "guidance": 3.0,
        "seed": {"policy": "per_frame", "value": 7},
        "exr": {"pixel_type": "float"},
    } | settings
    return parse_job(json.dumps(document))


def stylized(path: Path) -> np.ndarray:
    return read_plate(path).channels(list(STYLIZED_CHANNELS))


def header(path: Path) -> dict[str, Any]:
    return read_plate(path, pixels=False).parts[0].attributes


def assert_rounding_close(batched: np.ndarray, alone: np.ndarray) -> None:
    """Equal up to the float rounding that a different batch size (or compiled kernels) gives, compared in the
    model's space (module docstring)."""
    encoding = ColorSettings().model_encoding()
    batched, alone = (encoding.encode(rgba[..., :3], rgba[..., 3]).image for rgba in (batched, alone))
    assert np.linalg.norm(batched - alone) / np.linalg.norm(alone) < 1e-4
    assert np.abs(batched - alone).max() < 1e-3


# --- settings ---------------------------------------------------------------------------------


def test_performance_settings_defaults_and_validation() -> None:
    defaults = Performance()
    assert (defaults.batch_frames, defaults.prefetch, defaults.compile) == (None, 1, False)
    assert defaults.channels_last and defaults.vae_bfloat16
    assert [defaults.frames_per_call(device) for device in ("cuda", "cuda:1", "cpu", "mps")] == [4, 4, 1, 1]
    assert Performance(batch_frames=2).frames_per_call("cuda") == 2
    assert Performance(batch_frames=3).frames_per_call("cpu") == 3

    base = {"shots": [{"name": "a", "plate": "a.####.exr", "output": "o.####.exr"}]}
    for performance, field in (
        ({"batch_frames": 0}, "performance.batch_frames"),
        ({"prefetch": -1}, "performance.prefetch"),
        ({"compile": "fast"}, "performance.compile"),
        ({"fp8": True}, "performance.fp8"),
    ):
        with pytest.raises(JobError, match=field):
            parse_job(json.dumps(base | {"performance": performance}))
    properties = json_schema()["$defs"]["Performance"]["properties"]  # type: ignore[index]  # the schema is JSON
    assert set(properties) == {"batch_frames", "prefetch", "compile", "channels_last", "vae_bfloat16"}
    assert all(spec.get("description") for spec in properties.values()), "every setting says what it does"


def test_load_time_settings_reach_the_pipeline(tiny: dict[str, Path]) -> None:
    net = {"path": str(tiny["sd15"] / "controlnet"), "source": "depth"}
    settings = ModelSettings(family="sd15", path=str(tiny["sd15"]), controlnets=[net, net])
    pipe = load_pipeline(settings, "cpu", torch.float32, Performance(compile=True))
    nets = list(pipe.controlnet.nets)
    for module in (pipe.unet, *nets):  # compiled lazily, at the first call
        assert module._compiled_call_impl is not None
    for module in (pipe.unet, *nets, pipe.vae.encoder, pipe.vae.decoder):
        assert module.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    plain = load_pipeline(settings, "cpu", torch.float32, Performance(channels_last=False))
    assert plain.unet._compiled_call_impl is None
    assert plain.unet.conv_in.weight.is_contiguous()

    pool = PipelinePool("cpu")
    assert pool.get(settings, Performance()) is pool.get(settings, Performance(batch_frames=8, prefetch=0))
    assert pool.get(settings, Performance()) is not pool.get(settings, Performance(channels_last=False))
    assert pool.loads == 2


# --- batched frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "resolution"),
    [("sd15", {}), ("sdxl", {}), ("flux", {}), ("sd15", {"mode": "tiles", "working_size": 64, "tile_overlap": 16})],
)
def test_batched_frames_equal_frames_rendered_alone(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], family: str, resolution: dict[str, Any]
) -> None:
    """Four frames three to a call (a batch of 3, then 1) against one to a call: the same seeds, keys and pixels."""
    pool = PipelinePool("cpu")
    for batch in (1, 3):
        summary = render_job(
            job(
                plates,
                tiny[family],
                tmp_path / str(batch),
                family,
                resolution=resolution,
                performance={"batch_frames": batch},
            ),
            pool=pool,
        )
        assert summary.rendered == 4 and not summary.failed
    for frame in range(FIRST, FIRST + 4):
        alone, batched = tmp_path / f"1/demo.{frame}.exr", tmp_path / f"3/demo.{frame}.exr"
        assert_rounding_close(stylized(batched), stylized(alone))
        assert header(batched)["stylecomp/cache_key"] == header(alone)["stylecomp/cache_key"]
        assert header(batched)["stylecomp/seed"] == header(alone)["stylecomp/seed"] == 7 + frame
        assert json.loads(header(alone)["stylecomp/performance"])["batch"] == 1
    calls = [
        json.loads(header(tmp_path / f"3/demo.{frame}.exr")["stylecomp/performance"])["batch"]
        for frame in range(FIRST, FIRST + 4)
    ]
    # Three images to a call: frames, or tiles (96x64 in 64-pixel tiles is 2x1): the last frame's 1 or 2 images.
    assert calls == [3, 3, 3, 2 if resolution else 1]


def test_a_damaged_frame_in_a_batch_fails_alone(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], testdata: Path
) -> None:
    local = tmp_path / "plates"
    shutil.copytree(plates, local)
    shutil.copyfile(sorted((testdata / "exr-damaged").glob("*.exr"))[0], local / "demo.1002.exr")
    events: list[dict[str, Any]] = []
    summary = render_job(
        job(local, tiny["sd15"], tmp_path / "batched", frames=3, performance={"batch_frames": 3}),
        pool=PipelinePool("cpu"),
        report=events.append,
    )
    assert (summary.rendered, [frame for _, frame, _ in summary.failed]) == (2, [1002])
    assert str(local / "demo.1002.exr") in summary.failed[0][2]
    assert sorted(p.name for p in (tmp_path / "batched").iterdir()) == ["demo.1001.exr", "demo.1003.exr"]
    frames = [(e["frame"], e["done"], e["status"]) for e in events if e["event"] == "frame"]
    assert frames == [(1001, 1, "rendered"), (1002, 2, "failed"), (1003, 3, "rendered")]

    render_job(
        job(plates, tiny["sd15"], tmp_path / "alone", frames=3, performance={"batch_frames": 1}),
        pool=PipelinePool("cpu"),
    )
    for frame in (1001, 1003):  # the two frames ran as a batch of 2, and still give what they give alone
        assert json.loads(header(tmp_path / f"batched/demo.{frame}.exr")["stylecomp/performance"])["batch"] == 2
        assert_rounding_close(
            stylized(tmp_path / f"batched/demo.{frame}.exr"), stylized(tmp_path / f"alone/demo.{frame}.exr")
        )


def test_a_batch_the_model_cannot_run_falls_back_to_one_frame_per_call(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batched call that runs out of memory is retried one image per call, as is the rest of the shot."""
    pool = PipelinePool("cpu")
    render_job(
        job(plates, tiny["sd15"], tmp_path / "alone", frames=3, controlnets=False, performance={"batch_frames": 1}),
        pool=pool,
    )
    pipeline_class = type(pool.get(job(plates, tiny["sd15"], tmp_path, controlnets=False).model))
    run = pipeline_class.__call__
    calls: list[int] = []

    def out_of_memory_for_batches(pipe: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["image"]))
        if len(kwargs["image"]) > 1:
            raise torch.OutOfMemoryError("out of memory (injected)")
        return run(pipe, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", out_of_memory_for_batches)
    summary = render_job(
        job(plates, tiny["sd15"], tmp_path / "batched", frames=3, controlnets=False, performance={"batch_frames": 2}),
        pool=pool,
    )
    assert summary.rendered == 3 and not summary.failed
    assert calls == [2, 1, 1, 1], "the failed pair alone, then the last frame without trying a batch again"
    for frame in (1001, 1002, 1003):  # rendered alone after all: exactly what a one-frame call gives
        np.testing.assert_array_equal(
            stylized(tmp_path / f"batched/demo.{frame}.exr"), stylized(tmp_path / f"alone/demo.{frame}.exr")
        )


def test_a_batch_that_fails_otherwise_runs_alone_and_batching_goes_on(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = PipelinePool("cpu")
    pipeline_class = type(pool.get(job(plates, tiny["sd15"], tmp_path, controlnets=False).model))
    run = pipeline_class.__call__
    calls: list[int] = []

    def fails_once(pipe: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["image"]))
        if len(calls) == 1:
            raise RuntimeError("a one-off failure (injected)")
        return run(pipe, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", fails_once)
    summary = render_job(
        job(plates, tiny["sd15"], tmp_path / "out", frames=4, controlnets=False, performance={"batch_frames": 2}),
        pool=pool,
    )
    assert summary.rendered == 4 and not summary.failed
    assert calls == [2, 1, 1, 2], "the failed pair one by one, then pairs again: only memory stops batching"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_batches_without_classifier_free_guidance(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], family: str
) -> None:
    # At guidance 1 the pipelines have no negative prompt embeddings (None): nothing to repeat per frame.
    summary = render_job(
        job(
            plates,
            tiny[family],
            tmp_path,
            family=family,
            frames=2,
            controlnets=False,
            guidance=1.0,
            performance={"batch_frames": 2},
        ),
        pool=PipelinePool("cpu"),
    )
    assert summary.rendered == 2 and not summary.failed, summary.failed


def test_sequential_shots_render_one_frame_at_a_time(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    mechanisms = {"mechanisms": ["pixel_fusion"]}
    pool = PipelinePool("cpu")
    for name, batch in (("a", 1), ("b", 4)):
        render_job(
            job(
                plates,
                tiny["sd15"],
                tmp_path / name,
                frames=3,
                controlnets=False,
                consistency=mechanisms,
                performance={"batch_frames": batch},
            ),
            pool=pool,
        )
    for frame in (1001, 1002, 1003):
        assert json.loads(header(tmp_path / f"b/demo.{frame}.exr")["stylecomp/performance"])["batch"] == 1
        np.testing.assert_array_equal(
            stylized(tmp_path / f"b/demo.{frame}.exr"), stylized(tmp_path / f"a/demo.{frame}.exr")
        )


# --- overlapped plate I/O -----------------------------------------------------------------------


def test_overlapped_io_reads_and_writes_in_the_background_in_frame_order(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    readers: list[str] = []
    read_plate = render_module.read_plate

    def recording_read(path: Any, *args: Any, **kwargs: Any) -> Any:
        readers.append(threading.current_thread().name)
        return read_plate(path, *args, **kwargs)

    monkeypatch.setattr(render_module, "read_plate", recording_read)
    pool = PipelinePool("cpu")
    reporters: dict[str, list[Any]] = {"inline": [], "overlapped": []}
    for name, prefetch in (("inline", 0), ("overlapped", 2)):
        readers.clear()

        def report(event: dict[str, Any], name: str = name) -> None:
            if event["event"] == "frame":
                reporters[name].append((event["frame"], event["done"], threading.current_thread().name))

        summary = render_job(
            job(
                plates,
                tiny["sd15"],
                tmp_path / name,
                frames=5,
                controlnets=False,
                performance={"batch_frames": 2, "prefetch": prefetch},
            ),
            pool=pool,
            report=report,
        )
        assert summary.rendered == 5
        assert all(thread.startswith("stylecomp-read" if prefetch else "MainThread") for thread in readers)
    assert [(f, d) for f, d, _ in reporters["overlapped"]] == [(f, f - FIRST + 1) for f in range(FIRST, FIRST + 5)]
    assert all(thread.startswith("stylecomp-write") for _, _, thread in reporters["overlapped"])
    assert all(thread == "MainThread" for _, _, thread in reporters["inline"])
    for frame in range(FIRST, FIRST + 5):  # the same batches, so the same bits
        np.testing.assert_array_equal(
            stylized(tmp_path / f"overlapped/demo.{frame}.exr"), stylized(tmp_path / f"inline/demo.{frame}.exr")
        )


def test_cancel_with_overlapped_io_keeps_whole_frames_and_no_temp_files(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    cancel = threading.Event()
    reported: list[tuple[int, str]] = []

    def stop_at_first_frame(event: dict[str, Any]) -> None:
        if event["event"] == "frame":
            reported.append((event["frame"], event["status"]))
            cancel.set()

    summary = render_job(
        job(
            plates,
            tiny["sd15"],
            tmp_path / "out",
            frames=5,
            controlnets=False,
            performance={"batch_frames": 2, "prefetch": 2},
        ),
        pool=PipelinePool("cpu"),
        report=stop_at_first_frame,
        cancel=cancel,
    )
    assert summary.cancelled and 1 <= summary.rendered < 5
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"demo.{frame}.exr" for frame, status in reported if status == "rendered"]
    assert len(written) == summary.rendered, "every finished frame is written; nothing else, no temp files"
    for name in written:  # whole files, with their cache keys
        assert len(header(tmp_path / "out" / name)["stylecomp/cache_key"]) == 64


# --- reduced precision and compile --------------------------------------------------------------


def test_sdxl_vae_encodes_in_bfloat16_and_loses_nothing_against_the_float32_upcast(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    """With bfloat16 weights, diffusers' SDXL upcasts its VAE to float32 around each encode; vae_bfloat16 encodes in
    bfloat16. Measured against a float32 render (tiny SDXL, 2 frames, model space): both are 1.1-1.2% off it, the
    bfloat16 UNet's doing (bfloat16 vs itself at another batch size: 0.45%); they differ from each other by 1.5%."""
    encoder_dtypes: dict[str, set[torch.dtype]] = {}
    outputs = {}
    for name, dtype, vae_bfloat16 in (
        ("float32", torch.float32, True),
        ("upcast", torch.bfloat16, False),
        ("bfloat16", torch.bfloat16, True),
    ):
        pool = PipelinePool("cpu", dtype)
        spec = job(
            plates,
            tiny["sdxl"],
            tmp_path / name,
            "sdxl",
            frames=1,
            controlnets=False,
            performance={"vae_bfloat16": vae_bfloat16},
        )
        seen = encoder_dtypes.setdefault(name, set())
        pool.get(spec.model, spec.performance).vae.encoder.register_forward_pre_hook(
            lambda module, args, seen=seen: seen.add(args[0].dtype)
        )
        assert render_job(spec, pool=pool).rendered == 1
        rgba = stylized(tmp_path / f"{name}/demo.1001.exr")
        outputs[name] = ColorSettings().model_encoding().encode(rgba[..., :3], rgba[..., 3]).image
    assert encoder_dtypes == {"float32": {torch.float32}, "upcast": {torch.float32}, "bfloat16": {torch.bfloat16}}
    error = {
        name: np.linalg.norm(outputs[name] - outputs["float32"]) / np.linalg.norm(outputs["float32"])
        for name in ("upcast", "bfloat16")
    }
    assert error["upcast"] < 2e-2 and error["bfloat16"] < 1.25 * error["upcast"]
    # Another encode, another frame: a render cache must not hand one for the other.
    keys = {name: header(tmp_path / f"{name}/demo.1001.exr")["stylecomp/cache_key"] for name in outputs}
    assert keys["upcast"] != keys["bfloat16"]


@pytest.mark.slow
def test_compiled_pipeline_renders_what_eager_renders_and_a_second_start_reuses_the_compile(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.compile (inductor, C++ kernels built with gcc) on an SD 1.5 whose UNet is cut to one block of each
    kind, the smallest real UNet: compiling the tiny test model's takes over a minute on 2 CPU cores, this one
    about half that. The compiled frame equals the eager one up to rounding; a second start (compiled
    code dropped from memory) takes the compile from the stylecomp cache and gives the same bits."""
    from diffusers import UNet2DConditionModel
    from torch._dynamo.utils import counters

    model = tmp_path / "micro"
    shutil.copytree(tiny["sd15"], model, ignore=shutil.ignore_patterns("controlnet", "unet"))
    UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16,),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",),
        mid_block_type=None,
        cross_attention_dim=32,
        attention_head_dim=2,
    ).save_pretrained(model / "unet")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset below, restored after the test")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    frames = []
    for name, compiled in (("eager", False), ("compiled", True), ("second_start", True)):
        torch._dynamo.reset()
        counters.clear()
        spec = job(plates, model, tmp_path / name, frames=1, controlnets=False, performance={"compile": compiled})
        assert render_job(spec, pool=PipelinePool("cpu")).rendered == 1
        frames.append(stylized(tmp_path / f"{name}/demo.1001.exr"))
        if name == "second_start":
            assert counters["inductor"]["fxgraph_cache_hit"] >= 1
    assert compile_cache_dir() == Path(tmp_path / "cache" / "torch-compile")
    assert (compile_cache_dir() / "fxgraph").is_dir()
    eager, compiled, second_start = frames
    assert_rounding_close(compiled, eager)
    np.testing.assert_array_equal(second_start, compiled)


# --- the GPU benchmark, kept runnable -----------------------------------------------------------

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the benchmark measures for real")
def test_gpu_benchmark_without_cuda_says_so_and_measures_nothing() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(BENCHMARK)], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "no CUDA device" in done.stdout and "--smoke" in done.stdout


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_writes_every_number(tmp_path: Path) -> None:
    """The benchmark's own code at tiny size on the CPU (``--smoke``), so that it cannot rot without a GPU.
    CPU timings on a shared machine mean nothing: this checks that every number is there and sane."""
    import subprocess
    import sys

    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu (smoke)" and report["matmul_tflops"] > 0
    for family in ("sd15", "sdxl"):
        result = report[family]
        for name in (
            "stylecomp_ms_per_frame",
            "baseline_ms_per_frame",
            "floor_ms_per_frame",
            "frame_tflop",
            "unet_step_tflop",
            "first_start_s",
            "second_start_s",
        ):
            assert result[name] > 0, name
        assert result["stylecomp_vs_baseline"] == pytest.approx(
            result["stylecomp_ms_per_frame"] / result["baseline_ms_per_frame"], rel=1e-2
        )
        assert result["stylecomp_vs_floor"] == pytest.approx(
            result["stylecomp_ms_per_frame"] / result["floor_ms_per_frame"], rel=1e-2
        )
        assert (result["controlnet_step_tflop"] > 0) == (family == "sd15")  # SD 1.5 runs a depth ControlNet
        assert result["fidelity"]["pass"] and result["fidelity"]["rel_l2_max"] < 1e-2
        modes = result["consistency"]
        assert set(modes) == {
            "none",
            "locked_seed",
            "warped_noise",
            "cross_frame",
            "flow_attention",
            "latent_fusion",
            "pixel_fusion",
            "keyframes",
        }
        assert modes["none"]["vs_none"] == 1.0 and all(m["ms_per_frame"] > 0 for m in modes.values())
    assert "vs baseline" in done.stdout and "written" in done.stdout

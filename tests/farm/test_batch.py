"""`stylecomp batch`: many jobs with per-shot and overall progress, exit status, and resuming a killed run.

The resume test kills a real `stylecomp batch` subprocess with SIGKILL in the middle of a
frame, damages what a crash or a careless copy can leave behind, and checks that
`stylecomp batch --resume` ends with the same frames as an uninterrupted render.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.farm.batch import BatchJob, LocalExecutor, run_batch
from stylecomp.io.plates import read_plate, write_plate
from stylecomp.jobspec import load_job
from stylecomp.render.loop import render_job
from stylecomp.render.resume import VerifiedCache, prepare_resume
from tests.tiny_jobs import FIRST, cache_key, invoke, job_document, stylized, write_job

FRAMES = 6
pytestmark = pytest.mark.plates(FRAMES)
ENGINE = Path(sys.executable).with_name("stylecomp")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def frame_names(first: int, last: int) -> list[str]:
    return [f"demo.{frame}.exr" for frame in range(first, last + 1)]


def test_a_killed_batch_resumes_to_the_uninterrupted_result(tmp_path: Path, plates: Path, model: Path) -> None:
    document = job_document(plates, model, "out/demo.####.exr", FRAMES, steps=10)
    job = write_job(tmp_path / "killed" / "job.json", document)
    out = tmp_path / "killed" / "out"
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen([str(ENGINE), "batch", str(job), "--device", "cpu"], stdout=log, stderr=log)
        deadline = time.monotonic() + 240
        while not (out / "demo.1002.exr").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    done = sorted(out.glob("demo.*.exr"))
    assert 2 <= len(done) < FRAMES, "killed after the second frame, before the last"

    # What a crash can leave: a temp file of the dead run, and an output cut short (here in place, so the
    # render cache's hard link to it is damaged as well). Both must never count as done.
    first = out / "demo.1001.exr"
    data = first.read_bytes()
    leftover = out / f".demo.{FIRST + FRAMES - 1}.{process.pid}-0badf00d.tmp.exr"
    leftover.write_bytes(data[: len(data) // 2])
    os.truncate(first, len(data) // 2)

    resumed = subprocess.run(
        [str(ENGINE), "batch", str(job), "--resume", "--device", "cpu", "--progress", "json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    resume = next(e for e in events if e["event"] == "resume")
    assert str(leftover) in resume["removed_temp"] and resume["removed_damaged"] == [str(first)]
    assert resume["complete"] == len(done) - 1
    status = {e["frame"]: e["status"] for e in events if e["event"] == "frame"}
    assert sorted(status) == list(range(FIRST, FIRST + FRAMES))
    assert status[FIRST] == "rendered", "the truncated frame is rendered again"
    assert all(status[int(path.name.split(".")[1])] == "cached" for path in done[1:]), "finished frames are skipped"
    assert events[-1]["event"] == "end" and events[-1]["overall"] == {"done": FRAMES, "total": FRAMES, "eta": 0.0}
    assert sorted(p.name for p in out.iterdir()) == frame_names(FIRST, FIRST + FRAMES - 1), "no temp files left"

    reference = load_job(write_job(tmp_path / "reference" / "job.json", document))
    assert render_job(reference, pool=PipelinePool("cpu"), cache=None).rendered == FRAMES
    for name in frame_names(FIRST, FIRST + FRAMES - 1):
        expected = tmp_path / "reference" / "out" / name
        assert cache_key(out / name) == cache_key(expected)
        np.testing.assert_array_equal(stylized(out / name), stylized(expected))


def test_jobs_share_a_pipeline_and_progress_counts_shots_and_overall(tmp_path: Path, plates: Path, model: Path) -> None:
    jobs = [
        write_job(tmp_path / name / "job.json", job_document(plates, model, "out/demo.####.exr", 2, prompt=name))
        for name in ("ink", "chalk")
    ]
    events: list[dict] = []
    pool = PipelinePool("cpu")
    summary = run_batch(
        [BatchJob(str(path), load_job(path)) for path in jobs],
        LocalExecutor(pool, VerifiedCache()),
        report=events.append,
    )
    assert (summary.rendered, summary.cached, summary.exit_status) == (4, 0, 0)
    assert pool.loads == 1, "the second job reuses the first job's pipeline"
    assert events[0] == {"event": "batch", "jobs": [str(path) for path in jobs], "total": 4}
    frames = [e for e in events if e["event"] == "frame"]
    assert [(e["job"], e["frame"], e["overall"]["done"]) for e in frames] == [
        (str(jobs[0]), 1001, 1),
        (str(jobs[0]), 1002, 2),
        (str(jobs[1]), 1001, 3),
        (str(jobs[1]), 1002, 4),
    ]
    assert frames[0]["overall"]["eta"] > 0 and frames[-1]["overall"]["eta"] == 0
    shot_ends = [e for e in events if e["event"] == "shot_end"]
    assert [(e["job"], e["done"], e["total"], e["rendered"], e["overall"]["done"]) for e in shot_ends] == [
        (str(jobs[0]), 2, 2, 2, 2),
        (str(jobs[1]), 2, 2, 2, 4),
    ]
    assert [e["event"] for e in events][-2:] == ["job_end", "end"]

    status, out, err = invoke("batch", *map(str, jobs), "--device", "cpu")
    assert status == 0, err
    assert f"{jobs[0]} demo: 2/2 frames (rendered 0, cached 2, failed 0)   overall 2/4 frames, ETA" in err
    assert f"{jobs[1]} demo: 2/2 frames (rendered 0, cached 2, failed 0)   overall 4/4 frames, ETA" in err
    assert "2 job(s): rendered 0, from cache 4, failed 0, refused 0" in out


def test_exit_status_for_bad_refused_and_failed_jobs(tmp_path: Path, plates: Path, model: Path) -> None:
    good = write_job(tmp_path / "good" / "job.json", job_document(plates, model, "out/demo.####.exr", 1, steps=2))
    bad = tmp_path / "bad.json"
    bad.write_text('{"shots": [], "colour": {}}')
    status, _, err = invoke("batch", str(bad), str(good), "--device", "cpu")
    assert status == 2 and f"error: {bad}: shots: " in err and f"error: {bad}: colour: " in err
    assert not (tmp_path / "good" / "out").exists(), "an unusable job file stops the batch before any frame"

    no_model = job_document(plates, tmp_path / "no-model", "out/demo.####.exr", 1)
    refused = write_job(tmp_path / "refused" / "job.json", no_model)
    status, out, err = invoke("batch", str(refused), str(good), "--device", "cpu")
    assert status == 2 and f"error: {refused}: " in err and str(tmp_path / "no-model") in err
    assert (tmp_path / "good" / "out" / "demo.1001.exr").is_file(), "the other jobs still render"
    assert "rendered 1, from cache 0, failed 0, refused 1" in out

    missing = job_document(plates, model, "out/demo.####.exr", 1, steps=2)
    missing["shots"][0]["frames"] = {"first": FIRST + FRAMES - 1, "last": FIRST + FRAMES}
    status, out, err = invoke("batch", str(write_job(tmp_path / "missing" / "job.json", missing)), "--device", "cpu")
    assert status == 1 and "frame missing on disk" in err and "rendered 1, from cache 0, failed 1" in out


def test_resume_removes_only_dead_temp_files_and_damaged_outputs(tmp_path: Path, plates: Path, model: Path) -> None:
    job = load_job(write_job(tmp_path / "job.json", job_document(plates, model, "out/demo.####.exr", 3)))
    out = tmp_path / "out"
    source = read_plate(plates / "demo.1001.exr")
    for frame in (1001, 1002):
        write_plate(out / f"demo.{frame}.exr", source.parts, provenance={"cache_key": "ab" * 32})
    damaged = out / "demo.1002.exr"
    os.truncate(damaged, damaged.stat().st_size // 2)
    write_plate(out / "demo.1003.exr", source.parts)  # whole, but without a cache key: render_job renders it again
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        names = {
            "dead": f".demo.1003.{dead.pid}-00c0ffee.tmp.exr",
            "alive": f".demo.1003.{alive.pid}-00c0ffee.tmp.exr",
            "other": f".other.1003.{dead.pid}-00c0ffee.tmp.exr",
            "outside": f".demo.1004.{dead.pid}-00c0ffee.tmp.exr",
        }
        for name in names.values():
            (out / name).write_bytes(b"partial")
        report = prepare_resume(job, frames=(1001, 1003))
    finally:
        alive.kill()
        alive.wait()
    assert report.removed_temp == [str(out / names["dead"])]
    assert report.removed_damaged == [str(damaged)] and report.complete == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["demo.1001.exr", "demo.1003.exr", names["alive"], names["other"], names["outside"]]
    )

    cache = VerifiedCache(tmp_path / "renders")
    cache.store("ab" * 32, out / "demo.1001.exr")
    assert cache.lookup("ab" * 32) == cache.path("ab" * 32)
    os.truncate(out / "demo.1001.exr", 4000)  # the cache entry is a hard link to it: damaged too
    assert cache.lookup("ab" * 32) is None and not cache.path("ab" * 32).exists()

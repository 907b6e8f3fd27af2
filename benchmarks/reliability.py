"""Reliability benchmark (issue 23, 7): nothing lost, nobody dropped, every bad input one line, cancel prompt.

Everything runs for real on this machine with the tiny random-weight SD 1.5 (``stylecomp model
make-test``; nothing is downloaded), in a temp folder:

* burst:   ``stylecomp serve`` on 127.0.0.1; 50 clients send 200 ``POST /jobs`` at once (4 each) while 4
           more poll ``/health`` from a process of their own, as a monitor would (so their timings do not
           wait on the 50 clients' threads): accepted, dropped (a reset or no answer), p99 latency of each.
* kills:   ``stylecomp batch`` killed with SIGKILL at N random points of its run, then ``--resume``: are the
           frames bit-identical to an uninterrupted run's?
* fuzz:    tests/test_fuzz.py under a hypothesis profile: cases run and tracebacks found, by input kind.
* damaged: ``stylecomp inspect`` on every file of shared/testdata/exr-damaged: one-line failures, tracebacks.
* cancel:  a render of a 512 px plate (one denoising step takes seconds) cancelled mid-step: seconds to stop.
* hook:    the per-module cancel check's cost: the same render with and without it (interleaved, median).

Goals: 0 dropped, 0 tracebacks, all kills identical, cancel <= 2 s, /health p99 <= 100 ms. The exit
status is 1 if one is missed. Run with::

    nice -n 15 .venv/bin/python benchmarks/reliability.py [--kills 20] [--fuzz-profile bench]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from tiny_jobs import FIRST, job_document, stylized, write_plates  # noqa: E402 - after the tests folder joins sys.path

ENGINE = Path(sys.executable).with_name("stylecomp")
TESTDATA = Path(os.environ.get("STYLECOMP_TESTDATA", ROOT.parent / "shared" / "testdata"))
HEALTH_CLIENTS = 4  # polling /health all through the burst
GOALS = {"dropped": 0, "tracebacks": 0, "cancel_s": 2.0, "health_p99_ms": 100.0}


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


@contextlib.contextmanager
def server(work: Path, model: Path) -> Iterator[tuple[str, str]]:
    """``stylecomp serve`` confined to ``work`` and the model, its token and queue in ``work``: (url, token)."""
    env = os.environ | {"STYLECOMP_CACHE_DIR": str(work / "cache"), "STYLECOMP_CONFIG_DIR": str(work / "config")}
    process = subprocess.Popen(
        [
            str(ENGINE),
            "serve",
            "--port",
            "0",
            "--device",
            "cpu",
            "--no-cache",
            "--root",
            str(work),
            "--root",
            str(model.parent),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = process.stdout.readline().split()[4]  # type: ignore[union-attr]  # stdout=PIPE
        yield url, (work / "config" / "server-token").read_text().strip()
    finally:
        process.kill()
        process.wait(30)


def request(url: str, token: str, method: str, path: str, body: Any = None) -> tuple[int | str, float]:
    """One request: its status (or the exception's name when the connection broke) and seconds taken."""
    data = json.dumps(body).encode() if body is not None else None
    started = time.monotonic()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url + path, data=data, method=method, headers={"Authorization": f"Bearer {token}"}),
            timeout=60,
        ) as answer:
            answer.read()
            return answer.status, time.monotonic() - started
    except urllib.error.HTTPError as refused:
        refused.close()
        return refused.code, time.monotonic() - started
    except OSError as exc:
        return type(exc).__name__, time.monotonic() - started


def burst(work: Path, model: Path, clients: int = 50, each: int = 4) -> dict[str, Any]:
    """200 submissions from 50 clients at once, with /health polled all through from another process."""
    plates = write_plates(work / "burst_plates", 1)
    document = job_document(plates, model, str(work / "burst_out" / "demo.####.exr"), 1, steps=1)
    answers: list[tuple[int | str, float]] = []
    with server(work, model) as (url, token):
        start = threading.Barrier(clients)

        def client() -> None:
            start.wait()
            for _ in range(each):
                answers.append(request(url, token, "POST", "/jobs", {"job": document}))

        # The token goes through the environment, never the command line (which `ps` shows).
        poller = subprocess.Popen(
            [sys.executable, __file__, "--poll-health", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"STYLECOMP_TOKEN": token},
        )
        try:
            if poller.stdout.readline().strip() != "polling":  # type: ignore[union-attr]  # stdout=PIPE
                raise RuntimeError("the /health poller did not start")
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for thread in threads:
                thread.start()
            began = time.monotonic()
            for thread in threads:
                thread.join()
            seconds = time.monotonic() - began
            health = [tuple(answer) for answer in json.loads(poller.communicate("", timeout=60)[0])]
        finally:
            if poller.poll() is None:
                poller.kill()
                poller.wait()
    statuses = Counter(str(status) for status, _ in answers)
    return {
        "submissions": len(answers),
        "clients": clients,
        "accepted": statuses.get("201", 0),
        "dropped": sum(n for status, n in statuses.items() if not status.isdigit()),
        "statuses": dict(statuses),
        "seconds": round(seconds, 2),
        "submit_p50_ms": round(1000 * statistics.median(s for _, s in answers), 1),
        "submit_p99_ms": round(1000 * p99([s for _, s in answers]), 1),
        "health_requests": len(health),
        "health_failed": sum(status != 200 for status, _ in health),
        "health_p99_ms": round(1000 * p99([s for _, s in health]), 1),
    }


def kills(work: Path, model: Path, count: int, seed: int) -> dict[str, Any]:
    """Kill a batch at ``count`` random points of its rendering (after a random number of frames, a random time into
    the next one), resume it, and compare every frame bit for bit with an uninterrupted run."""
    frames = 6
    plates = write_plates(work / "kill_plates", frames)
    env = os.environ | {"STYLECOMP_CONFIG_DIR": str(work / "config")}

    def batch(out: Path, *extra: str, cache: Path) -> subprocess.Popen[str]:
        job = work / f"{out.name}.json"
        job.write_text(json.dumps(job_document(plates, model, str(out / "demo.####.exr"), frames, steps=3)))
        return subprocess.Popen(
            [str(ENGINE), "batch", str(job), "--device", "cpu", "--progress", "json", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env | {"STYLECOMP_CACHE_DIR": str(cache)},
        )

    def frame_times(process: subprocess.Popen[str], stop_after: int | None = None) -> list[float]:
        """When each frame event came; stops reading after ``stop_after`` of them."""
        times = []
        for line in process.stdout:  # type: ignore[union-attr]  # stdout=PIPE
            if json.loads(line).get("event") == "frame":
                times.append(time.monotonic())
                if len(times) == stop_after:
                    break
        return times

    clean_run = batch(work / "clean", cache=work / "clean_cache")
    stamps = frame_times(clean_run)
    assert clean_run.wait() == 0
    frame_s = (stamps[-1] - stamps[0]) / (frames - 1)
    clean = [stylized(work / "clean" / f"demo.{FIRST + k}.exr") for k in range(frames)]
    rng = random.Random(seed)
    runs = []
    for run in range(count):
        out, cache = work / f"killed{run}", work / f"cache{run}"
        after, into = rng.randrange(frames), rng.uniform(0, frame_s)
        process = batch(out, cache=cache)
        if after:
            frame_times(process, after)
        else:
            while not out.exists() and process.poll() is None:  # the run has started rendering (it made the folder)
                time.sleep(0.01)
        time.sleep(into)
        process.send_signal(signal.SIGKILL)
        process.wait()
        left = sorted(path.name for path in out.iterdir()) if out.exists() else []
        resumed = batch(out, "--resume", cache=cache)
        frame_times(resumed)
        status = resumed.wait()
        diffs = [np.abs(stylized(out / f"demo.{FIRST + k}.exr") - clean[k]) for k in range(frames)]
        runs.append(
            {
                "frames_done_before": after,
                "seconds_into_next": round(into, 2),
                "whole_frames_at_kill": sum(name.startswith("demo.") for name in left),
                "temp_files_at_kill": sum(not name.startswith("demo.") for name in left),
                "resume_status": status,
                "identical": all((d == 0).all() for d in diffs),
                "max_abs_diff": float(max(d.max() for d in diffs)),
                "values_differing": int(sum((d > 0).sum() for d in diffs)),
            }
        )
        shutil.rmtree(out)
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "kills": count,
        "frames": frames,
        "frame_s": round(frame_s, 2),
        "identical": sum(run["identical"] and run["resume_status"] == 0 for run in runs),
        "runs": runs,
    }


def fuzz(work: Path, profile: str) -> dict[str, Any]:
    """tests/test_fuzz.py under ``profile``: cases by kind, and the tests that found a traceback (or crash/hang)."""
    log = work / "fuzz.log"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_fuzz.py")],
        cwd=ROOT,
        check=False,  # failing tests are what this counts
        capture_output=True,
        text=True,
        env=os.environ | {"HYPOTHESIS_PROFILE": profile, "STYLECOMP_FUZZ_LOG": str(log)},
    )
    cases = Counter(line.split()[0] for line in log.read_text().splitlines()) if log.exists() else Counter()
    failed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("FAILED")]
    kinds = {"job_documents": ["job"], "submissions": ["submission"], "exr_mutants": ["exr"], "cli_arguments": ["cli"]}
    tests = {"job_documents": "job", "submissions": "submission", "exr_mutants": "exr", "cli_arguments": "cli"}
    return {
        "profile": profile,
        "seconds": round(time.monotonic() - began, 1),
        **{
            kind: {
                "cases": sum(cases[name] for name in names),
                "tracebacks": sum(tests[kind] in test for test in failed),
            }
            for kind, names in kinds.items()
        },
        "failed_tests": failed,
    }


def damaged() -> dict[str, Any]:
    """``stylecomp inspect`` on each damaged file: one line naming it, a traceback, a crash or a hang."""
    files = sorted((TESTDATA / "exr-damaged").glob("*.exr"))
    outcome: Counter[str] = Counter()
    bad = []
    for path in files:
        try:
            result = subprocess.run(
                [str(ENGINE), "inspect", str(path)], capture_output=True, text=True, timeout=120, check=False
            )
        except subprocess.TimeoutExpired:
            outcome["hangs"] += 1
            bad.append(path.name)
            continue
        if result.returncode == 0:
            outcome["read"] += 1
        elif result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {path}: "):
            outcome["one_line_failures"] += 1
        else:
            outcome["tracebacks" if "Traceback" in result.stderr else "other"] += 1
            bad.append(path.name)
    return {
        "files": len(files),
        "read": outcome["read"],
        "one_line_failures": outcome["one_line_failures"],
        "tracebacks": outcome["tracebacks"],
        "crashes_or_other": outcome["other"],
        "hangs": outcome["hangs"],
        "bad_files": bad,
    }


def _plate_job(work: Path, model: Path, size: int, steps: int, name: str) -> Any:
    """A one-frame job on a random ``size`` px plate, native resolution, strength 1 (every step runs)."""
    from stylecomp.io.plates import ImagePart, Window, write_plate
    from stylecomp.jobspec import parse_job

    rgba = np.random.default_rng(0).random((size, size, 4), dtype=np.float32)
    rgba[..., 3] = 1.0
    window = Window(0, 0, size, size)
    write_plate(work / f"{name}.exr", [ImagePart.create(rgba, ["R", "G", "B", "A"], window, window)])
    return parse_job(
        json.dumps(
            {
                "version": 1,
                "shots": [
                    {
                        "name": name,
                        "plate": str(work / f"{name}.exr"),
                        "output": str(work / f"{name}_out" / f"{name}.exr"),
                    }
                ],
                "model": {"family": "sd15", "path": str(model)},
                "steps": steps,
                "strength": 1.0,
                "resolution": {"mode": "native"},
            }
        )
    )


def cancel_latency(work: Path, model: Path, repeats: int = 3) -> dict[str, Any]:
    """Cancel a 512 px render 0.3 s into a UNet call (one step takes seconds here): seconds until it returns."""
    import torch

    from stylecomp.diffusion.pool import PipelinePool
    from stylecomp.render.loop import render_job

    job, pool = _plate_job(work, model, 512, 50, "long_step"), PipelinePool("cpu")
    latencies, partial = [], 0
    for _ in range(repeats):
        cancel, inside = threading.Event(), threading.Event()

        def watch(module: torch.nn.Module, _args: Any, inside: threading.Event = inside) -> None:
            if type(module).__name__ == "UNet2DConditionModel":
                inside.set()

        hook = torch.nn.modules.module.register_module_forward_pre_hook(watch)
        thread = threading.Thread(
            target=render_job, args=(job,), kwargs={"pool": pool, "cancel": cancel, "cache": None}
        )
        try:
            thread.start()
            inside.wait(600)
            time.sleep(0.3)
            cancelled = time.monotonic()
            cancel.set()
            thread.join()
            latencies.append(time.monotonic() - cancelled)
        finally:
            hook.remove()
        out = work / "long_step_out"
        partial += len(list(out.iterdir())) if out.exists() else 0
        shutil.rmtree(out, ignore_errors=True)
    return {
        "plate_px": 512,
        "repeats": repeats,
        "latency_s": [round(s, 3) for s in latencies],
        "max_s": round(max(latencies), 3),
        "files_left": partial,
    }


def hook_overhead(work: Path, model: Path, repeats: int = 7) -> dict[str, Any]:
    """One 128 px frame, 20 steps, rendered with and without the per-module cancel check (interleaved; median)."""
    from stylecomp.diffusion.pool import PipelinePool
    from stylecomp.render import loop as render_module

    job, pool = _plate_job(work, model, 128, 20, "overhead"), PipelinePool("cpu")
    real = render_module.interruptible
    times: dict[str, list[float]] = {"with": [], "without": []}
    for run in range(repeats + 1):
        for mode in ("with", "without"):
            render_module.interruptible = (
                real if mode == "with" else (lambda cancel, enabled=True: contextlib.nullcontext())
            )
            shutil.rmtree(work / "overhead_out", ignore_errors=True)  # else the current output is kept, not rendered
            began = time.perf_counter()
            render_module.render_job(job, pool=pool, cache=None, cancel=threading.Event())
            if run:  # the first round warms up
                times[mode].append(time.perf_counter() - began)
    render_module.interruptible = real
    with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
    return {
        "plate_px": 128,
        "steps": 20,
        "repeats": repeats,
        "with_s": round(with_s, 3),
        "without_s": round(without_s, 3),
        "overhead_pct": round(100 * (with_s / without_s - 1), 2),
    }


def poll_health(url: str) -> None:
    """The burst's monitor: HEALTH_CLIENTS threads poll /health until stdin closes, then the answers go to stdout."""
    token, answers, done = os.environ["STYLECOMP_TOKEN"], [], threading.Event()

    def poll() -> None:
        while not done.is_set():
            answers.append(request(url, token, "GET", "/health"))
            time.sleep(0.01)

    pollers = [threading.Thread(target=poll) for _ in range(HEALTH_CLIENTS)]
    for poller in pollers:
        poller.start()
    print("polling", flush=True)
    sys.stdin.read()
    done.set()
    for poller in pollers:
        poller.join()
    print(json.dumps(answers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kill -9 points (default 20)")
    parser.add_argument("--seed", type=int, default=23, help="seed for the kill points")
    parser.add_argument("--fuzz-profile", default="bench", help="hypothesis profile for the fuzz tests")
    parser.add_argument(
        "--only", nargs="*", default=None, help="sections to run: burst kills fuzz damaged cancel hook (default: all)"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    parser.add_argument("--poll-health", metavar="URL", help=argparse.SUPPRESS)  # the burst's monitor process
    args = parser.parse_args()
    if args.poll_health:
        poll_health(args.poll_health)
        return 0
    from stylecomp.diffusion.testing import make_test_model

    sections = args.only or ["burst", "kills", "fuzz", "damaged", "cancel", "hook"]
    report: dict[str, Any] = json.loads(Path(args.out).read_text()) if args.only and os.path.exists(args.out) else {}
    with tempfile.TemporaryDirectory(prefix="stylecomp-reliability-") as folder:
        work = Path(folder)
        os.environ["STYLECOMP_CACHE_DIR"] = str(work / "cache")
        model = make_test_model(work / "model" / "sd15", "sd15")
        steps = {
            "burst": lambda: burst(work, model),
            "kills": lambda: kills(work, model, args.kills, args.seed),
            "fuzz": lambda: fuzz(work, args.fuzz_profile),
            "damaged": damaged,
            "cancel": lambda: cancel_latency(work, model),
            "hook": lambda: hook_overhead(work, model),
        }
        for section in sections:
            began = time.monotonic()
            report[section] = steps[section]()
            print(f"{section} ({time.monotonic() - began:.0f} s): {json.dumps(report[section])[:600]}", flush=True)
    report["goals"] = GOALS
    report["machine"] = f"{os.cpu_count()} CPU cores, tiny random-weight SD 1.5, CPU"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    missed = missed_goals(report)
    for line in missed:
        print(f"goal missed: {line}")
    return 1 if missed else 0


def missed_goals(report: dict[str, Any]) -> list[str]:
    """The goals the report misses, one line each (sections not run are not judged)."""
    missed = []
    if "burst" in report and report["burst"]["dropped"]:
        missed.append(f"{report['burst']['dropped']} submissions dropped")
    if "burst" in report and report["burst"]["health_p99_ms"] > GOALS["health_p99_ms"]:
        missed.append(f"/health p99 {report['burst']['health_p99_ms']} ms")
    if "kills" in report and report["kills"]["identical"] != report["kills"]["kills"]:
        missed.append(f"{report['kills']['identical']}/{report['kills']['kills']} kills identical")
    tracebacks = (
        sum(report["fuzz"][k]["tracebacks"] for k in ("job_documents", "submissions", "exr_mutants", "cli_arguments"))
        if "fuzz" in report
        else 0
    )
    tracebacks += report["damaged"]["tracebacks"] + report["damaged"]["crashes_or_other"] if "damaged" in report else 0
    if tracebacks:
        missed.append(f"{tracebacks} tracebacks")
    if "cancel" in report and report["cancel"]["max_s"] > GOALS["cancel_s"]:
        missed.append(f"cancel took {report['cancel']['max_s']} s")
    return missed


if __name__ == "__main__":
    sys.exit(main())

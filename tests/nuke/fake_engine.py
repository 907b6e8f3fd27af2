"""A fake stylecomp engine: the CLI contract, no diffusion. FAKE_ENGINE_MODE picks the behaviour.

The plugin tests install this file as the executable ``stylecomp`` (tests/nuke/conftest.py, ``engine_log``). It
logs its arguments, pid and Python environment to $FAKE_ENGINE_LOG, prints the ``--progress json`` events the real
engine prints, writes the output files, and stops on SIGTERM. Modes: ok, slow, fail_frame, bad_job.
"""

import json
import os
import signal
import sys
import time

log, mode, args = os.environ["FAKE_ENGINE_LOG"], os.environ.get("FAKE_ENGINE_MODE", "ok"), sys.argv[1:]
with open(os.path.join(log, "calls.jsonl"), "a") as handle:
    handle.write(json.dumps(args) + "\n")
with open(os.path.join(log, "pid"), "w") as handle:
    handle.write(str(os.getpid()))
with open(os.path.join(log, "env.json"), "w") as handle:
    json.dump(
        {
            name: os.environ.get(name)
            for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE", "FAKE_ENGINE_LOG")
        },
        handle,
    )


def stop(signum, frame):
    open(os.path.join(log, "terminated"), "w").close()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, stop)


def emit(**event):
    print(json.dumps(event), flush=True)


if args == ["--version"]:
    print("stylecomp 0.1.0")
    sys.exit(0)
if mode == "bad_job":
    print("error: " + args[1] + ": shots[0].plate: no frames found", file=sys.stderr)
    print("error: " + args[1] + ": model.path: not a diffusers folder", file=sys.stderr)
    sys.exit(2)
job = json.load(open(args[1]))
options = dict(zip(args[2::2], args[3::2], strict=True))  # options come in pairs
shot = job["shots"][0]
assert options["--shot"] == shot["name"] and options["--progress"] == "json"
if args[0] == "render":
    first, last = (int(x) for x in options["--frames"].split("-"))
    total, counts = last - first + 1, {"rendered": 0, "cached": 0, "failed": 0}
    emit(event="start", shot=shot["name"], frames=[first, last], total=total)
    for done, frame in enumerate(range(first, last + 1), 1):
        time.sleep(0.3 if mode == "slow" else 0.0)
        output = shot["output"].replace("####", f"{frame:04d}")
        status = "failed" if mode == "fail_frame" and frame == first + 1 else "rendered"
        event = {
            "event": "frame",
            "shot": shot["name"],
            "frame": frame,
            "done": done,
            "total": total,
            "status": status,
            "seconds": 0.01,
            "eta": 0.01 * (total - done),
            "output": output,
        }
        if status == "failed":
            event["error"] = "CUDA out of memory"
        else:
            os.makedirs(os.path.dirname(output), exist_ok=True)
            open(output, "w").write("stylized")
        counts[status] += 1
        emit(**event)
    emit(event="end", **counts)
    sys.exit(1 if counts["failed"] else 0)
if args[0] == "candidates":
    frame, count = int(options["--frame"]), int(options["--count"])
    folder = os.path.join(os.path.dirname(shot["output"]), "candidates", f"{shot['name']}.{frame}")
    os.makedirs(folder, exist_ok=True)
    entries = []
    for k in range(count):
        emit(
            event="frame",
            shot=shot["name"],
            frame=frame,
            done=k + 1,
            total=count,
            status="rendered",
            seconds=0.01,
            eta=0.0,
            output=os.path.join(folder, f"candidate_{k:02d}.exr"),
        )
        entries.append(
            {
                "index": k,
                "seed": 5000 + 11 * k,
                "strength": 0.4 + 0.1 * k,
                "prompt": job["prompt"],
                "exr": f"candidate_{k:02d}.exr",
                "thumbnail": f"candidate_{k:02d}.png",
            }
        )
    manifest = {
        "shot": shot["name"],
        "frame": frame,
        "job": os.path.abspath(args[1]),
        "contact_sheet": "contact_sheet.png",
        "candidates": entries,
    }
    path = os.path.join(folder, "manifest.json")
    json.dump(manifest, open(path, "w"))
    print(path, flush=True)
    sys.exit(0)
sys.exit(3)

"""Planning from the job spec alone: `job validate`, chunk planning and `farm openjd` import neither torch nor
diffusers, and whether a shot is sequential is answered without loading a stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stylecomp.demo.scene import write_demo
from stylecomp.diffusion.testing import make_test_model
from stylecomp.farm.chunks import plan_shots
from stylecomp.jobspec import load_job

HEAVY = ("torch", "diffusers")

# Each snippet runs one path on the job at sys.argv[1], then prints which of HEAVY it left in sys.modules.
PATHS = {
    "job validate": "from stylecomp.cli import cli\ncli(['job', 'validate', job], standalone_mode=False)",
    "chunk planning": "from stylecomp.farm.chunks import plan_shots\nfrom stylecomp.jobspec import load_job\n"
    "plan_shots(load_job(job), chunk_size=2)",
    "farm openjd": "from stylecomp.cli import cli\n"
    "cli(['farm', 'openjd', job, '-o', job + '.template.yaml'], standalone_mode=False)",
    "sequential": "from stylecomp.jobspec import load_job\nassert load_job(job).consistency.sequential",
}


@pytest.fixture(scope="module")
def job_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-shot job on three demo frames with a sequential mechanism (warped_noise)."""
    root = tmp_path_factory.mktemp("planning")
    write_demo(root / "plates", frames=3, width=64, height=48, progress=lambda done, total: None)
    model = make_test_model(root / "sd15", "sd15")
    job = {
        "shots": [
            {
                "name": name,
                "plate": str(root / "plates" / "demo.####.exr"),
                "frames": {"first": 1001, "last": 1003},
                "output": f"out/{name}/{name}.####.exr",
            }
            for name in ("sh010", "sh020")
        ],
        "model": {"family": "sd15", "path": str(model)},
        "prompt": "ink",
        "steps": 2,
        "strength": 0.5,
        "consistency": {"mechanisms": ["locked_seed", "warped_noise"]},
    }
    (root / "job.json").write_text(json.dumps(job))
    return root / "job.json"


@pytest.mark.parametrize(
    "path",
    [
        "job validate",
        "sequential",
        "chunk planning",
        "farm openjd",
    ],
)
def test_planning_paths_import_no_torch(job_path: Path, path: str) -> None:
    code = (
        f"import sys\njob = sys.argv[1]\n{PATHS[path]}\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(job_path)], check=False, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]", f"{path} imported {run.stdout.strip()}"


@pytest.mark.parametrize(
    "mechanisms, sequential",
    [
        ([], False),
        (["locked_seed"], False),
        (["pixel_fusion"], True),
        (["cross_frame"], True),
    ],
)
def test_plan_follows_the_job_spec(job_path: Path, mechanisms: list[str], sequential: bool) -> None:
    job = load_job(job_path)
    job.consistency.mechanisms = mechanisms
    plans = plan_shots(job, frames=(1002, 1003), chunk_size=1)
    assert [plan.sequential for plan in plans] == [sequential, sequential]
    if sequential:  # one chunk from the shot's first frame, whatever range was asked for
        assert [(c.first, c.last, c.count) for plan in plans for c in plan.chunks] == [(1001, 1003, 3)] * 2
    else:
        assert [(c.first, c.last) for c in plans[0].chunks] == [(1002, 1002), (1003, 1003)]
    assert {plan.stage for plan in plans} == {"stylize"}

"""Style-fidelity benchmark: how close the built-in model's output comes to each look's ground truth.

On held-out scenes (seeds the model never saw in training), each look's prompt stylizes the
plate through ``render_job`` (what ``stylecomp render`` runs), with the line-art ControlNet on
and off (the tile ControlNet always on). The output is compared in display-referred space with
the look computed from the scene's own layers (``stylecomp.stylemodel.evaluation``): L1 relative
to the plate's own L1 (goal <= 0.5), SSIM of output and plate, outline F1 against the look's
line mask, and outline contrast (how much more the output darkens the plate on that mask than
off it). The same architecture with random weights runs too, to show what the numbers mean.
``sweep`` varies the recommended settings (steps, strength, guidance) on the first 4 scenes, so the
recommendation rests on numbers.

    .venv/bin/python benchmarks/style_fidelity.py [--scenes 8] [--out benchmarks/results/style_fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.stylemodel import SHIPPED_MODEL
from stylecomp.stylemodel.architecture import save_random_model
from stylecomp.stylemodel.evaluation import EVALUATION_PROMPTS, RECOMMENDED, held_out_metrics, held_out_shot

GOAL_L1_RATIO = 0.5
SWEEP = {
    "recommended": {},
    "steps 20": {"steps": 20},
    "strength 0.6, steps 20": {"strength": 0.6, "steps": 20},
    "guidance 2": {"guidance": 2.0},
    "guidance 4": {"guidance": 4.0},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes to measure (at most 16)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "style_fidelity.json"))
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    pool = PipelinePool("cpu")
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        shots = [held_out_shot(i, root / f"scene{i}") for i in range(args.scenes)]
        models = {"trained": SHIPPED_MODEL, "random weights": save_random_model(root / "random")}
        for model_name, model in models.items():
            for line_art in (True, False):
                started = time.perf_counter()
                metrics = held_out_metrics(shots, root / "out", replace(RECOMMENDED, line_art=line_art), model, pool)
                seconds = (time.perf_counter() - started) / (len(shots) * len(metrics))
                for look, m in metrics.items():
                    key = f"{model_name} / {look} / line art {'on' if line_art else 'off'}"
                    results[key] = {**m, "s_per_frame": round(seconds, 2)}
                    print(
                        f"{key:<44} L1 ratio {m['l1_ratio']:.3f}  SSIM {m['ssim']:.3f} (plate {m['plate_ssim']:.3f})"
                        f"  outline F1 {m['outline_f1']:.3f} (plate {m['plate_outline_f1']:.3f})"
                        f"  outline contrast {m['outline_contrast']:+.3f}",
                        flush=True,
                    )
        sweep: dict[str, dict[str, float]] = {}
        for name, changes in SWEEP.items():
            started = time.perf_counter()
            metrics = held_out_metrics(shots[:4], root / "out", replace(RECOMMENDED, **changes), SHIPPED_MODEL, pool)
            seconds = (time.perf_counter() - started) / (len(shots[:4]) * len(metrics))
            sweep[name] = {f"{look} l1_ratio": m["l1_ratio"] for look, m in metrics.items()} | {
                "s_per_frame": round(seconds, 2)
            }
            print(f"sweep {name:<28} " + "  ".join(f"{k} {v}" for k, v in sweep[name].items()), flush=True)
    output = Path(args.out)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "scenes": args.scenes,
                "settings": asdict(RECOMMENDED),
                "prompts": EVALUATION_PROMPTS,
                "goal_l1_ratio": GOAL_L1_RATIO,
                "results": results,
                "sweep": sweep,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Style-fidelity benchmark: how close the built-in model's output comes to each look's ground truth.

On held-out scenes (seeds the model never saw in training), each look's prompt stylizes the
plate through ``render_job`` (what ``stylecomp render`` runs), with the line-art ControlNet on
and off (the tile ControlNet always on), and is compared in display-referred space with the look computed from the scene's own
layers (``stylecomp.stylemodel.evaluation``): L1 relative to the plate's own L1 (goal <= 0.5),
SSIM of output and plate, and outline F1 against the look's line mask. The same model
architecture with random weights runs too, to show what the numbers mean.

    .venv/bin/python benchmarks/style_fidelity.py [--scenes 8] [--out benchmarks/results/style_fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from stylecomp.pipeline_pool import PipelinePool
from stylecomp.stylemodel import SHIPPED_MODEL
from stylecomp.stylemodel.architecture import save_random_model
from stylecomp.stylemodel.evaluation import RECOMMENDED, display_output, fidelity, held_out_shot, stylize

PROMPTS = {"cel": "cel shaded", "watercolor": "watercolor painting"}
GOAL_L1_RATIO = 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes to measure (at most 16)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "style_fidelity.json"))
    args = parser.parse_args()

    results: dict[str, dict[str, dict[str, float]]] = {}
    pool = PipelinePool("cpu")
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        shots = [held_out_shot(i, root / f"scene{i}") for i in range(args.scenes)]
        models = {"trained": SHIPPED_MODEL, "random weights": save_random_model(root / "random")}
        for model_name, model in models.items():
            for look, prompt in PROMPTS.items():
                for line_art in (True, False):
                    started, rows = time.perf_counter(), []
                    for i, shot in enumerate(shots):
                        settings = replace(RECOMMENDED, line_art=line_art)
                        out = stylize(shot, prompt, root / f"out-{i}", settings, model=model, pool=pool)
                        frame = out.frames[0]
                        rows.append(fidelity(display_output(out, frame), shot.plate_images[frame],
                                             shot.looks[look][frame], shot.lines[frame]))
                    key = f"{model_name} / {look} / line art {'on' if line_art else 'off'}"
                    results[key] = {name: round(float(np.mean([r[name] for r in rows])), 4) for name in rows[0]}
                    results[key]["s_per_frame"] = round((time.perf_counter() - started) / len(shots), 2)
                    m = results[key]
                    print(f"{key:<44} L1 ratio {m['l1_ratio']:.3f}  SSIM {m['ssim']:.3f} (plate {m['plate_ssim']:.3f})"
                          f"  outline F1 {m['outline_f1']:.3f} (plate {m['plate_outline_f1']:.3f})", flush=True)
    output = Path(args.out)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"scenes": args.scenes, "settings": asdict(RECOMMENDED), "prompts": PROMPTS,
                                  "goal_l1_ratio": GOAL_L1_RATIO, "results": results}, indent=2) + "\n")
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

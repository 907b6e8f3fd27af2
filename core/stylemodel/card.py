"""The trained model's card (``README.md`` in its folder) and its loss curve (``loss_curve.png``)."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .evaluation import RECOMMENDED
from .looks import PROMPTS, SUN_BANDS
from .scenes import HELD_OUT_SEEDS
from .training import StageState, TrainingSettings, scene_seeds

_COLOURS = {"unet": (40, 90, 200), "controlnet": (210, 90, 30)}


def write_loss_curve(path: Path, stages: dict[str, StageState], every: int = 50) -> None:
    """Mean L1 loss per ``every`` steps of each stage, one after the other on a log scale."""
    width, height, margin = 720, 360, 48
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    points = [(name, i, loss) for name, state in stages.items() for i, loss in enumerate(state.losses)]
    if points:
        logs = np.log10([loss for _, _, loss in points])
        low, high = float(logs.min()), float(logs.max()) + 1e-6
        for rank, (name, _, loss) in enumerate(points):
            x = margin + rank * (width - 2 * margin) / max(1, len(points) - 1)
            y = height - margin - (np.log10(loss) - low) / (high - low) * (height - 2 * margin)
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=_COLOURS.get(name, (0, 0, 0)))
        draw.text((margin, 10), f"L1 loss per {every} steps (log scale, {10**low:.3f} to {10**high:.3f})", fill="black")
        for row, name in enumerate(stages):
            draw.text((width - 200, 10 + 14 * row), f"{name}: {stages[name].step} steps", fill=_COLOURS.get(name))
    draw.line((margin, height - margin, width - margin, height - margin), fill="black")
    draw.line((margin, margin, margin, height - margin), fill="black")
    image.save(path)


def write_card(
    out: Path, settings: TrainingSettings, report: dict[str, Any], device: str, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``README.md`` (and ``training.json`` with the same facts, for tools) into the model folder."""
    stages = {name: StageState(**state) for name, state in report["stages"].items()}
    write_loss_curve(out / "loss_curve.png", stages)
    facts = {
        "settings": asdict(settings),
        "device": device,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        **report,
    }
    if metrics:
        facts["metrics"] = metrics
    (out / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    vae = report["vae_round_trip"]
    lines = [
        "# stylecomp-toon",
        "",
        "stylecomp's own style model, trained by `stylecomp model train-demo` from scenes stylecomp renders",
        "itself. SD 1.5 layout (diffusers classes, `.safetensors`), working on pixels through a",
        "passthrough VAE at f=1. Load it like any model: `model.path` pointing at this folder, with",
        "`controlnet_tile/` as a ControlNet with `source: tile` (the plate itself) and `controlnet/` as one",
        "with `source: lineart` (the render's outlines).",
        "",
        "## Looks",
        "",
        "| look | prompts it was trained with |",
        "|---|---|",
        *[f"| {name} | {', '.join(repr(p) for p in prompts)} |" for name, prompts in PROMPTS.items()],
        "",
        f"- cel: albedo under banded sun (cosine steps at {SUN_BANDS[0]} and {SUN_BANDS[1]}), flat ambient,",
        "  one-pixel ink lines where object ID, normals or depth break.",
        "- watercolor: lifted, blurred washes mixed towards paper, darkened edges, faint paper grain.",
        "- An empty prompt (10% of training) makes classifier-free guidance possible. The recommended guidance",
        "  is 1.0 (none): in `benchmarks/style_fidelity.py`'s sweep, 2 takes both looks further away (watercolor",
        "  27%, cel 29%) at 1.8 times the time, and 4 further still.",
        "",
        "## Data",
        "",
        (
            f"{settings.scenes} random scenes (seeds {scene_seeds(settings)[0]} on), two "
            f"frames each at {settings.width}x{settings.height}, {settings.crop}-pixel crops, batch {settings.batch}, "
            "horizontal flips. Held-out scenes for evaluation use seeds "
            f"{HELD_OUT_SEEDS.start}-{HELD_OUT_SEEDS.stop - 1}; the demo shot is never seen."
        ),
        "",
        "## Training",
        "",
        f"- device: {device} ({facts['machine']}), torch {torch.__version__}, seed {settings.seed}",
        f"- VAE: built, not trained; round trip on 16 training plates: mean {vae['mean']:.2e}, max {vae['max']:.2e}",
    ]
    for name, state in stages.items():
        final = f", last loss {state.losses[-1]:.4f}" if state.losses else ""
        lines.append(f"- {name}: {state.step} steps in {state.seconds / 60:.1f} min{final}")
    lines += ["", "![loss curve](loss_curve.png)", ""]
    if metrics:
        lines += [
            "## Held-out metrics",
            "",
            (
                f"Each look's prompt on {next(iter(metrics.values()))['scenes']} held-out scenes at the recommended "
                f"settings (strength {RECOMMENDED.strength}, {RECOMMENDED.steps} steps, guidance "
                f"{RECOMMENDED.guidance}, both ControlNets), display-referred; "
                "`stylecomp.stylemodel.evaluation` says what each metric is."
            ),
            "",
            "| look | L1 ratio (plate = 1) | SSIM (plate's) | outline F1 (plate's) | outline contrast |",
            "|---|---|---|---|---|",
            *[
                f"| {look} | {m['l1_ratio']:.3f} | {m['ssim']:.3f} ({m['plate_ssim']:.3f}) | "
                f"{m['outline_f1']:.3f} ({m['plate_outline_f1']:.3f}) | {m['outline_contrast']:+.3f} |"
                for look, m in metrics.items()
            ],
            "",
        ]
    card = out / "README.md"
    card.write_text("\n".join(lines))
    return card

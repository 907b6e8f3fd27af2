"""``stylecomp model train-demo``: train the built-in style model from scenes stylecomp renders itself.

Stages, in order; data and vae take seconds and run every time, unet and controlnet resume from
their last checkpoint and are skipped once complete:

1. **data**: render ``scenes`` random training scenes (two frames each, at the working size the
   demo stylizes at), and compute each frame's plate encoding, its looks and its line art.
2. **vae**: build the f=1 passthrough VAE by construction and measure its round trip (no training).
3. **unet**: train the UNet and the tile ControlNet (fed by the clean plate on every sample:
   the built-in model always runs with it, and dropping it for 15% of samples, ``tile_dropout``,
   measured worse on both looks) together on 64-pixel crops. Each
   sample takes one look and one of its prompts (dropped to "" 10% of the time, so
   classifier-free guidance works), noises a blend of the plate and the look,
   ``y = plate + u (look - plate)``, at a random timestep and asks for the look: ``u = 0`` is
   what img2img starts from, ``u = 1`` is plain denoising, and the blends are what the steps in
   between see. The loss is L1 between the predicted clean sample and the look. Timesteps: 85%
   below 700 (img2img strengths up to 0.7, where the demo works), and never below 200 unless
   ``u = 1`` (img2img starts no lower).
4. **controlnet**: freeze them and train a line-art ControlNet copied from the UNet.

Everything random is drawn from (seed, stage, step), so a run on the CPU is deterministic and a
resumed run is the same as an uninterrupted one (CUDA kernels may round differently from run to
run). Checkpoints live in ``OUT/.training/``, one ``.safetensors`` per stage with its progress in
the file's metadata, beside ``settings.json``: a resume with other settings is refused. The model
folder itself is written at the end, with a loss curve and a card.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..color import ModelEncoding
from ..demo.scene import render_layers
from ..diffusion.testing import clip_tokenizer, pixel_latents, pixel_vae
from ..errors import StyleCompError
from ..io.atomic import atomic_target
from .architecture import build_controlnet, build_scheduler, build_text_encoder, build_unet, save_model
from .looks import LOOKS, PROMPTS, lines
from .scenes import TRAINING_SEEDS, random_scene

_Trained = TypeVar("_Trained", bound=torch.nn.Module)

STAGES = ("data", "vae", "unet", "controlnet")
IMG2IMG_LOWEST_T = 200  # samples that start from the plate (u < 1) are noised at least this much
DEMO_HIGHEST_T = 700  # 85% of samples below: img2img strengths up to 0.7
Progress = Callable[[str, int, int, dict[str, float]], None]  # stage, step, total, figures (loss, ...)


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that decides the weights; written into the card."""

    seed: int = 0
    scenes: int = 320  # training scenes, two frames each
    width: int = 256  # the frames, at the demo's working size
    height: int = 144
    crop: int = 64
    batch: int = 8
    unet_steps: int = 4000
    controlnet_steps: int = 2500
    tile_dropout: float = 0.0  # share of samples without the tile ControlNet
    unet_lr: float = 5e-4
    controlnet_lr: float = 2e-4
    warmup: int = 100
    ema_decay: float = 0.998
    caption_dropout: float = 0.1
    checkpoint_every: int = 250


@dataclass
class TrainingPairs:
    """The rendered training frames: plate, each look and the line art, display-referred [0, 1]."""

    plates: np.ndarray  # (N, H, W, 3) float16
    looks: dict[str, np.ndarray]  # look -> (N, H, W, 3) float16
    lines: np.ndarray  # (N, H, W) float16, 1 on a line

    @classmethod
    def render(cls, settings: TrainingSettings, progress: Progress | None = None) -> TrainingPairs:
        """Render ``settings.scenes`` training scenes, two frames each (deterministic)."""
        encoding = ModelEncoding()
        plates, line_maps = [], []
        looks: dict[str, list[np.ndarray]] = {name: [] for name in LOOKS}
        for index, seed in enumerate(scene_seeds(settings)):
            scene = random_scene(seed)
            for frame in (0, 1 + seed % 40):
                planes, layers = render_layers(frame, settings.width, settings.height, 0, scene)
                linear = np.stack([planes["R"], planes["G"], planes["B"]], axis=-1)
                plates.append(encoding.encode(linear).image.astype(np.float16))
                line_maps.append(lines(planes).astype(np.float16))
                for name, look in LOOKS.items():
                    looks[name].append(look(planes, layers, scene.lighting, encoding).astype(np.float16))
            if progress is not None:
                progress("data", index + 1, settings.scenes, {})
        return cls(np.stack(plates), {name: np.stack(images) for name, images in looks.items()}, np.stack(line_maps))


def scene_seeds(settings: TrainingSettings) -> list[int]:
    """The training scenes of a run: ``scenes`` consecutive training seeds from ``seed * scenes`` on (wrapping)."""
    first = settings.seed * settings.scenes
    return [TRAINING_SEEDS[(first + i) % len(TRAINING_SEEDS)] for i in range(settings.scenes)]


@dataclass
class Batch:
    """One training batch, as tensors in latent layout (B, 4, crop, crop): R, G, B, luma in [-1, 1]."""

    plate: torch.Tensor
    target: torch.Tensor
    control: torch.Tensor  # (B, 3, crop, crop) line art in [0, 1], as the pipelines feed ControlNets
    prompts: list[str]


def _latents(images: np.ndarray) -> torch.Tensor:
    """(B, h, w, 3) [0, 1] -> (B, 4, h, w): what the passthrough VAE's scaled latents hold."""
    return pixel_latents(torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2) * 2.0 - 1.0)


def sample_batch(pairs: TrainingPairs, settings: TrainingSettings, rng: np.random.Generator) -> Batch:
    """Random crops (with horizontal flips) of random frames, each with a random look and prompt."""
    count, height, width = pairs.plates.shape[:3]
    crop, size = settings.crop, settings.batch
    frames = rng.integers(count, size=size)
    tops, lefts = rng.integers(height - crop + 1, size=size), rng.integers(width - crop + 1, size=size)
    flips = rng.random(size) < 0.5
    names = list(LOOKS)
    chosen = [names[i] for i in rng.integers(len(names), size=size)]

    def crops(images: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """The batch's crops of ``images``, or of each sample's chosen look where ``images`` holds the looks."""
        out = []
        for i in range(size):
            source = images[chosen[i]] if isinstance(images, dict) else images
            patch = source[frames[i], tops[i] : tops[i] + crop, lefts[i] : lefts[i] + crop]
            out.append(patch[:, ::-1] if flips[i] else patch)
        return np.stack(out)

    prompts = [
        "" if rng.random() < settings.caption_dropout else PROMPTS[name][rng.integers(len(PROMPTS[name]))]
        for name in chosen
    ]
    control = torch.from_numpy(crops(pairs.lines).astype(np.float32))[:, None].expand(-1, 3, -1, -1)
    return Batch(_latents(crops(pairs.plates)), _latents(crops(pairs.looks)), control.contiguous(), prompts)


@dataclass
class StageState:
    """A stage's progress: what a checkpoint's JSON holds besides the tensors."""

    step: int = 0
    losses: list[float] = field(default_factory=list)  # mean loss per 50 steps
    seconds: float = 0.0


class Trainer:
    """Runs the stages into ``out`` (see the module docstring)."""

    def __init__(
        self, out: Path, settings: TrainingSettings, device: str = "cpu", progress: Progress | None = None
    ) -> None:
        self.out, self.settings, self.device, self.progress = out, settings, device, progress
        self.work = out / ".training"
        self.work.mkdir(parents=True, exist_ok=True)
        self._check_settings()
        torch.manual_seed(settings.seed)
        self.text_encoder = build_text_encoder()  # from the seed, before anything else draws from it
        self.unet_init = build_unet()
        self.scheduler = build_scheduler()
        self.alphas = self.scheduler.alphas_cumprod.to(device)
        self._embeddings: dict[str, torch.Tensor] = {}

    # --- the stages ---------------------------------------------------------------------------

    def run(self) -> dict[str, object]:
        """All stages, then the model folder; returns what the card reports about training."""
        started = time.monotonic()
        pairs = TrainingPairs.render(self.settings, self.progress)
        vae_error = self.measure_vae(pairs)
        base = self.train_unet(pairs)
        lineart = self.train_controlnet(pairs, base)
        save_model(self.out, base["unet"], base["tile"], lineart, self.text_encoder)
        return {
            "vae_round_trip": vae_error,
            "this_run_seconds": time.monotonic() - started,
            "stages": {name: asdict(self._state(name)) for name in ("unet", "controlnet")},
        }

    def measure_vae(self, pairs: TrainingPairs) -> dict[str, float]:
        """The f=1 VAE's round trip on the first 16 training plates: mean and max absolute error in [0, 1]."""
        vae = pixel_vae().to(self.device)
        images = torch.from_numpy(pairs.plates[:16].astype(np.float32)).permute(0, 3, 1, 2).to(self.device)
        with torch.no_grad():
            latents = vae.encode(images * 2.0 - 1.0).latent_dist.mode()
            decoded = (vae.decode(latents).sample + 1.0) / 2.0
        error = (decoded - images).abs()
        return {"mean": float(error.mean()), "max": float(error.max())}

    def train_unet(self, pairs: TrainingPairs) -> torch.nn.ModuleDict:
        """The UNet and its tile ControlNet, trained together."""
        base = torch.nn.ModuleDict({"unet": self.unet_init, "tile": build_controlnet(self.unet_init)}).to(self.device)
        return self._train("unet", base, pairs, self.settings.unet_steps, self.settings.unet_lr, None)

    def train_controlnet(self, pairs: TrainingPairs, base: torch.nn.ModuleDict) -> torch.nn.Module:
        """The line-art ControlNet, on top of the frozen UNet and tile ControlNet."""
        base.requires_grad_(False)
        controlnet = build_controlnet(base["unet"]).to(self.device)
        return self._train(
            "controlnet", controlnet, pairs, self.settings.controlnet_steps, self.settings.controlnet_lr, base
        )

    # --- one stage ----------------------------------------------------------------------------

    def _train(
        self,
        stage: str,
        model: _Trained,
        pairs: TrainingPairs,
        steps: int,
        lr: float,
        frozen: torch.nn.ModuleDict | None,
    ) -> _Trained:
        """Train ``model`` for ``steps`` (resuming from its checkpoint); returns it with its EMA weights."""
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
        ema = {name: p.detach().clone() for name, p in model.named_parameters()}
        state = self._load(stage, model, optimizer, ema)
        model.train()
        window: list[float] = []
        clock = time.monotonic()
        for step in range(state.step, steps):
            for group in optimizer.param_groups:
                group["lr"] = lr * self._schedule(step, steps)
            loss = self._loss(stage, model, frozen, pairs, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            decay = min(self.settings.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for name, p in model.named_parameters():
                    ema[name].lerp_(p.detach(), 1.0 - decay)
            window.append(loss.item())
            if len(window) == 50:
                state.losses.append(sum(window) / len(window))
                window = []
            state.step = step + 1
            if self.progress is not None:
                self.progress(stage, state.step, steps, {"loss": window[-1] if window else state.losses[-1]})
            if state.step % self.settings.checkpoint_every == 0 or state.step == steps:
                state.seconds += time.monotonic() - clock
                clock = time.monotonic()
                self._save(stage, model, optimizer, ema, state)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(ema[name])
        model.eval()
        return model

    def _loss(
        self, stage: str, model: torch.nn.Module, frozen: torch.nn.ModuleDict | None, pairs: TrainingPairs, step: int
    ) -> torch.Tensor:
        """L1 between the predicted clean sample and the look, for the batch of (seed, stage, step)."""
        rng = np.random.default_rng([self.settings.seed, STAGES.index(stage), step])
        batch = sample_batch(pairs, self.settings, rng)
        size = self.settings.batch
        generator = torch.Generator("cpu").manual_seed(int(rng.integers(2**63)))
        noise = torch.randn(batch.target.shape, generator=generator)
        # u: 0 (the plate img2img starts from) 40%, 1 (the look) 30%, a blend 30%
        u = np.where(rng.random(size) < 0.4, 0.0, np.where(rng.random(size) < 0.5, 1.0, rng.random(size)))
        lowest = np.where(u < 1.0, IMG2IMG_LOWEST_T, 0)
        highest = np.where(rng.random(size) < 0.85, DEMO_HIGHEST_T, len(self.alphas))
        timesteps = torch.from_numpy(lowest + (rng.random(size) * (highest - lowest)).astype(np.int64))
        u_t = torch.from_numpy(u.astype(np.float32))[:, None, None, None]
        device = self.device
        start = (batch.plate + u_t * (batch.target - batch.plate)).to(device)
        target, noise, timesteps = batch.target.to(device), noise.to(device), timesteps.to(device)
        alpha = self.alphas[timesteps][:, None, None, None]
        noisy = alpha.sqrt() * start + (1.0 - alpha).sqrt() * noise
        text = torch.stack([self._embedding(p) for p in batch.prompts]).to(device)
        keep = torch.from_numpy((rng.random(size) >= self.settings.tile_dropout).astype(np.float32))
        keep = keep[:, None, None, None].to(device)
        base = frozen if frozen is not None else model
        assert isinstance(base, torch.nn.ModuleDict)  # the UNet stage trains {"unet", "tile"} together
        plate_rgb = ((batch.plate[:, :3] + 1.0) / 2.0).to(device)  # the tile ControlNet's image, as pipelines feed it
        down, mid = base["tile"](
            noisy, timesteps, encoder_hidden_states=text, controlnet_cond=plate_rgb, return_dict=False
        )
        down, mid = [d * keep for d in down], mid * keep
        if frozen is not None:  # the line-art ControlNet's residuals add to the tile's, as in a multi-ControlNet
            line_down, line_mid = model(
                noisy,
                timesteps,
                encoder_hidden_states=text,
                controlnet_cond=batch.control.to(device),
                return_dict=False,
            )
            down, mid = [d + e for d, e in zip(down, line_down, strict=True)], mid + line_mid
        predicted = base["unet"](
            noisy, timesteps, text, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
        return (predicted - target).abs().mean()

    def _schedule(self, step: int, steps: int) -> float:
        """Linear warm-up, then cosine decay to 10% of the peak."""
        if step < self.settings.warmup:
            return (step + 1) / self.settings.warmup
        progress = (step - self.settings.warmup) / max(1, steps - self.settings.warmup)
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))

    def _embedding(self, prompt: str) -> torch.Tensor:
        """The frozen text encoder's (77, width) hidden states for ``prompt``, as the pipelines compute them."""
        if prompt not in self._embeddings:
            tokens = clip_tokenizer()(
                prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
            ).input_ids
            with torch.no_grad():
                self._embeddings[prompt] = self.text_encoder(tokens)[0][0]
        return self._embeddings[prompt]

    # --- checkpoints --------------------------------------------------------------------------

    def _check_settings(self) -> None:
        """Keep the run's settings beside its checkpoints; a resume with other settings would mix two runs."""
        file, settings = self.work / "settings.json", asdict(self.settings)
        if not file.is_file():
            with atomic_target(file) as temporary:
                Path(temporary).write_text(json.dumps(settings, indent=2))
            return
        saved = json.loads(file.read_text())
        changed = [
            f"{name} {saved.get(name)!r} (now {value!r})"
            for name, value in settings.items()
            if saved.get(name) != value and name != "checkpoint_every"
        ]  # the only one that leaves weights be
        if changed:
            raise StyleCompError(
                f"this run was started with {', '.join(changed)}; resume it with the same "
                "settings, or train into another folder",
                self.work,
            )

    def _state(self, stage: str) -> StageState:
        file = self.work / f"{stage}.safetensors"
        if not file.is_file():
            return StageState()
        with safe_open(str(file), "pt") as checkpoint:
            return StageState(**json.loads(checkpoint.metadata()["state"]))

    def _load(
        self, stage: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: dict[str, torch.Tensor]
    ) -> StageState:
        """Restore weights, EMA and optimizer from the stage's checkpoint, if there is one."""
        state = self._state(stage)
        if state.step == 0:
            return state
        tensors = load_file(str(self.work / f"{stage}.safetensors"))
        model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
        for name in ema:
            ema[name].copy_(tensors[f"ema.{name}"])
        saved = optimizer.state_dict()
        for index in saved["param_groups"][0]["params"]:
            if f"adam.{index}.exp_avg" in tensors:
                saved["state"][index] = {
                    key: tensors[f"adam.{index}.{key}"] for key in ("step", "exp_avg", "exp_avg_sq")
                }
        optimizer.load_state_dict(saved)
        return state

    def _save(
        self,
        stage: str,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        ema: dict[str, torch.Tensor],
        state: StageState,
    ) -> None:
        """Write the checkpoint atomically, as one file: tensors, with the stage's progress in the metadata."""
        tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
        tensors |= {f"ema.{k}": v.contiguous() for k, v in ema.items()}
        for index, values in optimizer.state_dict()["state"].items():
            tensors |= {
                f"adam.{index}.{key}": torch.as_tensor(values[key]).contiguous()
                for key in ("step", "exp_avg", "exp_avg_sq")
            }
        with atomic_target(self.work / f"{stage}.safetensors") as temporary:
            save_file(
                {k: v.cpu() for k, v in tensors.items()}, str(temporary), metadata={"state": json.dumps(asdict(state))}
            )

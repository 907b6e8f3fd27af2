"""The model-family registry against what it describes: diffusers' pipeline classes, the shipped model configs,
and the job spec, which must read the family names without importing torch (nor may the render cache)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from stylecomp.diffusion.geometry import model_geometry
from stylecomp.errors import ModelError
from stylecomp.families import FAMILIES, family_spec, family_titles


@pytest.mark.parametrize("module", ["stylecomp.families", "stylecomp.jobspec", "stylecomp.render.cache"])
def test_imports_without_torch(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_job_spec_takes_the_registry_names() -> None:
    from stylecomp.jobspec import ModelSettings

    assert ModelSettings.model_fields["family"].annotation.__args__ == tuple(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_pipeline_classes_are_the_family_s_diffusers_classes(family: str) -> None:
    spec = family_spec(family)
    for controlnet in (False, True):
        for text_to_image in (False, True):
            cls = spec.pipeline_class(controlnet, text_to_image=text_to_image)
            parameters = inspect.signature(cls.__init__).parameters
            assert spec.denoiser in parameters, f"{cls.__name__} has no {spec.denoiser}"
            assert ("controlnet" in parameters) == controlnet, cls.__name__
            assert ("safety_checker" in parameters) == spec.safety_checker, cls.__name__
    img2img = inspect.signature(spec.pipeline_class(False).__call__).parameters
    assert "strength" in img2img and "image" in img2img
    assert spec.controlnet_class().__name__.endswith("ControlNetModel")


@pytest.mark.parametrize("family", [name for name, spec in FAMILIES.items() if spec.single_file])
def test_published_geometry_matches_the_shipped_configs(tmp_path, family: str) -> None:
    # A single file is planned from the configs in model_configs/<family>/: they must agree with the spec.
    shipped = model_geometry(tmp_path / "checkpoint.safetensors", family)
    spec = family_spec(family)
    assert (shipped.latent_channels, shipped.downsamplings, shipped.sample_size) == (
        spec.latent_channels,
        spec.downsamplings,
        spec.sample_size,
    )
    assert spec.size_multiple % (shipped.vae_scale * 2**shipped.downsamplings * spec.latent_packing) == 0
    assert shipped.sample_size * shipped.vae_scale == spec.working_size


def test_unknown_family_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown model family 'sd3'; use one of sd15, sdxl, flux"):
        family_spec("sd3")


@pytest.mark.parametrize("family", FAMILIES)
def test_clip_tokenizers_and_ip_adapter_support_are_the_pipelines(family: str) -> None:
    from diffusers.loaders import FluxIPAdapterMixin, IPAdapterMixin

    spec = family_spec(family)
    parameters = inspect.signature(spec.pipeline_class(False).__init__).parameters
    clip = tuple(name for name, p in parameters.items() if "tokenizer" in name and "CLIPTokenizer" in str(p.annotation))
    assert clip == spec.clip_tokenizers
    with_ip_adapter = issubclass(spec.pipeline_class(True), (IPAdapterMixin, FluxIPAdapterMixin))
    assert with_ip_adapter == spec.ip_adapter_with_controlnets


@pytest.mark.parametrize("family", FAMILIES)
def test_img2img_size_and_controlnet_modes_are_the_pipelines_arguments(family: str) -> None:
    spec = family_spec(family)
    plain = inspect.signature(spec.pipeline_class(False).__call__).parameters
    assert ("height" in plain and "width" in plain) == spec.img2img_size
    assert ("control_mode" in inspect.signature(spec.pipeline_class(True).__call__).parameters) == spec.controlnet_modes


def test_family_titles_list_the_table() -> None:
    assert family_titles() == "SD 1.5, SDXL and Flux"
    assert family_titles("or") == "SD 1.5, SDXL or Flux"

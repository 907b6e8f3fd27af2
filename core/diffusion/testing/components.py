"""Model parts the tiny models share: VAEs (random, passthrough, pixel-space), ControlNets."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel, FluxControlNetModel, FluxTransformer2DModel, UNet2DConditionModel
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D

# --- components ---------------------------------------------------------------------------------


def _vae(latent_channels: int, scaling_factor: float, **kwargs: object) -> AutoencoderKL:
    """Four blocks like the real VAEs, so images map to latents at 1/8 size; narrow channels keep it tiny."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=latent_channels,
        sample_size=64,
        scaling_factor=scaling_factor,
        **kwargs,
    )


# The passthrough VAE's feature maps: 16 channels in 4 GroupNorm groups, one group per component
# (R, G, B, luma), each holding (x, -x, +CARRIER, -CARRIER).
_PASS_WIDTH, _PASS_GROUPS = 16, 4
_CARRIER = 64.0  # the constant pair that makes a group's GroupNorm statistics (nearly) independent of the image
# Scaled latents = _CONTRAST x the image in [-1, 1]. A random UNet removes little of the noise it is
# given (its prediction correlates ~0.1 with its input), so at strength 0.5 about 1.6 x that noise is left
# in the latents; at 8 the image stays recognisable under it (at 4 it barely does).
_CONTRAST = 8.0
_LUMA = (0.2126, 0.7152, 0.0722)


def pixel_vae(latent_channels: int = 4, contrast: float = 1.0) -> AutoencoderKL:
    """A passthrough VAE at f=1 (one block: no down- or upsampling): the latents are the image itself.

    Scaled latents are ``contrast`` x the image in [-1, 1]. Without a mid-block attention, which at f=1
    would span every pixel; it round-trips to about 1e-5 (see ``_passthrough_vae``). stylecomp's trained
    model works on pixels through it: a VAE trained on a CPU costs more error than the whole style budget.
    """
    like = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(_PASS_WIDTH,),
        layers_per_block=1,
        norm_num_groups=_PASS_GROUPS,
        latent_channels=latent_channels,
        sample_size=64,
        scaling_factor=1.0,
        mid_block_add_attention=False,
    )
    return _passthrough_vae(like, contrast)


def pixel_latents(images: torch.Tensor) -> torch.Tensor:
    """What ``pixel_vae()``'s scaled latents hold for (B, 3, H, W) images in [-1, 1]: (B, 4, H, W) R, G, B, luma."""
    luma = torch.einsum("bchw,c->bhw", images, torch.tensor(_LUMA, dtype=images.dtype))[:, None]
    return torch.cat([images, luma], dim=1)


def _passthrough_vae(like: AutoencoderKL, contrast: float = _CONTRAST) -> AutoencoderKL:
    """A VAE with ``like``'s latent layout whose weights are set by construction (not trained) to keep the image.

    Every feature map holds, for each component c of (R, G, B, luma), four channels (x_c, -x_c, +C, -C)
    that form one GroupNorm group. All other weights are zero: convolutions act at their centre tap,
    ResNet and attention branches add nothing. The encoder's strided convolutions average 2x2 pixels;
    the decoder's upsampling convolutions apply a [1, 2, 1]/4 tent to x_c after the nearest 2x upsample
    (bilinear 2x) and leave the carriers as they are. The GroupNorm before each ``conv_out`` sees a
    group mean of exactly 0 and a variance of (mean(x_c^2) + C^2)/2, so it scales x_c by a constant to
    within mean(x_c^2)/2C^2 (1e-4), and silu(x) - silu(-x) = x takes it through the SiLU exactly.
    Latent channel k carries component k mod 4: the scaled latents (what the UNet sees) are
    ``contrast`` x the 8x8 box average of the image in [-1, 1], sampled with a std of exp(-15);
    decoding averages each component's channels. decode(encode(x)) is that box average upsampled
    bilinearly three times: detail under 8 pixels is lost, and the zero padding of the upsampling
    convolutions pulls the outermost few pixels towards mid-grey.
    """
    config = like.config
    with torch.random.fork_rng(devices=[]):  # every weight is set below: leave the seed's stream to the other parts
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=config.down_block_types,
            up_block_types=config.up_block_types,
            block_out_channels=(_PASS_WIDTH,) * len(config.block_out_channels),
            layers_per_block=config.layers_per_block,
            norm_num_groups=_PASS_GROUPS,
            latent_channels=config.latent_channels,
            sample_size=config.sample_size,
            scaling_factor=config.scaling_factor,
            shift_factor=config.shift_factor,
            use_quant_conv=config.use_quant_conv,
            use_post_quant_conv=config.use_post_quant_conv,
            mid_block_add_attention=config.mid_block_add_attention,
        )
    latents, shift = config.latent_channels, config.shift_factor or 0.0
    gain = contrast / config.scaling_factor  # unscaled latent units per image unit
    component = torch.arange(latents) % 4  # what each latent channel carries
    carriers = torch.zeros(_PASS_WIDTH)
    carriers[2::4], carriers[3::4] = _CARRIER, -_CARRIER

    def signals(components: torch.Tensor) -> torch.Tensor:
        """(16, n) rows x_c and -x_c from a (4, n) map of the inputs to the components."""
        rows = torch.zeros(_PASS_WIDTH, components.shape[1])
        rows[0::4], rows[1::4] = components, -components
        return rows

    def centre(conv: torch.nn.Conv2d, matrix: torch.Tensor, bias: torch.Tensor) -> None:
        middle = conv.weight.shape[-1] // 2
        conv.weight[:, :, middle, middle] = matrix
        assert conv.bias is not None  # the VAE's convolutions all have one
        conv.bias.copy_(bias)

    tent = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])) / 16
    with torch.no_grad():
        for param in vae.parameters():
            param.zero_()
        for module in vae.modules():
            if isinstance(module, Downsample2D):
                for i in range(_PASS_WIDTH):
                    module.conv.weight[i, i, :2, :2] = 0.25  # padded right/bottom: reads pixels 2i, 2i+1
            elif isinstance(module, Upsample2D):
                for i in range(_PASS_WIDTH):
                    if i % 4 < 2:
                        module.conv.weight[i, i] = tent
                    else:
                        module.conv.weight[i, i, 1, 1] = 1.0  # the carriers stay exact at the borders
        for norm in (vae.encoder.conv_norm_out, vae.decoder.conv_norm_out):
            norm.weight[0::4] = norm.weight[1::4] = _CARRIER / 2**0.5  # x_c and -x_c come out as they went in
        to_components = torch.cat([torch.eye(3), torch.tensor([_LUMA])])  # (4, 3)
        centre(vae.encoder.conv_in, signals(to_components), carriers)
        means = torch.zeros(2 * latents, _PASS_WIDTH)
        means[torch.arange(latents), 4 * component] = gain  # silu(x) - silu(-x) = x
        means[torch.arange(latents), 4 * component + 1] = -gain
        bias = torch.full((2 * latents,), -30.0)  # log-variance: the clamp's floor
        bias[:latents] = shift
        centre(vae.encoder.conv_out, means, bias)
        average = torch.zeros(4, latents)
        average[component, torch.arange(latents)] = 1.0
        average /= average.sum(dim=1, keepdim=True) * gain
        offsets = carriers.clone()
        offsets[0::4], offsets[1::4] = -shift * average.sum(dim=1), shift * average.sum(dim=1)
        centre(vae.decoder.conv_in, signals(average), offsets)
        to_rgb = torch.zeros(3, _PASS_WIDTH)
        to_rgb[torch.arange(3), 4 * torch.arange(3)] = 1.0
        to_rgb[torch.arange(3), 4 * torch.arange(3) + 1] = -1.0
        centre(vae.decoder.conv_out, to_rgb, torch.zeros(3))
        if vae.quant_conv is not None:
            centre(vae.quant_conv, torch.eye(2 * latents), torch.zeros(2 * latents))
        if vae.post_quant_conv is not None:
            centre(vae.post_quant_conv, torch.eye(latents), torch.zeros(latents))
    return vae


def _unet_controlnet(unet: UNet2DConditionModel, vae_scale: int) -> ControlNetModel:
    """A ControlNet copied from the UNet (as ControlNet training starts) whose zero convolutions are made random."""
    # Each conditioning-embedding stage after the first halves the control image: 4 stages for f=8, 1 for f=1.
    stages = (8, 16, 16, 32)[: vae_scale.bit_length()]
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=stages)
    return _randomize_zeros(net)


def _flux_controlnet(transformer: FluxTransformer2DModel) -> FluxControlNetModel:
    """A Flux ControlNet matching the transformer, with its zero-initialised projections made random."""
    config = transformer.config
    net = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=config.num_layers,
        num_single_layers=config.num_single_layers,
        attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads,
    )
    return _randomize_zeros(net)


def _randomize_zeros(model: torch.nn.Module) -> torch.nn.Module:
    """Zero-initialised tensors get small random values, so the control signal actually changes the output."""
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(0.0, 0.05)
    return model

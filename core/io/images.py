"""Still images in any format OpenImageIO reads (style references, start and end images), as the model sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import OpenImageIO as oiio

from ..errors import PlateError

if TYPE_CHECKING:
    from ..color import ModelEncoding


def read_display_image(path: str, encoding: ModelEncoding) -> np.ndarray:
    """An image as (H, W, 3) [0, 1] display-referred.

    Float images (EXR, HDR) are scene-linear and go through the job's colour encoding;
    integer images (PNG, JPEG, TIFF) are display-referred already.
    """
    image = oiio.ImageBuf(path)
    if image.has_error or image.spec().nchannels < 1:
        raise PlateError(f"cannot read the style reference: {image.geterror() or 'no image'}", path)
    pixels = image.get_pixels(oiio.FLOAT)  # (H, W, C), integer formats normalised to [0, 1]
    if pixels is None:
        raise PlateError(f"cannot read the style reference: {image.geterror() or 'no pixels'}", path)
    rgb = pixels[..., :3] if pixels.shape[2] >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    if image.spec().format.basetype in (oiio.HALF, oiio.FLOAT, oiio.DOUBLE):
        return encoding.encode(rgb).image
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)

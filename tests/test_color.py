"""Colour round trip: identity restores every finite pixel; quantisation error is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylecomp.color import PINNED_CONFIG, ModelEncoding, quantize, roundtrip_error
from stylecomp.errors import ColorError
from stylecomp.io.aovs import beauty
from stylecomp.io.plates import read_plate
from tests.shared_data import TESTDATA

SHARED_EXRS = sorted(p.name for p in (TESTDATA / "exr").glob("*.exr")) or ["(none)"]


def _identity_roundtrip(encoding: ModelEncoding, rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    encoded = encoding.encode(rgb, alpha)
    assert encoded.image.min() >= 0.0 and encoded.image.max() <= 1.0
    return encoding.decode(encoded, encoded.image.copy())


def _assert_finite_pixels_restored(rgb: np.ndarray, out: np.ndarray) -> None:
    finite = np.isfinite(rgb).all(axis=2)
    assert np.isfinite(out).all(), "the round trip introduced NaN/Inf"
    np.testing.assert_allclose(out[finite], rgb[finite], rtol=1e-5, atol=0)


@pytest.mark.parametrize("encoding", ["view", "log"])
@pytest.mark.parametrize("name", SHARED_EXRS)
def test_identity_roundtrip_on_shared_exrs(testdata: Path, name: str, encoding: str) -> None:
    plate = read_plate(testdata / "exr" / name)
    if plate.channel_names == ["G"]:  # a single data channel, not a beauty: test it as grey
        rgb, alpha = np.repeat(plate.channels(["G"]), 3, axis=2), None
    else:
        rgb, alpha = beauty(plate)
    out = _identity_roundtrip(ModelEncoding(encoding=encoding), rgb, alpha)
    _assert_finite_pixels_restored(rgb, out)


def test_identity_roundtrip_on_every_beachball_frame(testdata: Path) -> None:
    encoding = ModelEncoding()
    for frame in range(1, 9):
        rgb, alpha = beauty(read_plate(testdata / f"plates/beachball/singlepart.{frame:04d}.exr"))
        _assert_finite_pixels_restored(rgb, _identity_roundtrip(encoding, rgb, alpha))


def test_hdr_and_negative_values_survive_where_a_plain_view_roundtrip_clips() -> None:
    rgb = np.array([[[50.0, 4.0, -0.02], [1e4, 0.18, 0.0], [1e-6, -3.0, 300.0]]], np.float32)
    encoding = ModelEncoding()
    encoded = encoding.encode(rgb)
    plain = encoding._apply(encoding._inverse, encoded.image)  # what existing tools hand back
    assert np.abs(plain - rgb).max() > 1.0
    np.testing.assert_array_equal(encoding.decode(encoded, encoded.image), rgb)


def test_model_change_is_transferred_not_its_output() -> None:
    """Inside the view's range the model's output comes back; beyond it (where the view clips
    every value to 1.0) the model's change is applied to each source value, so highlights that
    differed in the plate still differ by the same ratio."""
    rgb = np.array([[[40.0] * 3, [1e3] * 3, [1e4] * 3]], np.float32)
    encoding = ModelEncoding()
    encoded = encoding.encode(rgb)
    assert encoded.image[0, 1, 0] == encoded.image[0, 2, 0] == 1.0  # clipped in display space
    darker = encoded.image * 0.5
    out = encoding.decode(encoded, darker)
    np.testing.assert_allclose(out[0, 0], encoding._apply(encoding._inverse, darker)[0, 0], rtol=1e-3)
    np.testing.assert_allclose(out[0, 2] / out[0, 1], 10.0, rtol=1e-5)
    assert np.all(out < rgb) and out[0, 2, 0] > 1.0


def test_alpha_unpremultiplied_before_and_premultiplied_after() -> None:
    straight = np.array([[[0.5, 0.25, 2.0]]], np.float32)
    alpha = np.array([[0.25]], np.float32)
    encoding = ModelEncoding()
    premultiplied = encoding.encode(straight * alpha[..., None], alpha)
    opaque = encoding.encode(straight)
    np.testing.assert_allclose(premultiplied.image, opaque.image, rtol=1e-6)  # same model input
    out = encoding.decode(premultiplied, opaque.image * 0.5)
    np.testing.assert_allclose(out, encoding.decode(opaque, opaque.image * 0.5) * 0.25, rtol=1e-5)


def test_nan_inf_never_reach_the_model_or_the_output(testdata: Path) -> None:
    rgb, alpha = beauty(read_plate(testdata / "exr/TestImages_BrightRingsNanInf.exr"))
    assert not np.isfinite(rgb).all()
    encoding = ModelEncoding()
    encoded = encoding.encode(rgb, alpha)
    assert np.isfinite(encoded.image).all()
    assert encoded.nonfinite.sum() == (~np.isfinite(rgb).all(axis=2)).sum()
    assert np.isfinite(encoding.decode(encoded, 1.0 - encoded.image)).all()


def test_8bit_model_error_is_reported_and_smaller_than_a_plain_view_roundtrip() -> None:
    """Random ACEScg values up to 16 through the ACES 2.0 view and an 8-bit model."""
    rgb = np.random.default_rng(0).uniform(0.0, 16.0, (128, 128, 3)).astype(np.float32)
    encoding = ModelEncoding()
    error = roundtrip_error(encoding, rgb, None, quantize(8))
    assert error.pixels == rgb.size and error.median > 0, "quantisation must show up in the report"
    assert "median" in str(error) and "99th percentile" in str(error)
    # The same quantised image inverted directly, as a plain view round trip does:
    encoded = encoding.encode(rgb)
    plain = encoding._apply(encoding._inverse, quantize(8)(encoded.image))
    plain_median = float(np.median(np.abs(plain - rgb) / np.abs(rgb)))
    assert error.median < plain_median / 2
    assert roundtrip_error(encoding, rgb).max == 0.0


def test_config_defaults_to_the_pinned_builtin_and_honours_ocio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIO", raising=False)
    assert ModelEncoding().config_uri == PINNED_CONFIG
    monkeypatch.setenv("OCIO", "ocio://studio-config-v4.0.0_aces-v2.0_ocio-v2.5")
    assert ModelEncoding().config_uri == "ocio://studio-config-v4.0.0_aces-v2.0_ocio-v2.5"
    assert ModelEncoding(config=PINNED_CONFIG).config_uri == PINNED_CONFIG  # the job wins


def test_bad_colour_settings_name_what_exists() -> None:
    with pytest.raises(ColorError, match=r"no view 'ACES 1\.0 - SDR Video'.*ACES 2\.0 - SDR 100 nits"):
        ModelEncoding(view="ACES 1.0 - SDR Video")
    with pytest.raises(ColorError, match="no colour space 'ACEScgg'"):
        ModelEncoding(plate_space="ACEScgg")
    with pytest.raises(ColorError, match="cannot load OCIO config"):
        ModelEncoding(config="/nonexistent/config.ocio")

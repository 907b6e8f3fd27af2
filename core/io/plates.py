"""EXR plates on OpenImageIO: read and write frames without losing what a compositor needs.

A ``Plate`` is one frame file: one or more ``ImagePart``s (EXR parts, OIIO subimages). Each
part keeps its full OIIO ``ImageSpec`` (data and display window, pixel aspect, per-channel
formats, compression, tiling and every header attribute) and its pixels over the data window
as a float32 array shaped ``(height, width, channels)``. Writing a plate back gives the same
header. Channels are always looked up by name, never by position: OpenEXR stores them sorted
and OIIO only moves R, G, B, A, Z to the front.

uint32 channels (object IDs) are held as float32 integer values, exact up to 2**24.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import OpenImageIO as oiio

from ..errors import PlateError
from .atomic import atomic_target
from .windows import Window

PROVENANCE_PREFIX = "stylecomp/"
_FLOAT_TYPES = ("half", "float")  # names, not TypeDescs: none may outlive OIIO at exit (nanobind reports a leak)
COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")


@dataclass(frozen=True)
class Layer:
    """Channels that share a prefix: ``forward.left`` holds ``forward.left.u`` and ``.v``."""

    name: str
    channels: tuple[str, ...]


def _oiio_message(source: object = None) -> str:
    """OIIO's pending error text, decoded defensively (fuzzed headers hold arbitrary bytes)."""
    try:
        text = source.geterror() if source is not None else oiio.geterror()  # type: ignore[attr-defined]  # any OIIO object with geterror
    except UnicodeDecodeError:
        text = "the file's header holds undecodable bytes"
    text = " ".join(str(text).split())
    return text or "unknown OpenImageIO error"


class ImagePart:
    """One EXR part: its header (an OIIO ImageSpec) and float32 pixels over the data window.

    ``pixels`` is None for a part read with ``read_plate(..., pixels=False)``.
    """

    def __init__(self, spec: oiio.ImageSpec, pixels: np.ndarray | None) -> None:
        expected = (spec.height, spec.width, spec.nchannels)
        if pixels is not None and pixels.shape != expected:
            raise ValueError(f"pixels shaped {pixels.shape}, header says {expected}")
        self.spec = spec
        self.pixels = pixels

    @classmethod
    def create(
        cls,
        pixels: np.ndarray,
        channel_names: Sequence[str],
        data_window: Window | None = None,
        display_window: Window | None = None,
        *,
        name: str | None = None,
        pixel_type: str = "half",
        channel_types: Mapping[str, str] | None = None,
        compression: str = "zip",
        attributes: Mapping[str, object] | None = None,
    ) -> ImagePart:
        """A new part from an array ``(height, width, channels)``.

        ``channel_types`` overrides ``pixel_type`` per channel (e.g. ``{"id": "uint"}``).
        """
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        height, width, count = pixels.shape
        if count != len(channel_names):
            raise ValueError(f"{count} channels of pixels but {len(channel_names)} names")
        data_window = data_window or Window(0, 0, width, height)
        if (data_window.width, data_window.height) != (width, height):
            raise ValueError(f"pixels are {width}x{height}, data window {data_window}")
        display_window = display_window or data_window
        spec = oiio.ImageSpec(width, height, count, pixel_type)
        spec.x, spec.y = data_window.x, data_window.y
        spec.full_x, spec.full_y = display_window.x, display_window.y
        spec.full_width, spec.full_height = display_window.width, display_window.height
        spec.channelnames = tuple(channel_names)
        if channel_types:
            spec.channelformats = tuple(oiio.TypeDesc(channel_types.get(c, pixel_type)) for c in channel_names)
        spec.attribute("compression", compression)
        if name:
            spec.attribute("oiio:subimagename", name)
        for key, value in (attributes or {}).items():
            spec.attribute(key, value)
        return cls(spec, pixels)

    @property
    def name(self) -> str:
        return self.spec.get_string_attribute("oiio:subimagename")

    @property
    def view(self) -> str:
        return self.spec.get_string_attribute("view")

    @property
    def channel_names(self) -> list[str]:
        return list(self.spec.channelnames)

    @property
    def channel_types(self) -> list[str]:
        formats = self.spec.channelformats or (self.spec.format,) * self.spec.nchannels
        return [str(f) for f in formats]

    @property
    def data_window(self) -> Window:
        s = self.spec
        return Window(s.x, s.y, s.width, s.height)

    @property
    def display_window(self) -> Window:
        s = self.spec
        return Window(s.full_x, s.full_y, s.full_width, s.full_height)

    @property
    def pixel_aspect(self) -> float:
        return float(self.spec.get_float_attribute("PixelAspectRatio", 1.0))

    @property
    def compression(self) -> str:
        return self.spec.get_string_attribute("compression", "none")

    @property
    def attributes(self) -> dict[str, object]:
        """Every header attribute by name (windows and channels are properties above)."""
        return {a.name: a.value for a in self.spec.extra_attribs}

    def channel_index(self, name: str) -> int:
        return self.channel_names.index(name)


class Plate:
    """One frame file: its parts, with channels looked up by name across all of them."""

    def __init__(self, path: str, parts: Sequence[ImagePart]) -> None:
        if not parts:
            raise ValueError("a plate needs at least one part")
        self.path = path
        self.parts = list(parts)
        self._index = self._build_index()

    def _build_index(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Map (qualified channel name, view) to (part index, channel index).

        Channels are named as the same shot's single-part file would name them, by OpenEXR's multi-view rules
        (ImfMultiView): the view is the penultimate component (``forward.left.u``, ``left.R``), a bare name
        (``R``) is in the default view (the first), and a layered name without a view (``disparityL.x``)
        belongs to no view (''). A part with a ``view`` attribute (a multi-part stereo file, parts like
        ``rgba_left`` or ``depth_right``) holds that view's channels: its view is inserted into their names
        (``R`` of ``rgba_left`` is ``left.R``, ``forward.u`` of ``forward_right`` is ``forward.right.u``), so
        both layouts read alike. Otherwise a bare channel in a named part other than the first is qualified
        by the part name, as Nuke shows parts as layers.
        """
        index: dict[tuple[str, str], tuple[int, int]] = {}
        views = self.views
        for p, part in enumerate(self.parts):
            for c, channel in enumerate(part.channel_names):
                if part.view:
                    view = part.view
                    in_name = _view_of(channel, views)
                    qualified = channel if in_name == view else _insert_view(channel, view, views)
                else:
                    qualified = channel
                    if p > 0 and part.name and "." not in channel:
                        qualified = f"{part.name}.{channel}"
                    view = _view_of(qualified, views)
                index.setdefault((qualified, view), (p, c))
        return index

    @property
    def channel_names(self) -> list[str]:
        """Every channel's qualified name, parts in file order, without duplicates."""
        return list(dict.fromkeys(name for name, _ in self._index))

    @property
    def views(self) -> list[str]:
        """The views, default first: a ``multiView`` header attribute's, else the parts' ``view`` in file order."""
        for part in self.parts:
            declared = part.spec.getattribute("multiView")
            if declared:
                return [declared] if isinstance(declared, str) else list(declared)
        return list(dict.fromkeys(part.view for part in self.parts if part.view))

    def layers(self) -> list[Layer]:
        """Channels grouped by prefix; unprefixed R, G, B, A are ``rgba`` and Z is ``depth``."""
        groups: dict[str, list[str]] = {}
        for channel in self.channel_names:
            if "." in channel:
                layer = channel.rsplit(".", 1)[0]
            else:
                layer = "depth" if channel == "Z" else "rgba"
            groups.setdefault(layer, []).append(channel)
        return [Layer(name, tuple(chs)) for name, chs in groups.items()]

    def locate(self, name: str, view: str = "") -> tuple[ImagePart, int]:
        """The part holding channel ``name`` (in ``view``, if given) and its index there.

        With a view, ``name`` may be as stored (``left.R``) or without the view (``R``, ``forward.u``); a
        channel that belongs to no view (``disparityL.x``) is found in every view.
        """
        if view:
            candidates = [(name, view), (_insert_view(name, view, self.views), view), (name, "")]
        else:
            candidates = [(name, v) for v in ["", *self.views]]
        for key in candidates:
            if key in self._index:
                p, c = self._index[key]
                return self.parts[p], c
        shown = ", ".join(self.channel_names[:24])
        more = "" if len(self.channel_names) <= 24 else f" (+{len(self.channel_names) - 24} more)"
        in_view = f" in view {view!r}" if view else ""
        raise PlateError(f"no channel {name!r}{in_view}; channels are: {shown}{more}", self.path)

    def _pixels(self, part: ImagePart) -> np.ndarray:
        if part.pixels is None:
            raise PlateError("the plate was read without pixels", self.path)
        return part.pixels

    def channel(self, name: str, view: str = "") -> np.ndarray:
        """One channel over its part's data window, shaped ``(height, width)``."""
        part, c = self.locate(name, view)
        return self._pixels(part)[:, :, c]

    def channels(self, names: Iterable[str], view: str = "") -> np.ndarray:
        """Several channels stacked ``(height, width, len(names))``; all from one data window."""
        located = [self.locate(n, view) for n in names]
        windows = {part.data_window for part, _ in located}
        if len(windows) > 1:
            raise PlateError(f"channels {list(names)} come from parts with different data windows", self.path)
        part0 = located[0][0]
        if all(part is part0 for part, _ in located):
            return self._pixels(part0)[:, :, [c for _, c in located]]
        return np.stack([self._pixels(part)[:, :, c] for part, c in located], axis=-1)

    @property
    def data_window(self) -> Window:
        """The union of the parts' data windows: where any channel has pixels."""
        windows = [part.data_window for part in self.parts]
        x0, y0 = min(w.x for w in windows), min(w.y for w in windows)
        x1, y1 = max(w.x + w.width for w in windows), max(w.y + w.height for w in windows)
        return Window(x0, y0, x1 - x0, y1 - y0)

    @property
    def display_window(self) -> Window:
        return self.parts[0].display_window


def _view_of(channel: str, views: Sequence[str]) -> str:
    """The view of a channel name by OpenEXR's rules: the penultimate component if it is a view; a bare name is
    in the default (first) view; a layered name without a view component is in none ('')."""
    components = channel.split(".")
    if len(components) == 1:
        return views[0] if views else ""
    return components[-2] if components[-2] in views else ""


def _insert_view(channel: str, view: str, views: Sequence[str]) -> str:
    """``channel`` named in ``view`` (OpenEXR's insertViewName): the view becomes the penultimate component,
    except for a bare name in the default view, which stays bare."""
    if "." not in channel and views and view == views[0]:
        return channel
    layer, _, component = channel.rpartition(".")
    return f"{layer}.{view}.{component}" if layer else f"{view}.{component}"


def _open(path: str) -> oiio.ImageInput | None:
    """Open an EXR for reading; None for a luminance/chroma file, which OIIO cannot read."""
    if not os.path.isfile(path):
        raise PlateError("no such file", path)
    inp = oiio.ImageInput.open(path)
    if inp is None:
        message = _oiio_message()
        if "Subsampled channels" in message:
            return None
        raise PlateError(message, path)
    if inp.format_name() != "openexr":
        inp.close()
        raise PlateError(f"not an EXR file (OpenImageIO reads it as {inp.format_name()})", path)
    return inp


def _specs(inp: oiio.ImageInput, path: str) -> list[oiio.ImageSpec]:
    specs = []
    subimage = 0
    while inp.seek_subimage(subimage, 0):
        spec = oiio.ImageSpec(inp.spec())
        if spec.deep:
            raise PlateError("deep EXR parts are not supported; flatten the file first", path)
        if spec.width <= 0 or spec.height <= 0 or spec.nchannels <= 0:
            raise PlateError(f"part {subimage} has an empty data window or no channels", path)
        specs.append(spec)
        subimage += 1
    if not specs:
        raise PlateError(_oiio_message(inp), path)
    return specs


def read_plate(path: str | os.PathLike[str], pixels: bool = True) -> Plate:
    """Read every part of an EXR frame (headers only with ``pixels=False``).

    Raises PlateError naming the file for anything damaged, truncated or unsupported.
    """
    path = os.fspath(path)
    inp = _open(path)
    if inp is None:
        return _read_luminance_chroma(path)
    try:
        parts = []
        for subimage, spec in enumerate(_specs(inp, path)):
            data = None
            if pixels:
                data = inp.read_image(subimage, 0, 0, spec.nchannels, "float")
                if data is None or inp.has_error:
                    raise PlateError(f"part {subimage}: {_oiio_message(inp)}", path)
                data = data.reshape(spec.height, spec.width, spec.nchannels)
                for c in _uint_channels(spec):  # OIIO normalises uint to [0, 1] when converting
                    ids = inp.read_image(subimage, 0, c, c + 1, "uint")
                    if ids is None:
                        raise PlateError(f"part {subimage}: {_oiio_message(inp)}", path)
                    data[:, :, c] = ids.reshape(spec.height, spec.width)
            parts.append(ImagePart(spec, data))
        return Plate(path, parts)
    except (ValueError, RuntimeError, MemoryError) as exc:  # damage OIIO did not catch itself
        raise PlateError(f"unreadable: {exc}", path) from None
    finally:
        inp.close()


_quiet_lock = threading.Lock()
_quiet_users = 0  # readers inside _library_output_dropped; the first redirects, the last restores
_quiet_saved: list[int] = []


@contextlib.contextmanager
def _library_output_dropped() -> Iterator[None]:
    """Drop what the OpenEXR library prints itself (a line per bad chunk on file descriptor 2, ``Warning:`` lines
    on 1), so a damaged file is the one line of the PlateError that follows, not dozens, and ``--json`` stays JSON.

    The library writes to the descriptors, not to ``sys.stderr``, so only an fd-level redirect silences it.
    Descriptors are process-wide: concurrent readers (worker threads) share one redirect, counted under a
    lock, so none restores it while another is still inside, and none saves /dev/null as "the terminal".
    C stdio buffers are flushed before restoring, or the library's buffered text would reach the real
    stdout later. Only the rare path that needs the OpenEXR bindings is wrapped, so the window in which
    another thread's own output is dropped stays that short.
    """
    global _quiet_users
    with _quiet_lock:
        if _quiet_users == 0:
            sys.stdout.flush()
            sys.stderr.flush()
            _quiet_saved[:] = [os.dup(1), os.dup(2)]
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                _libc_flush()
                os.dup2(_quiet_saved[0], 1)
                os.dup2(_quiet_saved[1], 2)
                for fd in _quiet_saved:
                    os.close(fd)
                _quiet_saved.clear()


def _libc_flush() -> None:
    """fflush(NULL): empty every C stdio buffer (the library's std::cout text) into the current descriptors."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to flush (not on Linux/macOS)
        pass


def _read_luminance_chroma(path: str) -> Plate:
    """Read a Y/RY/BY file through the OpenEXR bindings and convert it to RGB.

    Chroma is upsampled by pixel replication and converted with the Rec.709 luminance weights
    that OpenEXR's RgbaYca uses when the file has no chromaticities attribute.
    """
    import OpenEXR  # only this rare layout needs the second EXR library

    try:
        with _library_output_dropped(), OpenEXR.File(path) as exr:
            header = dict(exr.header())  # the bindings clear it on close
            planes = {name: ch.pixels.astype(np.float32) for name, ch in exr.channels().items()}
    except Exception as exc:  # noqa: BLE001 - the bindings raise bare exceptions for damaged files
        raise PlateError(f"luminance/chroma EXR: {exc}", path) from None
    if not {"Y", "RY", "BY"} <= planes.keys():
        raise PlateError("subsampled channels other than luminance/chroma are not supported", path)
    lum = planes["Y"]
    height, width = lum.shape

    def upsample(plane: np.ndarray) -> np.ndarray:
        ys, xs = round(height / plane.shape[0]), round(width / plane.shape[1])
        return np.repeat(np.repeat(plane, ys, axis=0), xs, axis=1)[:height, :width]

    wr, wg, wb = 0.2126, 0.7152, 0.0722
    red = (upsample(planes["RY"]) + 1.0) * lum
    blue = (upsample(planes["BY"]) + 1.0) * lum
    green = (lum - wr * red - wb * blue) / wg
    channels = [red, green, blue]
    names = ["R", "G", "B"]
    if "A" in planes:
        channels.append(planes["A"])
        names.append("A")
    (dx0, dy0), _ = header["dataWindow"]
    (fx0, fy0), (fx1, fy1) = header["displayWindow"]
    part = ImagePart.create(
        np.stack(channels, axis=-1),
        names,
        Window(int(dx0), int(dy0), width, height),
        Window(int(fx0), int(fy0), int(fx1 - fx0 + 1), int(fy1 - fy0 + 1)),
        pixel_type="half",
        compression=str(header["compression"].name).lower().replace("_compression", ""),
        attributes={"PixelAspectRatio": float(header.get("pixelAspectRatio", 1.0))},
    )
    return Plate(path, [part])


def write_plate(
    path: str | os.PathLike[str],
    parts: Sequence[ImagePart],
    *,
    pixel_type: str | None = None,
    compression: str | None = None,
    provenance: Mapping[str, object] | None = None,
) -> None:
    """Write parts as one EXR, atomically (temp file + rename in the same folder).

    ``pixel_type`` ("half" or "float") converts every floating-point channel; uint channels
    stay uint. ``compression`` overrides each part's own. ``provenance`` is written to every
    part's header under the ``stylecomp/`` namespace.
    """
    path = os.fspath(path)
    if pixel_type is not None and pixel_type not in _FLOAT_TYPES:
        raise PlateError(f"pixel type must be 'half' or 'float', not {pixel_type!r}", path)
    if compression is not None and compression.split(":")[0] not in COMPRESSIONS:
        raise PlateError(f"unknown EXR compression {compression!r}; use one of {', '.join(COMPRESSIONS)}", path)
    specs = []
    for part in parts:
        spec = oiio.ImageSpec(part.spec)
        if pixel_type is not None:
            target = oiio.TypeDesc(pixel_type)
            formats = [target if t in ("half", "float") else oiio.TypeDesc(t) for t in part.channel_types]
            spec.set_format(target)  # resets channelformats, so set them after
            if len(set(map(str, formats))) > 1:
                spec.channelformats = tuple(formats)
        if compression is not None:
            spec.attribute("compression", compression)
        for key, value in (provenance or {}).items():
            spec.attribute(PROVENANCE_PREFIX + key, _header_value(value))
        if len(parts) > 1 and not spec.get_string_attribute("oiio:subimagename"):
            raise PlateError("every part of a multi-part EXR needs a name", path)
        specs.append(spec)

    with atomic_target(path) as temp:
        out = oiio.ImageOutput.create(temp)
        if out is None:
            raise PlateError(_oiio_message(), path)
        try:
            for i, (spec, part) in enumerate(zip(specs, parts, strict=True)):
                opened = out.open(temp, specs) if i == 0 else out.open(temp, spec, "AppendSubimage")
                if part.pixels is None:
                    raise PlateError(f"part {i} has no pixels to write", path)
                if not opened or not out.write_image(_to_file_values(part.pixels, spec)):
                    raise PlateError(f"writing part {i}: {_oiio_message(out)}", path)
        finally:
            closed = out.close()
        if not closed:
            raise PlateError(f"closing: {_oiio_message(out)}", path)


def _header_value(value: object) -> int | float | str:
    """A provenance value as an EXR attribute: numbers as numbers, except ints beyond EXR's 32 bits (seeds go to
    2**63), which are written as text like everything else."""
    if isinstance(value, float) or (isinstance(value, int) and -(2**31) <= value < 2**31):
        return value
    return str(value)


def _uint_channels(spec: oiio.ImageSpec) -> list[int]:
    return [c for c, f in enumerate(spec.channelformats) if str(f) == "uint"] or (
        list(range(spec.nchannels)) if str(spec.format) == "uint" else []
    )


def _to_file_values(pixels: np.ndarray, spec: oiio.ImageSpec) -> np.ndarray:
    """Pixels as OIIO converts them: uint channels as integer / (2**32 - 1), exact to 2**24."""
    uint = _uint_channels(spec)
    if not uint:
        return np.ascontiguousarray(pixels, dtype=np.float32)
    values = np.array(pixels, dtype=np.float32)
    values[:, :, uint] = (np.rint(pixels[:, :, uint].astype(np.float64)) / 4294967295.0).astype(np.float32)
    return values


def nonfinite_counts(pixels: np.ndarray) -> tuple[int, int]:
    """(NaN count, Inf count) over an array."""
    nan = int(np.count_nonzero(np.isnan(pixels)))
    inf = int(np.count_nonzero(np.isinf(pixels)))
    return nan, inf

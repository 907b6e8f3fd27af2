from pathlib import Path

import pytest

from stylecomp.errors import PlateError
from stylecomp.io.sequence import discover, to_printf


@pytest.mark.parametrize(
    "pattern, printf",
    [
        ("/p/sh010.####.exr", "/p/sh010.%04d.exr"),
        ("/p/sh010.%04d.exr", "/p/sh010.%04d.exr"),
        ("/p/sh010.@@@@.exr", "/p/sh010.%04d.exr"),
        ("/p/sh010.#.exr", "/p/sh010.%01d.exr"),
        ("/p/sh010.%d.exr", "/p/sh010.%d.exr"),
        ("/shows/#42/sh010.exr", "/shows/#42/sh010.exr"),  # '#' in a folder is not a token
    ],
)
def test_to_printf(pattern: str, printf: str) -> None:
    assert to_printf(pattern) == printf


def test_two_tokens_are_refused() -> None:
    with pytest.raises(PlateError, match="more than one frame-number token"):
        to_printf("a.####.####.exr")


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_discover_finds_frames_and_gaps(tmp_path: Path) -> None:
    _touch(tmp_path, "a.1001.exr", "a.1002.exr", "a.1005.exr", "a.01003.exr", "b.1003.exr", "a.1004.exr.tmp")
    seq = discover(tmp_path / "a.####.exr")
    assert seq.frames == (1001, 1002, 1005)  # 01003 has other padding; .tmp is not a frame
    assert seq.missing == (1003, 1004)
    assert seq.path(1002) == str(tmp_path / "a.1002.exr")


def test_discover_in_a_range_reports_frames_missing_at_the_ends(tmp_path: Path) -> None:
    _touch(tmp_path, "a.0002.exr", "a.0003.exr", "a.0009.exr")
    seq = discover(tmp_path / "a.@@@@.exr", (1, 4))
    assert seq.frames == (2, 3)
    assert seq.missing == (1, 4)


def test_discover_unpadded_and_negative_frames(tmp_path: Path) -> None:
    _touch(tmp_path, "a.-1.exr", "a.0.exr", "a.1.exr", "a.10.exr")
    seq = discover(tmp_path / "a.%d.exr")
    assert seq.frames == (-1, 0, 1, 10)
    assert seq.missing == tuple(range(2, 10))


def test_discover_grows_past_the_padding(tmp_path: Path) -> None:
    _touch(tmp_path, "a.9999.exr", "a.10000.exr")
    assert discover(tmp_path / "a.####.exr").frames == (9999, 10000)


def test_discover_single_file_and_errors(tmp_path: Path) -> None:
    _touch(tmp_path, "still.exr")
    seq = discover(tmp_path / "still.exr")
    assert seq.is_single_file and seq.path(7) == str(tmp_path / "still.exr")
    with pytest.raises(PlateError, match="no such file"):
        discover(tmp_path / "nothing.exr")
    with pytest.raises(PlateError, match="no frames found"):
        discover(tmp_path / "nothing.####.exr")
    with pytest.raises(PlateError, match="cannot list folder"):
        discover(tmp_path / "no_folder" / "a.####.exr")

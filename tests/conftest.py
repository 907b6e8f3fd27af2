"""Shared fixtures: the read-only test data beside the checkout (../shared/testdata), the tiny random-weight models,
demo plates, a private render cache, no network; GPU tests skip without CUDA."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.shared_data import TESTDATA

# Fuzzing profiles (tests/test_fuzz.py): "ci" is the default and keeps the suite fast and repeatable; "long" is
# `make fuzz`; "bench" is in between. Choose with $HYPOTHESIS_PROFILE.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("bench", max_examples=300, deadline=None)  # benchmarks/reliability.py
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    no_data = pytest.mark.skip(reason=f"shared test data not found at {TESTDATA} (set STYLECOMP_TESTDATA)")
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "testdata" in item.fixturenames and not TESTDATA.is_dir():
            item.add_marker(no_data)
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture
def testdata() -> Path:
    return TESTDATA


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test on any connection attempt, even one a library would swallow."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object, *args: object) -> None:
        attempts.append(address)
        raise OSError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
    assert not attempts, f"something tried the network: {attempts}"


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A render and file-hash cache of the test's own ($STYLECOMP_CACHE_DIR)."""
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random-weight model per family, each with a ControlNet in controlnet/, built once per run."""
    from stylecomp.diffusion.testing import make_test_model

    root = tmp_path_factory.mktemp("tiny")
    return {family: make_test_model(root / family, family, controlnet=True) for family in ("sd15", "sdxl", "flux")}


@pytest.fixture(scope="session")
def model(tiny: dict[str, Path]) -> Path:
    """The tiny random-weight SD 1.5 (with its ControlNet in controlnet/) most render tests use."""
    return tiny["sd15"]


@pytest.fixture(scope="module")
def plates(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo plates from frame 1001 (folder/demo.####.exr: beauty, Z, normals, vectors, IDs), as many and as large as
    the module's ``pytest.mark.plates(frames, width=64, height=64)`` asks."""
    from stylecomp.demo.scene import write_demo

    marker = request.node.get_closest_marker("plates")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the plates fixture needs pytestmark = pytest.mark.plates(...)")
    size = _plate_size(*marker.args, **marker.kwargs)
    folder = tmp_path_factory.mktemp("plates")
    write_demo(folder, **size, progress=lambda done, total: None)
    return folder


def _plate_size(frames: int, width: int = 64, height: int = 64) -> dict[str, int]:
    return {"frames": frames, "width": width, "height": height}

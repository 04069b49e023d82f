"""Shared fixtures: deterministic inputs."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from .helpers import export_tiny_onnx


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Every test starts with the process's torch thread count: benches, training and soak runs set their own,
    and a different count changes float reductions enough to move golden comparisons (seen: 1.1e-5 vs 1e-5)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def image_u8(rng: np.random.Generator) -> np.ndarray:
    """64×96×3 uint8 with some structure (a bright square on noise)."""
    img = rng.integers(0, 120, size=(64, 96, 3), dtype=np.uint8)
    img[16:48, 30:70] = 220
    return img


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(artifact dir, checkpoint): the tiny late model exported to ONNX, shared by parity and bench tests."""
    return export_tiny_onnx(tmp_path_factory.getbasetemp() / "tiny_onnx")

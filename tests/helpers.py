"""Test helpers: realistic random weights, click rows."""
from __future__ import annotations

from pathlib import Path

import torch

from edgeclick import clicks, contract


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and BN statistic non-trivial values so layer mix-ups change the output
    (fresh BN layers are identities and zero-initialised branches hide wiring errors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
            else:
                p.copy_(0.5 + torch.rand(p.shape, generator=gen) if name.endswith("weight") else 0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model.eval()


def click_rows(points: list[tuple[float, float, int]], n: int = contract.NUM_CLICKS) -> torch.Tensor:
    """[(x, y, label), ...] → 1×n×3 click rows (edgeclick.clicks.click_rows), cut to n rows; a label of
    contract.LABEL_PADDING makes a padding row in the middle (to test that the model skips it)."""
    rows = torch.from_numpy(clicks.click_rows([(x, y, label == contract.LABEL_POSITIVE) for x, y, label in points]))
    for i, (_, _, label) in enumerate(points):
        if label == contract.LABEL_PADDING:
            rows[0, i] = contract.LABEL_PADDING
    return rows[:, :n]


TINY_ONNX_SIZE = (64, 96)


def export_tiny_onnx(root: Path) -> tuple[Path, Path]:
    """(artifact dir, checkpoint) of a randomised tiny late-fusion model exported to ONNX at 64×96.

    Exported once per test session (the artifact is reused when it is already there).
    """
    from edgeclick.export.run import export
    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    checkpoint = root / "tiny_late.pt"
    artifact = root / "artifacts" / "tiny-onnx"
    if not (artifact / "manifest.json").is_file():
        save_checkpoint(randomize_(create_model("tiny", fusion="late"), seed=1), checkpoint)
        export(checkpoint, "onnx", size=TINY_ONNX_SIZE, out_root=root / "artifacts", name="tiny-onnx")
    return artifact, checkpoint


def real_tensorrt_missing() -> str:
    """Why a real-TensorRT test cannot run here ("" when it can)."""
    reasons = []
    try:
        __import__("tensorrt")
    except Exception:
        reasons.append("TensorRT not installed")
    if not torch.cuda.is_available():
        reasons.append("no CUDA GPU")
    return "; ".join(reasons)

"""Soak: thousands of clicks through one `Session`, with undo / reset / new images mixed in, measuring memory.

    python -m edgeclick.runtimes.soak                       # 10,000 clicks, onnxruntime and torch, tiny model
    python -m edgeclick.runtimes.soak --clicks 2000 --backends onnxruntime --out reports/reliability

Each backend runs in its own process (so one backend's allocations do not count against the other). The
figure is peak RSS growth after warm-up: the resident set when warm-up ends against the highest resident set
after it (VmHWM, reset at the end of warm-up through /proc/self/clear_refs, and RSS sampled every
`sample_every` actions — the larger of the two counts). The session's answers are checked too: the first
click session of the run is replayed at the end and must give bit-identical probabilities.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CLICKS = 10_000
DEFAULT_SIZE = (64, 96)
DEFAULT_LIMIT = 0.05  # the bar: peak RSS may grow at most 5% after warm-up
BACKENDS = ("onnxruntime", "torch", "executorch")
DEFAULT_BACKENDS = ("onnxruntime", "torch")  # executorch on request (--backends executorch): its export takes minutes
EXPORTED = {"onnxruntime": "onnx", "executorch": "executorch"}  # soak backend → export target
# Action mix (per step, after the click count allows): mostly clicks, as a user fixing a mask would.
P_UNDO, P_RESET, NEW_IMAGE_EVERY = 0.10, 0.03, 250


def rss_mb(key: str = "VmRSS") -> float | None:
    """The process's resident set (VmRSS) or its peak (VmHWM) in MiB from /proc/self/status (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class SoakResult:
    """What one backend's soak measured (MiB, milliseconds)."""

    backend: str
    clicks: int
    undos: int
    resets: int
    images: int
    warmup_clicks: int
    rss_start_mb: float
    rss_after_warmup_mb: float
    peak_rss_after_warmup_mb: float
    rss_end_mb: float
    growth: float  # (peak after warm-up − RSS after warm-up) / RSS after warm-up
    click_ms_first: float  # median click latency over the first 1,000 clicks after warm-up
    click_ms_last: float  # ... and over the last 1,000
    seconds: float
    replay_identical: bool
    samples: list[tuple[int, float]] = field(default_factory=list)  # (clicks so far, RSS MiB)

    def passed(self, limit: float = DEFAULT_LIMIT) -> bool:
        return self.growth <= limit and self.replay_identical


def soak_images(size: tuple[int, int], seed: int, count: int = 4) -> list[np.ndarray]:
    """`count` images with a bright object on noise; sizes vary so the letterbox changes between them."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        h, w = size[0] + 16 * i, size[1] - 8 * i
        img = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
        img[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 220
        images.append(img)
    return images


def open_soak_session(backend: str, size: tuple[int, int], work: Path, seed: int = 0) -> Any:
    """A Session over the tiny late-fusion model (random weights, seeded) on `backend`."""
    import torch

    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    from .session import Session
    from .torch_ref import TorchBackend

    torch.manual_seed(seed)
    model = create_model("tiny", fusion="late")
    if backend == "torch":
        torch.set_num_threads(1)
        return Session(TorchBackend(model, input_size=size))
    if backend in EXPORTED:
        from .artifact import open_backend

        target = EXPORTED[backend]
        checkpoint = save_checkpoint(model, work / "tiny_late.pt")
        # Through the command line, as a user exports: the runtimes package does not import the exporters.
        subprocess.run([sys.executable, "-m", "edgeclick", "export", "--target", target, "--checkpoint", str(checkpoint),
                        "--size", f"{size[0]}x{size[1]}", "--out", str(work / "artifacts"), "--name", f"soak-{target}"],
                       check=True, stdout=subprocess.DEVNULL)
        return Session(open_backend(work / "artifacts" / f"soak-{target}", threads=1))
    raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")


def _first_session(session: Any, image: np.ndarray, rng: np.random.Generator, n: int = 5) -> list[np.ndarray]:
    """n clicks on `image` from a seeded generator; the probabilities after each."""
    session.set_image(image)
    h, w = image.shape[:2]
    return [session.click(float(rng.uniform(0, w - 1)), float(rng.uniform(0, h - 1)), bool(i % 3 != 2)).copy()
            for i in range(n)]


def run_soak(session: Any, clicks: int = DEFAULT_CLICKS, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0,
             warmup: int | None = None, sample_every: int = 50, backend: str = "") -> SoakResult:
    """Drive `session` for `clicks` clicks with undo / reset / new images mixed in; measure RSS and latency."""
    from edgeclick import contract

    warmup = max(1, clicks // 10) if warmup is None else warmup
    images = soak_images(size, seed)
    rss_start = rss_mb() or 0.0
    reference = _first_session(session, images[0], np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    counts = {"clicked": 0, "undos": 0, "resets": 0, "images": 1}
    latencies: list[float] = []
    samples: list[tuple[int, float]] = []
    rss_warm = peak_sampled = 0.0
    hwm_reset = False
    start = time.perf_counter()
    image = images[0]
    session.set_image(image)
    while counts["clicked"] < clicks:
        roll = rng.random()
        n = len(session.clicks)
        if n and roll < P_UNDO:
            session.undo()
            counts["undos"] += 1
        elif n and roll < P_UNDO + P_RESET or n == contract.NUM_CLICKS:
            session.reset()
            counts["resets"] += 1
        else:
            h, w = image.shape[:2]
            t = time.perf_counter()
            session.click(float(rng.uniform(0, w - 1)), float(rng.uniform(0, h - 1)), bool(rng.random() < 0.7))
            latencies.append(time.perf_counter() - t)
            counts["clicked"] += 1
            if counts["clicked"] % NEW_IMAGE_EVERY == 0:
                image = images[counts["clicked"] // NEW_IMAGE_EVERY % len(images)]
                session.set_image(image)
                counts["images"] += 1
            if counts["clicked"] == warmup:
                rss_warm = rss_mb() or 0.0
                hwm_reset = reset_peak_rss()
            if counts["clicked"] % sample_every == 0:
                rss = rss_mb() or 0.0
                samples.append((counts["clicked"], round(rss, 2)))
                if counts["clicked"] > warmup:
                    peak_sampled = max(peak_sampled, rss)
    seconds = time.perf_counter() - start
    hwm = rss_mb("VmHWM") if hwm_reset else None
    peak = max(peak_sampled, hwm or 0.0, rss_warm)
    replay = _first_session(session, images[0], np.random.default_rng(seed))
    identical = all(np.array_equal(a, b) for a, b in zip(reference, replay, strict=True))
    after = latencies[warmup:]
    return SoakResult(
        backend=backend or getattr(getattr(session, "backend", None), "name", "?"), clicks=counts["clicked"],
        undos=counts["undos"], resets=counts["resets"], images=counts["images"], warmup_clicks=warmup,
        rss_start_mb=round(rss_start, 2), rss_after_warmup_mb=round(rss_warm, 2), peak_rss_after_warmup_mb=round(peak, 2),
        rss_end_mb=round(rss_mb() or 0.0, 2), growth=round((peak - rss_warm) / rss_warm, 5) if rss_warm else float("nan"),
        click_ms_first=round(float(np.median(after[:1000])) * 1e3, 3) if after else float("nan"),
        click_ms_last=round(float(np.median(after[-1000:])) * 1e3, 3) if after else float("nan"),
        seconds=round(seconds, 2), replay_identical=identical, samples=samples,
    )


def soak_backend(backend: str, clicks: int, size: tuple[int, int], seed: int) -> SoakResult:
    """Open the backend's session in a temporary folder and soak it (this process)."""
    with tempfile.TemporaryDirectory(prefix="edgeclick-soak-") as work:
        session = open_soak_session(backend, size, Path(work), seed)
        return run_soak(session, clicks, size, seed, backend=backend)


def soak_in_subprocess(backend: str, clicks: int, size: tuple[int, int], seed: int, timeout: float = 1800) -> SoakResult:
    """soak_backend in a fresh interpreter, so each backend's RSS is its own."""
    argv = [sys.executable, "-m", "edgeclick.runtimes.soak", "--worker", "--backends", backend, "--clicks", str(clicks),
            "--size", f"{size[0]}x{size[1]}", "--seed", str(seed)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"soak worker for {backend} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["samples"] = [tuple(s) for s in data["samples"]]
    return SoakResult(**data)


def write_report(results: list[SoakResult], out: Path, limit: float) -> Path:
    """out/soak.json: settings, per-backend figures, pass/fail against `limit`."""
    from edgeclick.io import write_json_atomic

    report = {"limit_growth": limit, "passed": all(r.passed(limit) for r in results),
              "results": [{**asdict(r), "passed": r.passed(limit)} for r in results],
              "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    return write_json_atomic(out / "soak.json", report)


def main(argv: list[str] | None = None) -> int:
    from edgeclick.args import parse_size

    p = argparse.ArgumentParser(prog="python -m edgeclick.runtimes.soak", description=__doc__.split("\n")[0])
    p.add_argument("--clicks", type=int, default=DEFAULT_CLICKS)
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help=f"comma-separated, of {','.join(BACKENDS)}")
    p.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, help="model input HxW (default 64x96)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=float, default=DEFAULT_LIMIT, help="largest peak RSS growth that passes")
    p.add_argument("--out", type=Path, default=Path("reports/reliability"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.worker:
        print(json.dumps(asdict(soak_backend(backends[0], args.clicks, args.size, args.seed))))
        return 0
    results = []
    for backend in backends:
        r = soak_in_subprocess(backend, args.clicks, args.size, args.seed)
        results.append(r)
        print(f"{r.backend:12s} {r.clicks} clicks ({r.undos} undo, {r.resets} reset, {r.images} images) in {r.seconds:.0f} s: "
              f"RSS {r.rss_after_warmup_mb:.1f} MiB after {r.warmup_clicks}-click warm-up, peak after {r.peak_rss_after_warmup_mb:.1f} MiB "
              f"(+{r.growth * 100:.2f}%), end {r.rss_end_mb:.1f} MiB; click p50 {r.click_ms_first:.2f} → {r.click_ms_last:.2f} ms; "
              f"replay identical: {r.replay_identical} — {'PASS' if r.passed(args.limit) else 'FAIL'}")
    path = write_report(results, args.out, args.limit)
    print(f"report: {path}")
    return 0 if all(r.passed(args.limit) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

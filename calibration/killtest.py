"""Kill -9 anywhere: SIGKILL `export`, `calibrate` and `train` at random moments and check what they leave.

    python -m edgeclick.calibration.killtest                       # 3 kills per command, tiny configs; reports/reliability/kill.json
    python -m edgeclick.calibration.killtest --commands train --repeats 5 --seed 1

For each command an uninterrupted run first gives the reference (its duration bounds the random kill
moment, its outputs are what a finished run looks like). Each trial then starts the command in a fresh
folder, sends SIGKILL after a uniform random delay, and checks:

1. everything a later command would read is complete: every visible artifact folder has a manifest whose
   files exist with the recorded sha256 and says complete; every checkpoint, calibration cache and report
   present loads; hidden temporary names (.name.staging-*, .name.*.tmp) are counted as litter, not output;
2. running the command again (train: `--resume` when last.ckpt exists) finishes (exit 0) with valid outputs
   (every other train kill is timed from its first last.ckpt, so that resumes are exercised);
3. train: the resumed run's last.pt against the uninterrupted run's (max |Δweight|, bit-identical or not).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SMOKE = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"
SIZE = "64x96"
COMMANDS = ("export", "calibrate", "train")


@dataclass
class Trial:
    """One kill: when, what the folder held, what a re-run made of it."""

    command: str
    delay_s: float
    killed: bool  # False when the command had finished before the signal
    after_checkpoint: bool = False  # delay counted from the first last.ckpt (train), not from the start
    problems: list[str] = field(default_factory=list)  # outputs a later command would take for complete but are not
    litter: list[str] = field(default_factory=list)  # hidden temporary files / folders left behind
    rerun_exit: int | None = None
    rerun_problems: list[str] = field(default_factory=list)
    resumed_from_step: int | None = None
    max_abs_weight_diff: float | None = None  # train: resumed final weights vs the uninterrupted run's

    @property
    def ok(self) -> bool:
        return not self.problems and self.rerun_exit == 0 and not self.rerun_problems


def _python_edgeclick(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "edgeclick", *args]


def run(args: list[str], cwd: Path, timeout: float = 900) -> int:
    """Run an edgeclick command to completion; its exit status."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(_python_edgeclick(args), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=timeout).returncode


def run_and_kill(args: list[str], cwd: Path, delay: float, after: Path | None = None) -> bool:
    """Start the command, SIGKILL it `delay` seconds after it starts (or after the file `after` appears);
    True if it was still running (killed)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(_python_edgeclick(args), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while after is not None and not after.exists() and proc.poll() is None:
        time.sleep(0.05)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: DataLoader workers die with it
        proc.wait()
        return True


# -- what a later command would read --------------------------------------------------------------------------
def _hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def check_artifacts(folder: Path) -> list[str]:
    """Problems with any visible artifact folder under `folder` (each must be a complete, verified export)."""
    from edgeclick.manifest import read_manifest

    problems = []
    if not folder.is_dir():
        return problems
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            manifest = read_manifest(d)  # verifies every listed file's sha256
            if not manifest.complete:
                problems.append(f"{d.name}: manifest says incomplete")
        except Exception as exc:
            problems.append(f"{d.name}: {exc}")
    return problems


def check_export(root: Path) -> list[str]:
    return check_artifacts(root / "out")


def check_calibrate(root: Path) -> list[str]:
    from edgeclick.calibration.data import CalibrationData

    problems = []
    work = root / "work"
    problems += check_artifacts(work / "variants") + check_artifacts(work / "final")
    for cache in sorted(work.glob("calibration-data-*.npz")) if work.is_dir() else []:
        try:
            CalibrationData.load(cache)
        except Exception as exc:
            problems.append(f"{cache.name}: {exc}")
    report = root / "report" / "calibration.json"
    if report.exists():
        try:
            json.loads(report.read_text())
        except ValueError as exc:
            problems.append(f"calibration.json: {exc}")
        if not (work / "final").is_dir():
            problems.append("calibration.json written but no final/ set")
    return problems


def check_train(root: Path) -> list[str]:
    import torch

    from edgeclick.model.checkpoint import load_checkpoint

    problems = []
    run_dir = root / "run"
    last = run_dir / "last.ckpt"
    if last.exists():
        try:
            torch.load(last, map_location="cpu", weights_only=False)
        except Exception as exc:
            problems.append(f"last.ckpt: {exc}")
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).exists():
            try:
                load_checkpoint(run_dir / name)
            except Exception as exc:
                problems.append(f"{name}: {exc}")
    return problems


# -- the commands on tiny inputs --------------------------------------------------------------------------------
def prepare(root: Path) -> None:
    """A tiny late-fusion checkpoint and a 3-image dataset (davis layout) under `root`."""
    from PIL import Image

    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    import torch

    torch.manual_seed(0)
    save_checkpoint(create_model("tiny", fusion="late"), root / "tiny.pt")
    rng = np.random.default_rng(0)
    for sub in ("img", "gt"):
        (root / "data" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        img = rng.integers(0, 120, (48 + 8 * i, 64, 3), dtype=np.uint8)
        img[10:30, 20:40] = 220
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[10:30, 20:40] = 255
        Image.fromarray(img).save(root / "data" / "img" / f"s{i}.png")
        Image.fromarray(mask).save(root / "data" / "gt" / f"s{i}.png")


def command_args(command: str, shared: Path, root: Path) -> list[str]:
    """The command line of one run writing under `root` (inputs from `shared`)."""
    if command == "export":
        return ["export", "--target", "onnx", "--checkpoint", str(shared / "tiny.pt"), "--size", SIZE, "--out", str(root / "out")]
    if command == "calibrate":
        return ["calibrate", "--checkpoint", str(shared / "tiny.pt"), "--size", SIZE, "--data", str(shared / "data"),
                "--calib-samples", "2", "--calib-clicks", "3", "--calib-decoder-samples", "6", "--max-clicks", "3",
                "--parity-samples", "2", "--no-bench", "--work", str(root / "work"), "--out", str(root / "report")]
    if command == "train":
        return ["train", "--config", str(SMOKE), f"out_dir={root / 'run'}"]
    raise ValueError(f"unknown command {command!r}; choose from {COMMANDS}")


CHECKS: dict[str, Callable[[Path], list[str]]] = {"export": check_export, "calibrate": check_calibrate, "train": check_train}


def _weights(path: Path) -> dict[str, "object"]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def weight_diff(a: Path, b: Path) -> float:
    """max |a − b| over every tensor of two edgeclick checkpoints."""
    wa, wb = _weights(a), _weights(b)
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa) if wa.keys() == wb.keys() else float("inf")


def trial(command: str, shared: Path, reference: Path, duration: float, rng: random.Random,
          after_checkpoint: bool = False) -> Trial:
    """One kill at a random moment of a run (train with after_checkpoint: a random moment after its first
    last.ckpt, so that --resume has something to resume), the checks, and the re-run."""
    import torch

    root = Path(tempfile.mkdtemp(prefix=f"kill-{command}-", dir=shared))
    after = root / "run" / "last.ckpt" if after_checkpoint else None
    delay = rng.uniform(0.0 if after_checkpoint else 0.2, duration / 2 if after_checkpoint else duration)
    result = Trial(command, round(delay, 2), run_and_kill(command_args(command, shared, root), shared, delay, after),
                   after_checkpoint=after_checkpoint)
    result.problems = CHECKS[command](root)
    result.litter = _hidden(root)
    again = command_args(command, shared, root)
    if command == "train" and (root / "run" / "last.ckpt").is_file():
        result.resumed_from_step = int(torch.load(root / "run" / "last.ckpt", weights_only=False)["global_step"])
        again.append("--resume")
    result.rerun_exit = run(again, shared)
    result.rerun_problems = CHECKS[command](root)
    if command == "train":
        last = root / "run" / "last.pt"
        if last.is_file():
            result.max_abs_weight_diff = weight_diff(reference / "run" / "last.pt", last)
        else:
            result.rerun_problems.append("no last.pt after the re-run")
    shutil.rmtree(root, ignore_errors=True)
    return result


def killtest(commands: list[str], repeats: int, seed: int, work: Path, progress: Callable[[str], None] = print) -> dict:
    """Reference runs, then `repeats` random kills per command; the JSON report as a dict."""
    rng = random.Random(seed)
    prepare(work)
    report: dict = {"seed": seed, "repeats": repeats, "commands": {}}
    for command in commands:
        reference = work / f"reference-{command}"
        start = time.perf_counter()
        code = run(command_args(command, work, reference), work)
        duration = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"uninterrupted {command} failed with exit status {code}")
        trials = []
        for i in range(repeats):
            # train: every other kill lands after the first last.ckpt, or a short run would rarely reach --resume
            t = trial(command, work, reference, duration, rng, after_checkpoint=command == "train" and i % 2 == 1)
            trials.append(t)
            progress(f"{command} #{i + 1}: kill after {t.delay_s:.1f} s{' past the first last.ckpt' if t.after_checkpoint else ''} "
                     f"({'killed' if t.killed else 'had finished'})"
                     f"{'' if t.resumed_from_step is None else f', resumed from step {t.resumed_from_step}'}: "
                     f"{'ok' if t.ok else 'PROBLEM'} {t.problems + t.rerun_problems or ''} litter {len(t.litter)}"
                     f"{'' if t.max_abs_weight_diff is None else f', max |Δw| vs uninterrupted {t.max_abs_weight_diff:.3g}'}")
        report["commands"][command] = {"uninterrupted_s": round(duration, 2), "trials": [asdict(t) | {"ok": t.ok} for t in trials],
                                       "all_ok": all(t.ok for t in trials)}
    report["all_ok"] = all(c["all_ok"] for c in report["commands"].values())
    return report


def main(argv: list[str] | None = None) -> int:
    from edgeclick.io import write_json_atomic

    p = argparse.ArgumentParser(prog="python -m edgeclick.calibration.killtest", description=__doc__.split("\n")[0])
    p.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated: export,calibrate,train")
    p.add_argument("--repeats", type=int, default=3, help="kills per command")
    p.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    p.add_argument("--out", type=Path, default=Path("reports/reliability"))
    args = p.parse_args(argv)
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="edgeclick-killtest-") as work:
        report = killtest(commands, args.repeats, args.seed, Path(work))
    path = write_json_atomic(args.out / "kill.json", report)
    print(f"report: {path}")
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""kill -9 anywhere: `export`, `calibrate` and `train` killed at random moments leave nothing half-written that a
later command takes for complete, and a re-run (train: --resume) finishes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeclick.calibration.killtest import main as killtest_main
from edgeclick.model.checkpoint import load_checkpoint

SMOKE = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"


def test_resume_after_a_kill_between_the_last_checkpoint_and_the_weights_writes_them(tmp_path: Path) -> None:
    """Killed after the final last.ckpt but before last.pt / best.pt: Lightning finds no step left on --resume
    and skips the train hooks; the weights must still be written, equal to the finished run's."""
    from edgeclick.train.config import load_config
    from edgeclick.train.loop import fit

    cfg = load_config(SMOKE, ["max_steps=4", "checkpoint_every=2", "val.samples=0", f"out_dir={tmp_path / 'run'}"])
    out = fit(cfg)
    finished = {k: v.clone() for k, v in load_checkpoint(out / "last.pt").state_dict().items()}
    assert torch.load(out / "last.ckpt", weights_only=False)["global_step"] == 4
    (out / "last.pt").unlink()  # the state a SIGKILL right after the final last.ckpt leaves
    (out / "best.pt").unlink()
    fit(cfg, resume=True)
    resumed = load_checkpoint(out / "last.pt").state_dict()
    assert all(torch.equal(finished[k], resumed[k]) for k in finished)
    assert (out / "best.pt").is_file()


@pytest.mark.slow
def test_random_kills_of_export_calibrate_train(tmp_path: Path) -> None:
    """Two random SIGKILLs per command (a few minutes on 2 cores); docs/reliability.md's figures come from --repeats 4."""
    code = killtest_main(["--repeats", "2", "--seed", "7", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "kill.json").read_text())
    for command, result in report["commands"].items():
        for t in result["trials"]:
            assert not t["problems"] and not t["rerun_problems"] and t["rerun_exit"] == 0, (command, t)
    assert code == 0

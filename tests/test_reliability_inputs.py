"""Bad-input sweep: every command and the Session API, fed files that are not what they claim, truncated and
empty files, NaN/inf arrays, wrong dtypes and shapes, huge images, out-of-range clicks, option typos,
missing folders, unwritable output folders and a full disk.

Each must give one line naming the problem and the fix, exit status 2 (usage errors), no traceback unless
--verbose, and nothing half-written. Tests run as root, so "unwritable" is a path under a regular file; a full
disk is a file-size limit (RLIMIT_FSIZE) in a subprocess.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.clicks import Click
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint
from edgeclick.runtimes.ort import OrtBackend
from edgeclick.runtimes.session import InputError, Session
from edgeclick.runtimes.torch_ref import TorchBackend

from .helpers import randomize_

SMOKE = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_onnx: tuple[Path, Path]) -> Path:
    """A folder of good and bad inputs shared by the CLI cases (never written to by them)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    save_checkpoint(randomize_(create_model("tiny", fusion="late"), seed=2), root / "tiny.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(root / "img.png")
    png = (root / "img.png").read_bytes()
    (root / "notimg.png").write_text("this is text, not a PNG\n")
    (root / "empty.png").write_bytes(b"")
    (root / "trunc.png").write_bytes(png[: len(png) // 2])
    (root / "imgdir").mkdir()
    (root / "rand.pt").write_bytes(rng.bytes(1000))
    (root / "pickle.pt").write_bytes(b"\x80\x02garbage that is not a pickle")
    ckpt = (root / "tiny.pt").read_bytes()
    (root / "trunc.pt").write_bytes(ckpt[: len(ckpt) // 2])
    (root / "empty.pt").write_bytes(b"")
    (root / "file.txt").write_text("a regular file where a folder is expected\n")
    (root / "bad.yaml").write_bytes(rng.bytes(200))
    (root / "syntax.yaml").write_text("model: [tiny\n")
    data = root / "data"  # davis layout: img/ + gt/
    (data / "img").mkdir(parents=True)
    (data / "gt").mkdir()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(data / "img" / "a.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(data / "gt" / "a.png")
    artifact, _ = tiny_onnx
    shutil.copytree(artifact, root / "art")
    shutil.copytree(artifact, root / "art_badjson")
    (root / "art_badjson" / "manifest.json").write_text("{oops")
    shutil.copytree(artifact, root / "art_trunc")
    encoder = next((root / "art_trunc").glob("encoder*.onnx"))
    encoder.write_bytes(encoder.read_bytes()[:1000])
    return root


@dataclass(frozen=True)
class Case:
    """One bad command line: argv relative to the world folder, a phrase the error line must hold."""

    id: str
    argv: tuple[str, ...]
    expect: str
    patch: Callable[[pytest.MonkeyPatch], None] | None = None


def _tiny_pillow_limit(mp: pytest.MonkeyPatch) -> None:
    # Pillow refuses images above 2 × MAX_IMAGE_PIXELS; lowering it makes a 40×60 image "huge" cheaply.
    mp.setattr(Image, "MAX_IMAGE_PIXELS", 100)


def _tiny_native_limit(mp: pytest.MonkeyPatch) -> None:
    mp.setattr("edgeclick.runtimes.segment_cli.MAX_NATIVE_PIXELS", 1000)


SEG = ("segment", "W/tiny.pt", "W/img.png")
CASES: list[Case] = [
    # segment: images
    Case("segment-text-as-image", ("segment", "W/tiny.pt", "W/notimg.png", "--click", "5,5,+"), "not an image"),
    Case("segment-empty-image", ("segment", "W/tiny.pt", "W/empty.png", "--click", "5,5,+"), "empty"),
    Case("segment-truncated-image", ("segment", "W/tiny.pt", "W/trunc.png", "--click", "5,5,+"), "truncated"),
    Case("segment-folder-as-image", ("segment", "W/tiny.pt", "W/imgdir", "--click", "5,5,+"), "is a folder"),
    Case("segment-missing-image", ("segment", "W/tiny.pt", "W/nothere.png", "--click", "5,5,+"), "no such file"),
    Case("segment-huge-image", (*SEG, "--click", "5,5,+"), "downscale", _tiny_pillow_limit),
    Case("segment-huge-native", (*SEG, "--click", "5,5,+"), "pass --size", _tiny_native_limit),
    # segment: clicks and options
    Case("segment-click-two-fields", (*SEG, "--click", "10,+"), "X,Y,+"),
    Case("segment-click-not-numbers", (*SEG, "--click", "a,b,+"), "must be numbers"),
    Case("segment-click-bad-label", (*SEG, "--click", "5,5,x"), "label must be + or -"),
    Case("segment-click-outside", (*SEG, "--click", "1000,5,+"), "outside the 60×40 image"),
    Case("segment-click-nan", (*SEG, "--click", "nan,5,+"), "outside"),
    Case("segment-click-negative", (*SEG, "--click=-3,5,+"), "outside"),
    Case("segment-click-dash-value", (*SEG, "--click", "-3,5,+"), "--click=VALUE"),
    Case("segment-no-click", SEG, "no --click"),
    Case("segment-too-many-clicks", (*SEG, *[a for i in range(25) for a in ("--click", f"{i},5,+")]), "exceed"),
    Case("segment-size-not-multiple", (*SEG, "--click", "5,5,+", "--size", "65x96"), "multiple"),
    Case("segment-size-garbage", (*SEG, "--click", "5,5,+", "--size", "big"), "HEIGHTxWIDTH"),
    Case("segment-option-typo", (*SEG, "--clik", "5,5,+"), "did you mean --click"),
    Case("segment-out-under-file", (*SEG, "--click", "5,5,+", "--out", "W/file.txt/mask.png"), "not a folder"),
    # segment: checkpoints that are not what they claim
    Case("segment-random-bytes-ckpt", ("segment", "W/rand.pt", "W/img.png", "--click", "5,5,+"), "not a pytorch file"),
    Case("segment-bad-pickle-ckpt", ("segment", "W/pickle.pt", "W/img.png", "--click", "5,5,+"), "damaged"),
    Case("segment-truncated-ckpt", ("segment", "W/trunc.pt", "W/img.png", "--click", "5,5,+"), "truncated"),
    Case("segment-empty-ckpt", ("segment", "W/empty.pt", "W/img.png", "--click", "5,5,+"), "empty"),
    Case("segment-image-as-ckpt", ("segment", "W/img.png", "W/img.png", "--click", "5,5,+"), "not a pytorch file"),
    Case("segment-unknown-ckpt-name", ("segment", "no-such-model", "W/img.png", "--click", "5,5,+"), "weights"),
    # other commands
    Case("no-command-typo", ("segmnet",), "invalid choice"),
    Case("import-ritm-random", ("import-ritm", "W/rand.pt", "OUT/o.pt"), "not a pytorch file"),
    Case("import-ritm-image", ("import-ritm", "W/img.png", "OUT/o.pt"), "not a pytorch file"),
    Case("import-ritm-missing", ("import-ritm", "W/nothere.pth", "OUT/o.pt"), "no such file"),
    Case("init-unknown-model", ("init", "OUT/x.pt", "--model", "tiny2"), "unknown model"),
    Case("init-out-under-file", ("init", "W/file.txt/x.pt", "--model", "tiny"), "not a folder"),
    Case("init-fusion-typo", ("init", "OUT/x.pt", "--fusion", "lat"), "invalid choice"),
    Case("evaluate-missing-data", ("evaluate", "--checkpoint", "W/tiny.pt", "--data", "W/nothere"), "not found"),
    Case("evaluate-random-ckpt", ("evaluate", "--checkpoint", "W/rand.pt", "--data", "W/data"), "not a pytorch file"),
    Case("train-missing-config", ("train", "--config", "W/nothere.yaml"), "no such file"),
    Case("train-binary-config", ("train", "--config", "W/bad.yaml"), "not a readable yaml"),
    Case("train-broken-yaml", ("train", "--config", "W/syntax.yaml"), "not a readable yaml"),
    Case("train-unknown-key", ("train", "--config", str(SMOKE), "nokey=3"), "unknown config key"),
    Case("train-bad-value", ("train", "--config", str(SMOKE), "max_steps=abc"), "expected int"),
    Case("train-out-under-file", ("train", "--config", str(SMOKE), "out_dir=W/file.txt/run"), "not a folder"),
    Case("merge-random-adapter", ("merge", "W/tiny.pt", "W/rand.pt", "OUT/m.pt"), "not a pytorch file"),
    Case("merge-full-as-adapter", ("merge", "W/tiny.pt", "W/tiny.pt", "OUT/m.pt"), "not an edgeclick adapter"),
    Case("export-random-ckpt", ("export", "--target", "onnx", "--checkpoint", "W/rand.pt", "--size", "64x96", "--out", "OUT"), "not a pytorch file"),
    Case("export-unknown-option", ("export", "--target", "onnx", "--checkpoint", "W/tiny.pt", "--size", "64x96", "--option", "opst=18", "--out", "OUT"), "does not accept"),
    Case("export-bad-target", ("export", "--target", "tflite", "--checkpoint", "W/tiny.pt"), "invalid choice"),
    Case("export-out-under-file", ("export", "--target", "onnx", "--checkpoint", "W/tiny.pt", "--size", "64x96", "--out", "W/file.txt/art"), "not a folder"),
    Case("parity-missing-artifact", ("parity", "W/nothere", "--data", "W/data"), "no manifest.json"),
    Case("parity-corrupt-manifest", ("parity", "W/art_badjson", "--data", "W/data"), "corrupt manifest"),
    Case("parity-missing-data", ("parity", "W/art", "--data", "W/nothere"), "no dataset folder"),
    Case("bench-truncated-graph", ("bench", "W/art_trunc"), "sha256"),
    Case("bench-threads-garbage", ("bench", "W/art", "--threads", "many"), "threads"),
    Case("calibrate-random-ckpt", ("calibrate", "--checkpoint", "W/rand.pt", "--data", "W/data", "--work", "OUT/w", "--out", "OUT/r"), "not a pytorch file"),
    Case("calibrate-missing-data", ("calibrate", "--checkpoint", "W/tiny.pt", "--data", "W/nothere", "--work", "OUT/w", "--out", "OUT/r"), "--data"),
    Case("web-missing-artifact", ("web", "W/nothere"), "no manifest.json"),
    Case("demo-random-ckpt", ("demo", "--checkpoint", "W/rand.pt", "--out", "OUT/demo"), "not a pytorch file"),
    Case("weights-unknown-name", ("weights", "get", "ritm-hrnet99"), "not a registered weights name"),
    Case("weights-add-random", ("weights", "add", "ritm-hrnet18s", "W/rand.pt"), "nothing was kept"),
]


def _snapshot(folder: Path) -> set[str]:
    """Every path under `folder`, hidden ones included (a leftover temporary file is half-written output)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _argv(case: Case, world: Path, out: Path) -> list[str]:
    return [a.replace("W/", f"{world}/").replace("OUT", str(out)) for a in case.argv]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(case: Case, world: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # default outputs (reports/, artifacts/, mask.png) would land here
    monkeypatch.setenv("EDGECLICK_CACHE", str(tmp_path / "cache"))
    # `export` (logging.basicConfig) and Lightning bind log handlers to the stderr captured when they first
    # ran, a closed stream in later cases of this one process: drop the first, silence the second's complaint
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging, "raiseExceptions", False)
    if case.patch is not None:
        case.patch(monkeypatch)
    before = _snapshot(world)
    try:
        code = main(_argv(case, world, tmp_path / "out"))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    assert case.expect.lower() in errors[0].lower(), errors[0]
    assert _snapshot(world) == before, "a bad input changed the input folder"
    # the weights cache may keep its lock file and folders: neither is output a later command could misread
    leftovers = {p for p in _snapshot(tmp_path) if not p.startswith("cache") or p.endswith((".pt", ".pth", ".part"))}
    assert not leftovers, f"half-written output: {sorted(leftovers)}"


def test_verbose_shows_the_traceback(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--verbose", "segment"], ["segment"]):
        args = [*argv, str(world / "tiny.pt"), str(world / "notimg.png"), "--click", "5,5,+"]
        if argv[0] == "segment":
            args.append("--verbose")
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("edgeclick segment: error:")


def test_a_bug_is_exit_1_with_a_pointer_to_verbose(world: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("unexpected")

    monkeypatch.setattr("edgeclick.runtimes.session.open_session", broken)
    assert main(["segment", str(world / "tiny.pt"), str(world / "img.png"), "--click", "5,5,+"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error: TypeError: unexpected" in err and "--verbose" in err


def test_segment_good_input_is_quiet_and_feeds_torch_writable_arrays(world: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """torch warns once per process about a read-only array, so the check is on what reaches torch."""
    original = torch.from_numpy

    def checked(array: np.ndarray) -> torch.Tensor:
        assert array.flags.writeable, "a read-only array reached torch.from_numpy (NumPy 'not writable' warning)"
        return original(array)

    monkeypatch.setattr(torch, "from_numpy", checked)
    out = tmp_path / "mask.png"
    assert main(["segment", str(world / "tiny.pt"), str(world / "img.png"), "--click", "20,10,+", "--click",
                 "3,3,-", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and out.is_file()
    session = Session(TorchBackend(create_model("tiny", fusion="late")))
    readonly = np.zeros((40, 60, 3), np.uint8)
    readonly.setflags(write=False)
    session.set_image(readonly)  # what np.asarray(PIL image) hands out
    session.click(5, 5, True)


# -- full disk: a file-size limit in a subprocess (Python ignores SIGXFSZ, so writes fail with EFBIG) ----------
FSIZE_RUNNER = """
import resource, sys
from edgeclick.cli import main
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("argv,limit", [
    (("init", "OUT/x.pt", "--model", "tiny"), 20_000),
    (("export", "--target", "onnx", "--checkpoint", "W/tiny.pt", "--size", "64x96", "--out", "OUT"), 100_000),
], ids=["init", "export"])
def test_full_disk_is_one_line_and_leaves_nothing(argv: tuple[str, ...], limit: int, world: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("W/", f"{world}/").replace("OUT", str(out)) for a in argv]
    proc = subprocess.run([sys.executable, "-c", FSIZE_RUNNER, str(limit), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and "file size limit" in last and str(out) in last, proc.stderr
    assert not _snapshot(out), f"half-written output: {sorted(_snapshot(out))}"


# -- the Python API ---------------------------------------------------------------------------------------------
def _huge() -> np.ndarray:
    """A 20000×10000 RGB view that costs no memory (broadcast)."""
    return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 10000, 3))


def _nan_image() -> np.ndarray:
    return np.full((40, 60, 3), np.nan, np.float32)


API_CASES: list[tuple[str, Callable[[Session], object], str]] = [
    ("image-nan-float", lambda s: s.set_image(_nan_image()), "dtype float32"),
    ("image-inf-float", lambda s: s.set_image(np.full((40, 60, 3), np.inf)), "dtype float64"),
    ("image-bool", lambda s: s.set_image(np.zeros((40, 60, 3), bool)), "dtype bool"),
    ("image-int64", lambda s: s.set_image(np.zeros((40, 60, 3), np.int64)), "dtype int64"),
    ("image-5d", lambda s: s.set_image(np.zeros((1, 1, 40, 60, 3), np.uint8)), "shape"),
    ("image-2-channels", lambda s: s.set_image(np.zeros((40, 60, 2), np.uint8)), "2 channels"),
    ("image-empty", lambda s: s.set_image(np.zeros((0, 0, 3), np.uint8)), "too small"),
    ("image-1x1", lambda s: s.set_image(np.zeros((1, 1, 3), np.uint8)), "too small"),
    ("image-huge", lambda s: s.set_image(_huge()), "downscale"),
    ("image-not-array", lambda s: s.set_image("photo.jpg"), "shape"),  # type: ignore[arg-type]
    ("click-nan", lambda s: s.click(float("nan"), 3, True), "outside"),
    ("click-inf", lambda s: s.click(3, float("inf"), True), "outside"),
    ("click-negative", lambda s: s.click(-1, 3, True), "outside"),
    ("click-too-far", lambda s: s.click(60, 3, True), "outside"),
    ("click-25th", lambda s: [s.click(1 + i, 1, True) for i in range(25)], "exceed"),
    ("prev-mask-nan", lambda s: s.predict([Click(3, 3, True)], np.full((40, 60), np.nan)), "nan"),
    ("prev-mask-range", lambda s: s.predict([Click(3, 3, True)], np.full((40, 60), 2.0)), "[0, 1]"),
    ("prev-mask-shape", lambda s: s.predict([Click(3, 3, True)], np.zeros((64, 96))), "differs"),
]


@pytest.fixture(scope="module")
def api_sessions(tiny_onnx: tuple[Path, Path]) -> dict[str, Session]:
    artifact, checkpoint = tiny_onnx
    from edgeclick.model.checkpoint import load_checkpoint

    return {"torch": Session(TorchBackend(load_checkpoint(checkpoint), input_size=(64, 96))),
            "onnxruntime": Session(OrtBackend(artifact, threads=1))}


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("name,action,expect", API_CASES, ids=[c[0] for c in API_CASES])
def test_session_bad_input_is_one_line_and_keeps_state(backend: str, name: str, action: Callable[[Session], object],
                                                       expect: str, api_sessions: dict[str, Session]) -> None:
    session = api_sessions[backend]
    session.set_image(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    first = session.click(30, 20, True).copy()
    with pytest.raises(InputError) as info:
        action(session)
    message = str(info.value)
    assert "\n" not in message and expect.lower() in message.lower(), message
    if name == "click-25th":  # the 24 that fit went in; the 25th changed nothing
        assert len(session.clicks) == contract.NUM_CLICKS
        return
    assert session.clicks == [Click(30.0, 20.0, True)], "a refused input changed the click history"
    np.testing.assert_array_equal(session.probability, first)
    np.testing.assert_array_equal(session.click(10, 10, False), session.probability)  # still usable


@pytest.mark.parametrize("feed,expect", [
    ({contract.IMAGE: np.zeros((1, 64, 96, 3), np.float32)}, "dtype float32"),
    ({contract.IMAGE: np.zeros((1, 64, 96), np.uint8)}, "shape"),
    ({"imagee": np.zeros((1, 64, 96, 3), np.uint8)}, "differ from the contract"),
    ({contract.IMAGE: np.zeros((1, 32, 32, 3), np.uint8)}, "exported for 64x96"),
], ids=["float-image", "3d-image", "misnamed-feed", "wrong-size"])
def test_backend_run_refuses_wrong_feeds(feed: dict[str, np.ndarray], expect: str, api_sessions: dict[str, Session]) -> None:
    backend = api_sessions["onnxruntime"].backend
    with pytest.raises(ValueError) as info:
        backend.run(contract.ENCODER, feed)
    assert expect in str(info.value) and "\n" not in str(info.value)

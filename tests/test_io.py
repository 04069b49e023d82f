"""edgeclick.io: the one atomic directory publish (staging folder → destination), killed at any moment."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeclick.io import publish_dir, publishing, remove_stale_staging, staging_dir

# A child that publishes `dest` again and again, each version a few files that name their version; the
# parent kills it at some moment and checks what a reader finds.
CHILD = r"""
import sys, time
from pathlib import Path
from edgeclick.io import publishing
dest = Path(sys.argv[1])
version = 0
while True:
    version += 1
    with publishing(dest) as staging:
        for i in range(20):
            (staging / f"part{i}.txt").write_text(f"{version}\n")
        Path(sys.argv[2]).write_text(str(version))  # the parent waits for this before it kills
"""


def _versions(dest: Path) -> set[str]:
    """The versions written in `dest`'s files (one, when the directory is whole)."""
    files = sorted(dest.iterdir())
    assert len(files) == 20, f"{dest} holds {len(files)} of 20 files"
    return {f.read_text() for f in files}


def _write(staging: Path, text: str) -> None:
    (staging / "a.txt").write_text(text)
    (staging / "b.txt").write_text(text)


def test_publish_new_and_replace(tmp_path: Path) -> None:
    dest = tmp_path / "art"
    with publishing(dest) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".art.staging-")
        _write(staging, "old")
    assert (dest / "a.txt").read_text() == "old"
    with publishing(dest) as staging:
        _write(staging, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no staging, no old copy left
    assert (dest / "a.txt").read_text() == (dest / "b.txt").read_text() == "new"
    assert oct(dest.stat().st_mode & 0o777) == oct(0o755)  # an ordinary directory, not mkdtemp's private one


def test_failure_keeps_the_old_directory(tmp_path: Path) -> None:
    dest = tmp_path / "art"
    with publishing(dest) as staging:
        _write(staging, "old")
    with pytest.raises(RuntimeError, match="midway"):
        with publishing(dest) as staging:
            (staging / "a.txt").write_text("new")
            raise RuntimeError("midway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert (dest / "a.txt").read_text() == (dest / "b.txt").read_text() == "old"


def test_stale_staging_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    dest = tmp_path / "art"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".art.staging-{int(dead.stdout)}-abc"
    stale.mkdir()
    live = staging_dir(dest)  # this process is alive: its own staging folder is never stale
    other = tmp_path / f".other.staging-{int(dead.stdout)}-abc"  # another target's: not ours to remove
    other.mkdir()
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_staging(dest) == []
    publish_dir(live, dest)
    assert dest.is_dir() and not live.exists()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.45])
def test_killed_publish_leaves_a_whole_directory(tmp_path: Path, delay: float) -> None:
    """SIGKILL at some moment of a loop of publishes: `dest` is always one whole version, and the next
    publish removes what the killed one left behind."""
    dest, progress = tmp_path / "art", tmp_path / "progress"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(dest), str(progress)], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not progress.exists() or int(progress.read_text() or 0) < 2:  # at least one replace has happened
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert len(_versions(dest)) == 1  # never a mix of two versions, never missing
    with publishing(dest) as staging:
        _write(staging, "after")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (dest / "a.txt").read_text() == "after"

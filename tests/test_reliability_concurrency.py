"""Shared backends: several Sessions over one backend, driven from threads as an app server would, give the
masks (and, for these backends, the very probabilities) of the same sessions run one after another."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgeclick.model.checkpoint import load_checkpoint
from edgeclick.runtimes.backend import Backend
from edgeclick.runtimes.ort import OrtBackend
from edgeclick.runtimes.session import Session
from edgeclick.runtimes.soak import soak_images
from edgeclick.runtimes.torch_ref import TorchBackend

from .helpers import TINY_ONNX_SIZE

USERS = 6
ROUNDS = 3  # images per user, each with a scripted click session (undo included)


def user_script(user: int) -> list[tuple[np.ndarray, list[tuple[str, float, float, bool]]]]:
    """Each user's images and actions: clicks, an undo, more clicks (seeded per user, different per user)."""
    rng = np.random.default_rng(100 + user)
    images = soak_images(TINY_ONNX_SIZE, seed=user, count=ROUNDS)
    script = []
    for image in images:
        h, w = image.shape[:2]
        actions = [("click", float(rng.uniform(0, w - 1)), float(rng.uniform(0, h - 1)), bool(i % 3 != 2)) for i in range(6)]
        actions.insert(4, ("undo", 0.0, 0.0, False))
        script.append((image, actions))
    return script


def play(session: Session, user: int, barrier: threading.Barrier | None = None) -> list[np.ndarray]:
    """Run a user's script; the probabilities after every action (None after undo to zero clicks is not hit)."""
    results = []
    for image, actions in user_script(user):
        if barrier is not None:
            barrier.wait()  # all users hit the backend at the same moment, every round
        session.set_image(image)
        for kind, x, y, positive in actions:
            prob = session.click(x, y, positive) if kind == "click" else session.undo()
            assert prob is not None
            results.append(prob.copy())
    return results


@pytest.fixture(params=["torch", "onnxruntime"])
def shared_backend(request: pytest.FixtureRequest, tiny_onnx: tuple[Path, Path]) -> Backend:
    artifact, checkpoint = tiny_onnx
    if request.param == "torch":
        return TorchBackend(load_checkpoint(checkpoint), input_size=TINY_ONNX_SIZE)
    return OrtBackend(artifact, threads=1)


def test_sessions_sharing_a_backend_from_threads_match_sequential_runs(shared_backend: Backend) -> None:
    sequential = [play(Session(shared_backend), user) for user in range(USERS)]
    barrier = threading.Barrier(USERS)
    for _ in range(3):  # a few repetitions: a race would not show every time
        with ThreadPoolExecutor(max_workers=USERS) as pool:
            futures = [pool.submit(play, Session(shared_backend), user, barrier) for user in range(USERS)]
            concurrent = [f.result(timeout=120) for f in futures]
        for user in range(USERS):
            for seq, con in zip(sequential[user], concurrent[user], strict=True):
                np.testing.assert_array_equal(seq > 0.49, con > 0.49)  # same masks
                np.testing.assert_array_equal(seq, con)  # and bit-identical probabilities


def test_one_session_used_from_two_threads_is_refused(shared_backend: Backend) -> None:
    """A Session is one user's history: a second thread inside it gets an error, not a mixed history."""
    session = Session(shared_backend)
    session.set_image(soak_images(TINY_ONNX_SIZE, seed=0, count=1)[0])
    inside, release = threading.Event(), threading.Event()
    original = shared_backend.run

    def slow_run(graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inside.set()
        release.wait(10)
        return original(graph, feeds)

    session.backend = type("Slow", (), {"run": staticmethod(slow_run), "name": "slow"})()  # type: ignore[assignment]
    worker = threading.Thread(target=session.click, args=(5.0, 5.0, True))
    worker.start()
    assert inside.wait(10)
    with pytest.raises(RuntimeError, match="its own Session"):
        session.click(6.0, 6.0, True)
    release.set()
    worker.join(10)
    assert len(session.clicks) == 1  # the first click went in, the refused one did not


def test_tensorrt_backend_serialises_shared_calls() -> None:
    """TensorRT shares one execution context per graph: run() must never overlap (checked without a GPU)."""
    import time

    from edgeclick.runtimes.trt import TensorRTBackend

    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend._run_lock = threading.Lock()
    active, overlaps = [0], [0]

    def fake_run(graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        active[0] += 1
        overlaps[0] = max(overlaps[0], active[0])
        time.sleep(0.005)
        active[0] -= 1
        return {}

    backend._run = fake_run  # type: ignore[method-assign]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: backend.run("decoder", {}), range(40)))
    assert overlaps[0] == 1

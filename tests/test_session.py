"""The torch reference Session: same logits as the model, history, and clear errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeclick import contract
from edgeclick.clicks import Click
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint
from edgeclick.runtimes.backend import ContractMismatch
from edgeclick.runtimes.session import InputError, Session, open_session, sigmoid
from edgeclick.runtimes.torch_ref import TorchBackend

from .helpers import click_rows, randomize_


@pytest.fixture(params=["early", "late"])
def session(request: pytest.FixtureRequest, image_u8: np.ndarray) -> Session:
    model = randomize_(create_model("tiny", fusion=request.param), seed=5)
    s = Session(TorchBackend(model))
    s.set_image(image_u8)
    return s


def test_native_size_equals_model_forward(session: Session, image_u8: np.ndarray) -> None:
    """64×96 is already a multiple of 32: no resize, so the session computes what the model computes."""
    p1 = session.click(40, 30, True)
    p2 = session.click(10, 5, False)
    model = session.backend.model  # type: ignore[attr-defined]
    image01 = torch.from_numpy(image_u8).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        l1 = model(image01, click_rows([(40, 30, 1)]), torch.zeros(1, 1, 64, 96))[contract.LOGITS]
        prev = torch.sigmoid(l1)
        l2 = model(image01, click_rows([(40, 30, 1), (10, 5, 0)]), prev)[contract.LOGITS]
    # The session's image enters as H×W×3 uint8, a layout for which oneDNN may pick other conv kernels than for
    # image01, by CPU (measured up to 9.6e-6 with oneDNN on AVX2): the contract's fp32 logit tolerance, ×¼ by sigmoid.
    tolerance = contract.TOLERANCES["fp32"].max_abs_logit / 4
    np.testing.assert_allclose(p1, sigmoid(l1.numpy())[0, 0], rtol=0, atol=tolerance)
    np.testing.assert_allclose(p2, sigmoid(l2.numpy())[0, 0], rtol=0, atol=tolerance)


def test_history_undo_reset(session: Session) -> None:
    p1 = session.click(40, 30, True)
    session.click(10, 5, False)
    assert session.clicks == [Click(40.0, 30.0, True), Click(10.0, 5.0, False)]
    np.testing.assert_array_equal(session.undo(), p1)
    assert session.clicks == [Click(40.0, 30.0, True)]
    assert session.undo() is None and session.clicks == [] and session.probability is None
    session.click(40, 30, True)
    session.reset()
    assert session.clicks == [] and session.probability is None
    np.testing.assert_allclose(session.click(40, 30, True), p1, atol=1e-6)  # image features are kept


def test_predict_is_stateless(session: Session) -> None:
    p = session.predict([Click(40, 30, True)], None)
    assert session.clicks == []
    np.testing.assert_allclose(p, session.click(40, 30, True), atol=1e-6)


def test_resized_session_returns_original_size(image_u8: np.ndarray) -> None:
    model = randomize_(create_model("tiny", fusion="late"), seed=5)
    s = Session(TorchBackend(model, input_size=(64, 64)))
    big = np.repeat(np.repeat(image_u8, 2, axis=0), 2, axis=1)[:120, :190]
    s.set_image(big)
    prob = s.click(189, 119, True)
    assert prob.shape == (120, 190) and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1


@pytest.mark.parametrize("image,fragment", [
    (np.zeros((32, 32, 3), np.float32), "dtype float32 is not supported"),
    (np.zeros((32, 32, 2), np.uint8), "2 channels"),
    (np.zeros((2, 32, 32, 3), np.uint8), "must be H×W×3"),
    (np.zeros((1, 32, 3), np.uint8), "too small"),
])
def test_bad_images_rejected(session: Session, image: np.ndarray, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        session.set_image(image)


@pytest.mark.parametrize("convert", [
    lambda img: img[..., 0],  # grayscale H×W
    lambda img: img[..., :1],  # H×W×1
    lambda img: np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2),  # RGBA
    lambda img: img.astype(np.uint16) * 257,  # 16-bit
])
def test_convertible_images_accepted(session: Session, image_u8: np.ndarray, convert) -> None:  # type: ignore[no-untyped-def]
    session.set_image(convert(image_u8))
    assert session.image_size == (64, 96)
    assert session.click(5, 5, True).shape == (64, 96)


def test_16bit_scaled_like_8bit(session: Session, image_u8: np.ndarray) -> None:
    session.set_image(image_u8)
    ref = session.click(40, 30, True)
    session.set_image(image_u8.astype(np.uint16) * 257)
    np.testing.assert_allclose(session.click(40, 30, True), ref, atol=1e-6)


@pytest.mark.parametrize("x,y", [(-1, 5), (96, 5), (5, 64), (float("nan"), 3)])
def test_click_outside_image(session: Session, x: float, y: float) -> None:
    with pytest.raises(InputError, match="outside the 96×64 image"):
        session.click(x, y, True)
    assert session.clicks == []


def test_too_many_clicks(session: Session) -> None:
    for i in range(contract.NUM_CLICKS):
        session.click(i % 96, 3, i % 2 == 0)
    with pytest.raises(InputError, match=f"exceed the contract's {contract.NUM_CLICKS}"):
        session.click(1, 1, True)
    assert len(session.clicks) == contract.NUM_CLICKS


def test_bad_prev_mask(session: Session) -> None:
    bad = np.zeros((64, 96), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        session.predict([Click(5, 5, True)], bad)
    with pytest.raises(InputError, match="prev_mask shape"):
        session.predict([Click(5, 5, True)], np.zeros((10, 10), np.float32))
    with pytest.raises(InputError, match="probabilities in \\[0, 1\\]"):
        session.predict([Click(5, 5, True)], np.full((64, 96), 3.0, np.float32))


def test_click_before_image() -> None:
    s = Session(TorchBackend(create_model("tiny")))
    with pytest.raises(InputError, match="call set_image"):
        s.click(1, 1, True)


def test_backend_feeds_checked_against_contract(session: Session) -> None:
    backend = session.backend
    with pytest.raises(ValueError, match="dtype float32, contract says uint8"):
        backend.run(contract.ENCODER, {contract.IMAGE: np.zeros((1, 64, 96, 3), np.float32)})
    with pytest.raises(ValueError, match="differ from the contract's inputs"):
        backend.run(contract.ENCODER, {"picture": np.zeros((1, 64, 96, 3), np.uint8)})


def test_contract_mismatch_refused() -> None:
    backend = TorchBackend(create_model("tiny"))
    backend.contract_hash = "0" * 64
    with pytest.raises(ContractMismatch, match="re-export"):
        Session(backend)


def test_open_session_from_checkpoint(tmp_path, image_u8: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    model = randomize_(create_model("tiny", fusion="late"), seed=5)
    path = save_checkpoint(model, tmp_path / "m.pt")
    s = open_session(path)
    s.set_image(image_u8)
    ref = Session(TorchBackend(model))
    ref.set_image(image_u8)
    np.testing.assert_array_equal(s.click(40, 30, True), ref.click(40, 30, True))


def test_letterboxed_prev_mask_stays_a_probability() -> None:
    """Shrinking a confident 0/1 mask into the model input must not round to 1.0000001 (the decoder's
    prev_mask check refuses that; seen when evaluating 700×1000 images at 640×960)."""
    from edgeclick.preprocess import Letterbox

    rng = np.random.default_rng(0)
    for source in ((700, 1000), (70, 50), (321, 481)):
        for target in ((640, 960), (64, 96)):
            mask = (rng.random(source) > 0.5).astype(np.float32)
            out = Letterbox.fit(source, target).mask(mask)
            assert out.min() >= 0.0 and out.max() <= 1.0, (source, target, out.min(), out.max())

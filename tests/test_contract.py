"""The I/O contract: one place for names; version/hash; shapes; sizes."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgeclick import contract

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ["edgeclick", "train", "export", "runtimes", "calibration"]


def test_no_bare_tensor_names_outside_contract() -> None:
    """A bare "image"/"clicks"/"prev_mask"/"logits" string anywhere but contract.py is a bug."""
    names = {contract.IMAGE, contract.CLICKS, contract.PREV_MASK, contract.LOGITS, contract.STEM, contract.FEATURES,
             contract.DOWN_IMAGE, contract.SKIP_IMAGE, contract.ENCODER, contract.DECODER}
    offenders = []
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "contract.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, "use the contract's constants instead of literals:\n" + "\n".join(offenders)


def test_hash_is_stable_and_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    h = contract.contract_hash()
    assert len(h) == 64 and h == contract.contract_hash()
    monkeypatch.setattr(contract, "NUM_CLICKS", contract.NUM_CLICKS + 1)
    assert contract.contract_hash() != h


@pytest.mark.parametrize("fusion,adapter", [("early", False), ("early", True), ("late", False), ("late", True)])
def test_graph_specs_resolve(fusion: str, adapter: bool) -> None:
    specs = contract.graph_specs(fusion, adapter, late_channels=32, skip_channels=16)
    enc, dec = specs[contract.ENCODER], specs[contract.DECODER]
    assert enc.input_names() == [contract.IMAGE]
    assert dec.input_names()[-2:] == [contract.CLICKS, contract.PREV_MASK]
    assert dec.input_names()[:-2] == enc.output_names()
    assert dec.output_names() == [contract.LOGITS]
    assert contract.IMAGE_SPEC.resolve(640, 960) == (1, 640, 960, 3)
    assert contract.CLICKS_SPEC.resolve(640, 960) == (1, contract.NUM_CLICKS, 3)
    stride = {("early", False): 2, ("early", True): 2, ("late", False): 4, ("late", True): 8}[(fusion, adapter)]
    assert enc.outputs[0].resolve(640, 960)[2:] == (640 // stride, 960 // stride)


def test_tensorrt_profiles() -> None:
    static = contract.tensorrt_profile(contract.IMAGE_SPEC, (640, 960), dynamic=False)
    assert static == ((1, 640, 960, 3),) * 3
    lo, opt, hi = contract.tensorrt_profile(contract.IMAGE_SPEC, (640, 960), dynamic=True)
    assert lo == (1, *contract.DYNAMIC_MIN, 3) and opt == (1, 640, 960, 3) and hi == (1, *contract.DYNAMIC_MAX, 3)
    small = contract.tensorrt_profile(contract.IMAGE_SPEC, (64, 96), dynamic=True)
    assert small[0] == (1, 64, 96, 3) and small[2] == (1, *contract.DYNAMIC_MAX, 3)  # min never exceeds opt
    clicks = contract.tensorrt_profile(contract.CLICKS_SPEC, (640, 960), dynamic=True)
    assert clicks[0] == clicks[2]  # N is never dynamic


def test_coreml_types() -> None:
    assert contract.coreml_input_type(contract.IMAGE_SPEC)["kind"] == "image"
    assert contract.coreml_input_type(contract.CLICKS_SPEC) == {"kind": "tensor", "dtype": "float32"}


@pytest.mark.parametrize("h,w", [(0, 32), (100, 96), (64, 50)])
def test_size_must_be_multiple_of_32(h: int, w: int) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        contract.check_size(h, w)

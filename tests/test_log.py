"""Quiet, useful output: edgeclick's own lines always, a third party's warnings and progress bars only with
--verbose (edgeclick.log)."""
from __future__ import annotations

import logging
import sys
import types

import pytest
from tqdm import tqdm

from edgeclick import log


@pytest.fixture(autouse=True)
def _restore_root() -> object:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit() -> None:
    logging.getLogger("edgeclick.export").info("coreml: exporting")
    logging.getLogger("coremltools").warning("Failed to load _MLModelProxy")
    logging.getLogger("coremltools").debug("Removing op")
    logging.getLogger("coremltools").error("a real failure")


def test_third_party_noise_only_with_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup_logging(verbose=False)
    log.setup_logging(verbose=False)  # idempotent: one handler, one line per record
    _emit()
    assert capsys.readouterr().err.splitlines() == ["coreml: exporting", "a real failure"]
    log.setup_logging(verbose=True)
    _emit()
    assert capsys.readouterr().err.splitlines() == ["coreml: exporting", "Failed to load _MLModelProxy", "Removing op",
                                                    "a real failure"]


def test_quiet_bars_silences_a_tools_bars_for_the_block(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    tool = types.ModuleType("fake_tool")
    tool.bar = tqdm  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_tool", tool)
    log.setup_logging(verbose=False)
    with log.quiet_bars("fake_tool:bar", "no_such_module:tqdm", "fake_tool:missing"):
        list(tool.bar(range(3), desc="Converting ops", file=sys.stderr))
    assert tool.bar is tqdm and "Converting ops" not in capsys.readouterr().err
    log.setup_logging(verbose=True)
    with log.quiet_bars("fake_tool:bar"):
        list(tool.bar(range(3), desc="Converting ops", file=sys.stderr))
    assert "Converting ops" in capsys.readouterr().err

"""Native log lines reach logging.getLogger("ikllama.native") whole, at the right level."""

from __future__ import annotations

import logging

import pytest

import ikllama
from ikllama import _log
from ikllama._lib import lib


def test_fragments_are_joined_and_levels_mapped(caplog):
    caplog.set_level(logging.DEBUG, logger="ikllama.native")
    _log.handle(lib.GGML_LOG_LEVEL_INFO, "loading ")
    _log.handle(lib.GGML_LOG_LEVEL_CONT, "tensors")
    _log.handle(lib.GGML_LOG_LEVEL_CONT, "... done\nsecond line\n")
    _log.handle(lib.GGML_LOG_LEVEL_ERROR, "it broke\n")
    _log.handle(lib.GGML_LOG_LEVEL_WARN, "unterminated")
    _log.handle(lib.GGML_LOG_LEVEL_DEBUG, "next message\n")
    got = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ikllama.native"]
    assert got == [(logging.INFO, "loading tensors... done"), (logging.INFO, "second line"),
                   (logging.ERROR, "it broke"), (logging.WARNING, "unterminated"), (logging.DEBUG, "next message")]


def test_errors_are_quoted_in_exceptions():
    mark = _log.mark()
    _log.handle(lib.GGML_LOG_LEVEL_ERROR, "llama_model_load: the file is bad\n")
    assert _log.since(mark) == ["llama_model_load: the file is bad"]


def test_model_load_logs_through_logging(caplog, smollm_path):
    caplog.set_level(logging.INFO, logger="ikllama.native")
    with ikllama.ModelConfig().load_gguf(smollm_path):
        pass
    lines = [r.getMessage() for r in caplog.records if r.name == "ikllama.native"]
    assert any("llama_model_loader" in line or "llm_load" in line for line in lines)
    assert all("\n" not in line for line in lines)


def test_native_failure_message_carries_native_lines(tmp_path):
    # A well-formed file (so the validator lets it through) naming an architecture ik does not know.
    from ikllama.testing.hostile_gguf import string, tiny_llama

    path = tmp_path / "unknown-arch.gguf"
    tiny_llama().set("general.architecture", string("nonesuch")).write(path)
    with pytest.raises(ikllama.ModelLoadError) as info:
        ikllama.ModelConfig().load_gguf(path)
    assert "ik_llama.cpp said:" in str(info.value)
    assert "unknown model architecture: 'nonesuch'" in str(info.value)

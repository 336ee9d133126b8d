"""``untrusted=True``: load a model file once in a spawned child before the caller loads it.

:func:`ikllama.modelfile.check.check_gguf` rejects every malformed file it knows about; whatever it
does not know (an assert deeper in ik's vocabulary code, a tokenizer that terminates on the
first call) can still kill a process. :func:`probe_in_child` therefore starts a fresh Python
interpreter that loads the file with ``vocab_only=True``, tokenizes and detokenizes probe
strings and renders every token's piece. If that child dies by a signal, hangs or reports an
error, the caller gets a :class:`~ikllama.errors.ModelLoadError` and stays alive.

The child runs ``python -m ikllama.modelfile.untrusted PATH`` with core dumps off and a ``PATH`` without
gdb/lldb (ik's abort handler would otherwise attach a debugger for seconds before dying).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import ModelLoadError

__all__ = ["probe_in_child", "PROBE_TEXTS"]

log = logging.getLogger(__name__)

#: Strings tokenized in the child: ASCII, accents, CJK, emoji, control bytes, special-token lookalikes.
PROBE_TEXTS = (
    "Hello, world! 123 4567 890",
    " h\u00e9llo \u4e2d\u6587 \U0001f642 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \ua66e \U0001d518",
    "\x00\x01\t\n\r\x7f \u00ff\ufffd   spaces",
    "<s></s><|endoftext|><|im_start|>user<|im_end|><start_of_turn><eos><0x00>[EMPTY_0]",
)

_DEBUGGERS = ("gdb", "lldb")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    dirs = [d for d in env.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, dbg)) for dbg in _DEBUGGERS)]
    env["PATH"] = os.pathsep.join(dirs)
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def probe_in_child(path: str | os.PathLike[str], timeout: float = 120.0) -> dict:
    """Load ``path`` vocab-only in a spawned child and tokenize probe strings there (wraps
    ``llama_model_load_from_file`` and ``llama_tokenize`` in that child, never in this process).

    Returns the child's report (``n_vocab``, ``n_probe_tokens``). Raises ``ModelLoadError`` when
    the child is killed by a signal, exceeds ``timeout`` seconds or reports an error.
    """
    cmd = [sys.executable, "-m", "ikllama.modelfile.untrusted", os.fspath(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, env=_child_env(), timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"{path}: the untrusted-model probe did not finish within {timeout:.0f} s "
                             f"(a hang in ik's loader or tokenizer); refusing the file") from None
    stderr = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    tail = "\n  ".join(stderr[-6:])
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise ModelLoadError(f"{path}: loading this file killed a child process with {name}; it would have "
                             f"killed this process too. Do not load it.\n  {tail}")
    report = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines()[::-1]:
        if line.startswith("{"):
            report = json.loads(line)
            break
    if proc.returncode != 0 or not report.get("ok"):
        raise ModelLoadError(report.get("error") or f"{path}: the untrusted-model probe exited with code "
                             f"{proc.returncode}\n  {tail}")
    log.debug("untrusted probe of %s: %s", path, report)
    return report


def _child_main(path: str) -> int:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    from ..config import ModelConfig

    try:
        with ModelConfig(vocab_only=True).load_gguf(path) as model:
            n_tokens = 0
            for text in PROBE_TEXTS:
                for parse_special in (False, True):
                    ids = model.tokenize(text, add_special=True, parse_special=parse_special)
                    n_tokens += len(ids)
                    model.detokenize(ids)
            for token in range(model.n_vocab):
                model.token_to_piece(token, special=True)
            report = {"ok": True, "n_vocab": model.n_vocab, "n_probe_tokens": n_tokens}
    except ModelLoadError as exc:
        report = {"ok": False, "error": str(exc)}
    except Exception as exc:  # reported to the parent, which raises ModelLoadError
        report = {"ok": False, "error": f"{path}: the probe raised {type(exc).__name__}: {exc}"}
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 2


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))

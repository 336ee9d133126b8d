"""``ikllama.compat``: llama-cpp-python's ``llama_cpp`` package, backed by ik_llama.cpp.

Switch existing code with one line::

    from ikllama.compat import Llama          # instead of: from llama_cpp import Llama

or make ``import llama_cpp`` itself resolve here (for code you cannot edit)::

    import ikllama.compat; ikllama.compat.install()   # this process
    python -m ikllama.compat enable                    # this environment, until `disable`

Importing this package loads nothing native; names resolve on first use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import warnings
from typing import Any

__version__ = "0.3.36"

logger = logging.getLogger("ikllama.compat")

SUBMODULES = ("llama", "llama_types", "llama_grammar", "llama_cache", "llama_chat_format", "llama_speculative",
              "llama_tokenizer", "llama_cpp", "_internals")

_EXPORTS = {
    "Llama": "llama", "LlamaState": "llama_cache", "LogitsProcessorList": "llama",
    "StoppingCriteriaList": "llama", "LogitsProcessor": "llama", "StoppingCriteria": "llama",
    "LlamaGrammar": "llama_grammar", "BaseLlamaCache": "llama_cache", "LlamaRAMCache": "llama_cache",
    "LlamaDiskCache": "llama_cache", "LlamaCache": "llama_cache", "LlamaTokenizer": "llama_tokenizer",
    "BaseLlamaTokenizer": "llama_tokenizer", "LlamaPromptLookupDecoding": "llama_speculative",
    "LlamaDraftModel": "llama_speculative",
}

__all__ = ["__version__", "install", "uninstall", "installed", *_EXPORTS, *SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        types = importlib.import_module(".llama_types", __name__)
        if hasattr(types, name):  # llama_cpp re-exports its TypedDicts at the top level
            return getattr(types, name)
        cpp = importlib.import_module(".llama_cpp", __name__)
        return getattr(cpp, name)  # constants; raises AttributeError naming a replacement otherwise
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``llama_cpp`` and ``llama_cpp.<sub>`` to this package and its submodules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "llama_cpp" and not fullname.startswith("llama_cpp."):
            return None
        target_name = __name__ + fullname[len("llama_cpp"):]
        if importlib.util.find_spec(target_name) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=target_name)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(spec.origin)

    def exec_module(self, module: Any) -> None:
        return None


_finder: _Alias | None = None


def installed() -> bool:
    """Whether ``import llama_cpp`` resolves to this package in this process."""
    return _finder is not None and _finder in sys.meta_path


def install() -> bool:
    """Make ``import llama_cpp`` (and ``llama_cpp.llama`` & co.) give this package in this process.

    Does nothing and warns when a real llama-cpp-python is already imported; returns whether the
    alias is active. Reverse with :func:`uninstall`.
    """
    global _finder
    current = sys.modules.get("llama_cpp")
    if current is not None and current is not sys.modules[__name__]:
        warnings.warn("llama_cpp (llama-cpp-python) is already imported; ikllama.compat.install() left it in place",
                      RuntimeWarning, stacklevel=2)
        return False
    if installed():
        return True
    _finder = _Alias()
    sys.meta_path.insert(0, _finder)
    sys.modules["llama_cpp"] = sys.modules[__name__]
    logger.debug("import llama_cpp now resolves to ikllama.compat")
    return True


def uninstall() -> None:
    """Undo :func:`install`: forget the ``llama_cpp`` alias and the submodule aliases."""
    global _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    me = sys.modules[__name__]
    for name in [n for n in sys.modules if n == "llama_cpp" or n.startswith("llama_cpp.")]:
        mod = sys.modules[name]
        if mod is me or getattr(mod, "__name__", "").startswith(__name__):
            del sys.modules[name]

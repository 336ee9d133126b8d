"""The ``ikllama`` command line (``python -m ikllama COMMAND``): one module per command.

Every module of this package that defines ``register(subparsers)`` is a command; it adds its own
sub-parser and sets ``func`` to the function that runs it. Command modules import nothing heavy at
module level, so that ``ikllama --help`` stays instant and a missing optional extra only affects
the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

__all__ = ["main", "build_parser"]


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikllama", description="Run ik_llama.cpp from Python.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _command_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

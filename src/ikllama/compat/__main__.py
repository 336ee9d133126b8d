"""``python -m ikllama.compat enable|disable|status [--site-dir DIR]``: make ``import llama_cpp``
resolve to ikllama.compat in one environment, through a one-line ``.pth`` file (reversible)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "ikllama_compat_llama_cpp.pth"
PTH_LINE = "import ikllama.compat as _ikc; _ikc.install()\n"


def real_llama_cpp() -> str | None:
    """Where a real llama-cpp-python is installed in this environment, if anywhere."""
    spec = importlib.util.find_spec("llama_cpp") if "llama_cpp" not in sys.modules else None
    if spec is None or spec.origin is None or "ikllama" in spec.origin:
        return None
    return spec.origin


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m ikllama.compat", description=__doc__)
    p.add_argument("action", choices=("enable", "disable", "status"))
    p.add_argument("--site-dir", default=sysconfig.get_paths()["purelib"],
                   help="site-packages directory for the .pth file (default: this interpreter's)")
    args = p.parse_args(argv)
    pth = Path(args.site_dir) / PTH_NAME
    if args.action == "status":
        print(f"enabled: {pth}" if pth.exists() else "disabled")
        return 0
    if args.action == "disable":
        if pth.exists():
            pth.unlink()
            print(f"removed {pth}")
        else:
            print("already disabled")
        return 0
    real = real_llama_cpp()
    if real is not None:
        print(f"llama-cpp-python is installed here ({real}); uninstall it first (pip uninstall llama-cpp-python) "
              "or use ikllama.compat.install() in your own code", file=sys.stderr)
        return 1
    if not pth.parent.is_dir():
        print(f"{pth.parent} is not a directory; pass --site-dir", file=sys.stderr)
        return 2
    pth.write_text(PTH_LINE, encoding="utf-8")
    print(f"wrote {pth}: `import llama_cpp` now gives ikllama.compat (undo: python -m ikllama.compat disable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

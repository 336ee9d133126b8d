"""Backend plugins and the one native build a process uses (``IKLLAMA_DEVICE``).

ik's ggml has no dynamic backend loading, so a GPU backend is a whole native set (libllama, libggml and the cffi
module) shipped by a plugin distribution (``ikllama-vulkan``, ``ikllama-cuda12``, ``ikllama-cuda13``) and found
through the ``ikllama.backends`` entry-point group. :func:`select` runs once, at the first use of
``ikllama._lib.ffi``/``lib``, before any native library of ikllama's is loaded:

* ``IKLLAMA_DEVICE=auto`` (default): the first of cuda13, cuda12, vulkan that is installed, matches the core's
  version, passes its probe and sees at least one device; otherwise the core's CPU build, with one log line.
* ``cpu``: the core's build. ``vulkan``, ``cuda12``, ``cuda13``, ``cuda`` (either CUDA plugin): that backend or a
  :class:`~ikllama.errors.DeviceError` naming why it cannot run and the fix.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .._version import __version__
from ..errors import DeviceError
from . import probe

__all__ = ["GROUP", "DEVICES", "PluginInfo", "DeviceInfo", "Selection", "requested_device", "discover", "select"]

log = logging.getLogger("ikllama")

GROUP = "ikllama.backends"
# plugin name -> the ggml backend it carries (and the extra that installs it)
KNOWN = {"cuda13": "cuda", "cuda12": "cuda", "vulkan": "vulkan"}
EXTRA = {"cuda13": "cuda13", "cuda12": "cuda", "vulkan": "vulkan"}
AUTO_ORDER = ("cuda13", "cuda12", "vulkan")
DEVICES = ("auto", "cpu", "vulkan", "cuda", "cuda12", "cuda13")


class _Unusable(Exception):
    """A candidate plugin cannot run here; the message says why and how to fix it."""


@dataclass(frozen=True)
class PluginInfo:
    """An installed backend plugin and what selection made of it (``selected``, ``skipped: ...``, ``not tried``)."""

    name: str
    distribution: str
    version: str
    status: str


@dataclass(frozen=True)
class DeviceInfo:
    """One GPU device as ggml reports it (``ggml_backend_*_get_device_description`` / ``_get_device_memory``)."""

    index: int
    description: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Selection:
    """The native build this process uses; ``module`` is the compiled cffi module (has ``ffi`` and ``lib``)."""

    device: str
    package: str
    module: Any = field(repr=False, compare=False)
    plugins: tuple[PluginInfo, ...] = ()
    gpu_devices: tuple[DeviceInfo, ...] = ()


def requested_device() -> str:
    """``IKLLAMA_DEVICE`` normalized; an unknown value raises :class:`DeviceError` listing the valid ones."""
    raw = os.environ.get("IKLLAMA_DEVICE", "")
    want = raw.strip().lower() or "auto"
    if want not in DEVICES:
        raise DeviceError(f"IKLLAMA_DEVICE={raw!r} is not a device. Valid values: {', '.join(DEVICES)}.")
    return want


def discover() -> dict[str, EntryPoint]:
    """Installed backend plugins by name (``ikllama.backends`` entry points); imports nothing."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name not in KNOWN:
            log.warning("ignoring ikllama backend plugin %r (%s): this ikllama knows only %s",
                        ep.name, ep.value, ", ".join(KNOWN))
        elif ep.name in found:
            log.warning("two distributions provide ikllama's %s backend; using %s", ep.name, found[ep.name].value)
        else:
            found[ep.name] = ep
    return found


def _dist(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return f"ikllama-{ep.name}", "unknown"
    return dist.metadata["Name"] or f"ikllama-{ep.name}", dist.version


def _candidates(want: str, found: dict[str, EntryPoint]) -> list[str]:
    if want == "cpu":
        return []
    if want == "auto":
        return [n for n in AUTO_ORDER if n in found]
    names = [n for n in AUTO_ORDER if want in (n, KNOWN[n])]
    have = [n for n in names if n in found]
    if not have:
        extra = "cuda" if want == "cuda" else EXTRA[want]
        raise DeviceError(f"IKLLAMA_DEVICE={want}: no {want} backend is installed. "
                          f"Fix: pip install \"ikllama[{extra}]\" (or unset IKLLAMA_DEVICE to run on the CPU).")
    return have


def gpu_devices(module: Any, backend: str) -> tuple[DeviceInfo, ...]:
    """The GPU devices a compiled module's ggml sees (wraps ``ikl_gpu_device_count`` / ``ikl_gpu_device_info``).

    Raises :class:`_Unusable` when there is none: ik's Vulkan build crashes at model load without a device.
    """
    ffi, lib = module.ffi, module.lib
    err = ffi.new("char[512]")
    count = int(lib.ikl_gpu_device_count(err, 512))
    if count < 0:
        hint = ("check the driver with vulkaninfo (and VK_ICD_FILENAMES / GGML_VK_VISIBLE_DEVICES if set)"
                if backend == "vulkan" else "check the driver with nvidia-smi")
        raise _Unusable(f"ggml's {backend} device query failed ({ffi.string(err).decode(errors='replace')}); "
                        f"fix: {hint}, or set IKLLAMA_DEVICE=cpu")
    if count == 0:
        hint = ("ggml skips CPU devices such as Mesa's lavapipe/llvmpipe: select one with GGML_VK_VISIBLE_DEVICES=0, "
                "or install a GPU driver" if backend == "vulkan" else "check the driver (nvidia-smi)")
        raise _Unusable(f"no usable {backend} device; fix: {hint}, or set IKLLAMA_DEVICE=cpu")
    desc = ffi.new("char[256]")
    free, total = ffi.new("size_t *"), ffi.new("size_t *")
    devices = []
    for i in range(count):
        ok = lib.ikl_gpu_device_info(i, desc, 256, free, total) == 0
        text = ffi.string(desc).decode(errors="replace")
        devices.append(DeviceInfo(i, text if ok else f"(unknown: {text})", int(free[0]), int(total[0])))
    return tuple(devices)


def _load(name: str, ep: EntryPoint, check_build: Callable[[Any, str], None]) -> tuple[Any, tuple]:
    dist, version = _dist(ep)
    if version != __version__:
        raise _Unusable(f"{dist} is version {version} but ikllama is {__version__}; "
                        f"fix: pip install \"{dist}=={__version__}\"")
    problem = probe.vulkan_problem() if KNOWN[name] == "vulkan" else probe.cuda_problem()
    if problem:
        raise _Unusable(problem)
    try:
        package = ep.load()
        module = importlib.import_module(f"{package.__name__}._ikllama_cffi")
    except (ImportError, OSError, AttributeError) as exc:
        raise _Unusable(f"its native library failed to load ({exc}); fix: pip install --force-reinstall "
                        f"\"{dist}=={__version__}\"") from None
    try:
        check_build(module, dist)
    except ImportError as exc:
        raise _Unusable(str(exc)) from None
    return module, gpu_devices(module, KNOWN[name])


def select(load_core: Callable[[], Any], check_build: Callable[[Any, str], None]) -> Selection:
    """Choose and load the native build for this process (see the module docstring).

    ``load_core`` imports the core's compiled module; ``check_build(module, distribution)`` raises ImportError on
    a stale or foreign build. Everything here is loaded once per process and lives until it exits.
    """
    want = requested_device()
    found = discover()
    order = _candidates(want, found)
    status = {name: "not tried" for name in found}
    chosen = None
    failures = []
    for name in order:
        try:
            module, devices = _load(name, found[name], check_build)
        except _Unusable as exc:
            dist, version = _dist(found[name])
            failures.append(f"the {name} backend ({dist} {version}) cannot run: {exc}")
            status[name] = f"skipped: {exc}"
            continue
        status[name] = "selected"
        chosen = Selection(name, module.__name__.rpartition(".")[0], module, gpu_devices=devices)
        break
    if chosen is None and failures and want != "auto":  # an explicit GPU device: every candidate failed
        raise DeviceError(f"IKLLAMA_DEVICE={want}: " + "; and ".join(failures))
    if chosen is None:
        module = load_core()
        check_build(module, "ikllama")
        backend = module.ffi.string(module.lib.ikl_gpu_backend()).decode()
        devices: tuple[DeviceInfo, ...] = ()
        if backend:  # a monolithic GPU build (IKLLAMA_BACKEND=cuda|vulkan|metal pip install .)
            try:
                devices = gpu_devices(module, backend)
            except _Unusable as exc:
                if backend == "vulkan":  # ik's Vulkan build crashes at model load without a device
                    raise DeviceError(f"this ikllama was built with vulkan and cannot run: {exc}") from None
                log.warning("this ikllama was built with %s but sees no device; layers stay on the CPU (%s)",
                            backend, exc)
        skipped = [f"{n}: {s[len('skipped: '):]}" for n, s in status.items() if s.startswith("skipped")]
        if skipped:
            log.warning("no usable GPU backend, running on the CPU (%s)", "; ".join(skipped))
        chosen = Selection(backend or "cpu", "ikllama", module, gpu_devices=devices)
    plugins = tuple(PluginInfo(n, *_dist(found[n]), status[n]) for n in sorted(found))
    return Selection(chosen.device, chosen.package, chosen.module, plugins, chosen.gpu_devices)

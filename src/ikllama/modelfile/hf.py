"""GGUF files from the Hugging Face Hub (the optional ``hf`` extra: ``huggingface_hub``).

:func:`hf_file` resolves a file name or a glob in a model repository to one GGUF model, fetches it
into the Hugging Face cache (every shard of a split model), and returns the local path. With
``HF_HUB_OFFLINE=1`` only the cache (``HF_HUB_CACHE``) is consulted, so nothing touches the network.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ModelFetchError

__all__ = ["hf_file", "hf_offline"]

logger = logging.getLogger("ikllama")

_SHARD = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_TRUE = {"1", "true", "yes", "on"}


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ImportError("Hugging Face downloads need huggingface_hub: pip install 'ikllama[hf]'") from exc
    return huggingface_hub


def hf_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read at each call, not only when huggingface_hub is imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    hub = _hub()
    return bool(getattr(hub.constants, "HF_HUB_OFFLINE", False))


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> str | None:
    return str(cache_dir) if cache_dir is not None else os.environ.get("HF_HUB_CACHE") or None


def _explain(exc: Exception, repo_id: str, what: str) -> ModelFetchError:
    hub = _hub()
    errors = hub.errors
    if isinstance(exc, errors.GatedRepoError):
        return ModelFetchError(f"{repo_id} is gated: accept its terms on huggingface.co and log in "
                               f"(`hf auth login` or HF_TOKEN) to fetch {what}")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return ModelFetchError(f"Hugging Face repository {repo_id} not found (or private: log in with HF_TOKEN)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return ModelFetchError(f"{repo_id}: revision not found while fetching {what}")
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        return ModelFetchError(f"{what} from {repo_id} is not in the Hugging Face cache and downloads are off "
                               "(HF_HUB_OFFLINE=1 or no network). Fix: fetch it once online, or point "
                               "HF_HUB_CACHE at a cache that has it.")
    if isinstance(exc, errors.EntryNotFoundError):
        return ModelFetchError(f"{repo_id} has no {what}")
    return ModelFetchError(f"could not fetch {what} from {repo_id}: {exc}")


def _repo_files(repo_id: str, revision: str | None, cache_dir: str | None, offline: bool, token: Any) -> list[str]:
    hub = _hub()
    try:
        if offline:
            snap = Path(hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                              local_files_only=True))
            return sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file() or p.is_symlink())
        return sorted(hub.HfApi(token=token).list_repo_files(repo_id, revision=revision))
    except Exception as exc:  # huggingface_hub raises many kinds; each becomes one clear message
        raise _explain(exc, repo_id, "the file list") from exc


def _group(name: str) -> str:
    m = _SHARD.match(name)
    return f"{m.group('prefix')}-*-of-{m.group('count')}.gguf" if m else name


def _select(files: list[str], pattern: str, repo_id: str) -> list[str]:
    """The file(s) of the one model that ``pattern`` names: a file name, a path or a glob."""
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    has_glob = any(c in pattern for c in "*?[")
    if has_glob:
        matched = [f for f in ggufs if fnmatch.fnmatch(f, pattern) or fnmatch.fnmatch(f.rsplit("/", 1)[-1], pattern)]
    else:
        matched = [f for f in files if f == pattern or f.rsplit("/", 1)[-1] == pattern]
    if not matched:
        shown = ", ".join(ggufs[:20]) or "none"
        raise ModelFetchError(f"{repo_id} has no file matching {pattern!r}; its GGUF files: {shown}")
    groups: dict[str, list[str]] = {}
    for f in matched:
        groups.setdefault(_group(f), []).append(f)
    if len(groups) > 1:
        raise ModelFetchError(f"{pattern!r} matches {len(groups)} models in {repo_id}: {', '.join(groups)}. "
                              "Fix: give a more specific file name or glob.")
    key, chosen = next(iter(groups.items()))
    if key != chosen[0]:  # a split model: every shard, whichever one was named
        m = _SHARD.match(chosen[0])
        assert m is not None
        count = int(m.group("count"))
        chosen = [f"{m.group('prefix')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
        missing = [f for f in chosen if f not in files]
        if missing:
            raise ModelFetchError(f"{repo_id}: split model {key} lacks shard(s) {', '.join(missing)}")
    return chosen


def hf_file(repo_id: str, filename_or_glob: str, revision: str | None = None, *,
            cache_dir: str | os.PathLike[str] | None = None, token: str | bool | None = None) -> Path:
    """Local path of a GGUF model in a Hugging Face repository, fetched into the HF cache if needed.

    ``filename_or_glob`` is a file name (``"model-Q4_K_M.gguf"``) or a glob (``"*q4_k_m*.gguf"``) that
    must name exactly one model: a glob matching several quantizations raises
    :class:`~ikllama.errors.ModelFetchError` listing them. For a split model every shard is fetched and
    the first shard's path is returned (load that; ik finds the others beside it). Uses
    ``huggingface_hub.hf_hub_download``; no native call. The file stays in the cache.
    """
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id {repo_id!r} must look like 'owner/name'")
    if not isinstance(filename_or_glob, str) or not filename_or_glob.strip():
        raise ValueError("filename_or_glob must be a file name or a glob such as '*Q4_K_M*.gguf'")
    hub = _hub()
    offline = hf_offline()
    cache = _cache_dir(cache_dir)
    names = _select(_repo_files(repo_id, revision, cache, offline, token), filename_or_glob.strip(), repo_id)
    paths = []
    for name in names:
        try:
            local = hub.hf_hub_download(repo_id, name, revision=revision, cache_dir=cache,
                                        local_files_only=offline, token=token)
        except Exception as exc:
            raise _explain(exc, repo_id, name) from exc
        paths.append(Path(local))
    logger.info("hf_file %s/%s -> %s (%d file(s))", repo_id, names[0], paths[0], len(paths))
    return paths[0]

"""ikllama's exception hierarchy and the one place that turns native failures into exceptions.

ik has no last-error API: failures are reported through return codes and log lines. The
translators here attach the native ERROR lines logged since the failing call started (see
``_log.recent_errors``) so that a message carries what the C side said.
"""

from __future__ import annotations

__all__ = [
    "IkLlamaError", "ModelLoadError", "ModelFetchError", "ContextError", "DecodeError", "KvCacheFullError",
    "DecodeAbortedError", "TokenizationError", "TemplateError", "StateError", "ClosedError",
    "UnsupportedConfigError", "ConcurrentUseError", "RpcError", "RpcPeerError", "RpcConnectionLostError",
    "DeviceError",
]


class IkLlamaError(Exception):
    """Root of every error ikllama raises itself."""


class ModelLoadError(IkLlamaError):
    """``llama_model_load_from_file`` failed (or the load was cancelled)."""


class ModelFetchError(IkLlamaError):
    """A model package could not be fetched or did not verify."""


class ContextError(IkLlamaError):
    """``llama_init_from_model`` returned NULL."""


class DecodeError(IkLlamaError):
    """``llama_decode`` returned an error code (``code``)."""

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        self.code = code


class KvCacheFullError(DecodeError):
    """No KV-cache slot for the batch (``llama_decode`` returned 1). Free cells or use a larger n_ctx."""


class DecodeAbortedError(DecodeError):
    """The decode was cancelled through ``Context.abort()``."""


class TokenizationError(IkLlamaError):
    """Tokenizing or detokenizing failed."""


class TemplateError(IkLlamaError):
    """A chat template could not be rendered."""


class StateError(IkLlamaError):
    """State bytes or a state file were rejected (foreign, truncated or corrupted)."""


class ClosedError(IkLlamaError):
    """The object was closed; create a new one."""


class UnsupportedConfigError(IkLlamaError, ValueError):
    """A parameter combination that ik would abort on (or that this build cannot run)."""


class ConcurrentUseError(IkLlamaError, RuntimeError):
    """An object that is not thread-safe was entered from a second thread while in use."""


class RpcError(IkLlamaError):
    """A ggml RPC peer failed; ``peer`` names it (``host:port``) when known."""

    def __init__(self, message: str, peer: str | None = None):
        super().__init__(message)
        self.peer = peer


class RpcPeerError(RpcError, ModelLoadError):
    """An RPC peer could not be used for a load: unreachable, not an rpc-server, busy, or without the device."""


class RpcConnectionLostError(RpcError, DecodeError):
    """An RPC peer failed while a context used it (killed, network gone, no reply within ``rpc_timeout``).

    The context and its model are unusable from then on (their remote weights and KV are gone with the
    connection); close them, which is safe, and load the model again.
    """

    def __init__(self, message: str, peer: str | None = None, code: int = -3):
        RpcError.__init__(self, message, peer)
        self.code = code


class DeviceError(IkLlamaError, RuntimeError):
    """``IKLLAMA_DEVICE`` asks for a backend that is not installed or cannot run here; the message names the fix."""


def with_native(message: str, native: list[str]) -> str:
    """``message`` followed by the native log lines that explain it, if any."""
    if not native:
        return message
    return message + "\nik_llama.cpp said:\n  " + "\n  ".join(native[-8:])

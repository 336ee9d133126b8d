"""The order of the cdef files, shared by the build script and the import-time stale-build check."""

# Order matters: later files use the types of earlier ones.
DECL_ORDER = ("types", "backend", "model", "meta", "context", "batch", "vocab", "chat", "sampling", "grammar",
              "kv", "state", "lora", "timings", "quantize", "rpc", "mtp", "callbacks", "ikllama")

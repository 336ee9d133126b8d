"""Which native build this process runs: GPU plugin discovery and selection (:mod:`.plugins`) and the
driver probes that run before any plugin library loads (:mod:`.probe`). Importing it loads nothing native."""

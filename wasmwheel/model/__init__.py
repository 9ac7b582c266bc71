"""The data wasmwheel works on: ABI files, recipes, settings, where files go, step facts, errors."""

"""The audit step: what the ABI's Pyodide would refuse in a wheel (wasm reader, loader model, runtime exports)."""

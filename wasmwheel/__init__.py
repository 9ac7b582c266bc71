"""wasmwheel: recipes and a doit pipeline that turn Rust/PyO3 crates into Pyodide wheels."""

__version__ = "0.1.0"

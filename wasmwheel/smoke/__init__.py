"""The smoke steps: a wheel's test in the ABI's Pyodide, under Node (smoke server) or in Chromium."""

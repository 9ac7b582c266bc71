"""The index: PEP 503/691 pages and pyodide-lock.json of the tested wheels, and `doit serve`."""

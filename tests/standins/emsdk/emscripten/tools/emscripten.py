# Stand-in for Emscripten's tools/emscripten.py: the emsdk stand-in installs it, and the tests patch it
# the way Pyodide patches the real one.


def check_exports(settings, exports):
  for name in exports:
    if not name.isidentifier():
      raise SystemExit(f'invalid export name: {name}')

// Write a memory snapshot of a freshly booted Pyodide interpreter.
//
//   node make-snapshot.mjs <.../node_modules/pyodide> <output file> [<probe wheel>]
//
// Booting from the snapshot skips Python's start-up (seconds). The caller renames the
// output into place, so a half-written snapshot is never used.
//
// With a probe wheel (the smallest pure-Python wheel), the snapshot also holds the
// standard-library modules Pyodide's package loader imports the first time it installs
// a wheel (importlib.metadata, tarfile, email, ... : most of the cost of a first
// install). They are found by installing the probe in a throw-away interpreter booted
// from the plain snapshot. Every smoke job installs at least one wheel before its test
// runs, so at test time the interpreter is in the same state either way; nothing is
// installed, nothing is bound in __main__.
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [runtime, output, probe] = process.argv.slice(2);
const start = performance.now();
const { loadPyodide } = await import(pathToFileURL(path.join(runtime, "pyodide.mjs")).href);
if (typeof loadPyodide !== "function") throw new Error(`${runtime}/pyodide.mjs has no loadPyodide`);
const pyodide = await loadPyodide({ _makeSnapshot: true });
if (typeof pyodide.makeMemorySnapshot !== "function") {
  console.log(`Pyodide ${pyodide.version} has no makeMemorySnapshot`);
  process.exit(3);
}
let snapshot = pyodide.makeMemorySnapshot();
if (probe) {
  const fresh = await loadPyodide({ _loadSnapshot: snapshot });
  const modules = () => new Set(fresh.runPython("import sys; sorted(sys.modules)").toJs());
  const before = modules();
  await fresh.loadPackage(pathToFileURL(probe).href, { messageCallback: () => {}, checkIntegrity: false });
  const imported = [...modules()].filter((name) => !before.has(name)).sort();
  for (const name of imported) pyodide.pyimport(name).destroy();
  console.log(`the package loader imports (now in the snapshot): ${imported.join(", ") || "nothing"}`);
  snapshot = pyodide.makeMemorySnapshot();
}
writeFileSync(output, snapshot);
console.log(`snapshot of Pyodide ${pyodide.version}: ${snapshot.length} bytes in ${Math.round(performance.now() - start)} ms`);
process.exit(0);

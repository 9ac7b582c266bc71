// Write a memory snapshot of a freshly booted Pyodide interpreter.
//
//   node make-snapshot.mjs <.../node_modules/pyodide> <output file>
//
// Booting from the snapshot skips Python's start-up (seconds) and gives exactly the
// state of a fresh boot: nothing has been imported or installed yet. The caller
// renames the output into place, so a half-written snapshot is never used.
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [runtime, output] = process.argv.slice(2);
const start = performance.now();
const { loadPyodide } = await import(pathToFileURL(path.join(runtime, "pyodide.mjs")).href);
if (typeof loadPyodide !== "function") throw new Error(`${runtime}/pyodide.mjs has no loadPyodide`);
const pyodide = await loadPyodide({ _makeSnapshot: true });
if (typeof pyodide.makeMemorySnapshot !== "function") {
  console.log(`Pyodide ${pyodide.version} has no makeMemorySnapshot`);
  process.exit(3);
}
const snapshot = pyodide.makeMemorySnapshot();
writeFileSync(output, snapshot);
console.log(`snapshot of Pyodide ${pyodide.version}: ${snapshot.length} bytes in ${Math.round(performance.now() - start)} ms`);
process.exit(0);

// Test helper: boot a Pyodide runtime with a custom lock file, loadPackage(name), run code.
//   node pyodide_lock_load.mjs RUNTIME_DIR LOCK_PATH PACKAGE CODE [PACKAGE_CACHE_DIR]
// Prints "RESULT <repr>" or "ERROR <message>" (and exits 1).
import path from "node:path";
import { pathToFileURL } from "node:url";

const [runtime, lock, pkg, code, cacheDir] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(path.join(runtime, "pyodide.mjs")).href);
const errors = [];
try {
  const options = { lockFileURL: lock };
  if (cacheDir) options.packageCacheDir = cacheDir;
  const pyodide = await loadPyodide(options);
  await pyodide.loadPackage(pkg, { messageCallback: () => {}, errorCallback: (m) => errors.push(String(m)) });
  if (errors.length) throw new Error(errors.join("\n"));
  console.log("RESULT " + pyodide.runPython(code));
} catch (err) {
  console.log("ERROR " + (err && err.message ? err.message : String(err)));
  process.exit(1);
}

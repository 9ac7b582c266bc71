// Smoke-test wheels in a real Pyodide runtime under Node.
//
//   node smoke.mjs JOB.json
//
// JOB: {"runtime": "<.../node_modules/pyodide>", "wheels": ["/abs/a.whl", ...],
//       "script": "<python code>"}
// Installs the wheels in order from file URLs, then runs the script. The last
// line of stdout is "WASMWHEEL-RESULT <json>": {ok, stage, error, load_errors}.
// loadPackage does not throw when a shared library fails to load: it hands the
// real error to errorCallback, which is what we report (not the later, misleading
// "dynamic module does not define module export function").
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const result = (obj) => {
  process.stdout.write("\nWASMWHEEL-RESULT " + JSON.stringify(obj) + "\n");
};

let stage = "boot";
try {
  const { loadPyodide } = await import(pathToFileURL(path.join(job.runtime, "pyodide.mjs")).href);
  const pyodide = await loadPyodide({
    stdout: (s) => console.log(s),
    stderr: (s) => console.log(s),
  });
  stage = "load";
  const loadErrors = [];
  for (const wheel of job.wheels) {
    await pyodide.loadPackage(pathToFileURL(wheel).href, {
      messageCallback: (m) => console.log(m),
      errorCallback: (m) => {
        console.log(m);
        loadErrors.push(String(m));
      },
    });
  }
  if (loadErrors.length) {
    result({ ok: false, stage, error: loadErrors.join("\n"), load_errors: loadErrors });
    process.exit(1);
  }
  stage = "test";
  await pyodide.runPythonAsync(job.script);
  result({ ok: true, stage });
  process.exit(0);
} catch (err) {
  const message = err && err.message ? err.message : String(err);
  console.log(message);
  result({ ok: false, stage, error: message, load_errors: [] });
  process.exit(1);
}

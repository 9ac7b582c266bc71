// Smoke-test wheels in a real Pyodide runtime: one Node process for one job.
//
//   node smoke.mjs JOB.json
//
// JOB: {"runtime": "<.../node_modules/pyodide>", "snapshot": "<boot snapshot file>"|null,
//       "wheels": [{"name", "url"}], "script": "<python code>", "filename": "<shown in tracebacks>"}
// Everything the runtime and the test print goes to stdout; the last line is
// "WASMWHEEL-RESULT <json>" (see smoke-core.mjs). This is the slow, simple path
// (a boot per wheel); the per-runtime server (smoke-server.mjs) is the fast one.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";
import { RESULT_PREFIX, bootOptions, outcomeOf, runJob, uncaught } from "./smoke-core.mjs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = (text) => process.stdout.write(text);
const finish = (result) => {
  process.stdout.write("\n" + RESULT_PREFIX + JSON.stringify(result) + "\n", () => process.exit(result.ok ? 0 : 1));
};

// Errors nothing caught end the test with what they mean (smoke-core.mjs); before it
// runs, they end the boot.
let running = false;
const onUncaught = (err) => {
  if (running) return uncaught.report(err);
  const result = outcomeOf(err);
  finish({ ...result, ok: false, stage: "boot", load_errors: [] });
};
process.on("uncaughtException", onUncaught);
process.on("unhandledRejection", onUncaught);

let pyodide;
const start = performance.now();
try {
  const { loadPyodide } = await import(pathToFileURL(path.join(job.runtime, "pyodide.mjs")).href);
  if (job.snapshot) {
    try {
      pyodide = await loadPyodide(bootOptions(out, readFileSync(job.snapshot)));
    } catch (err) {
      out(`# booting from the snapshot ${job.snapshot} failed (${err && err.message}); booting normally\n`);
    }
  }
  if (!pyodide) pyodide = await loadPyodide(bootOptions(out, null));
} catch (err) {
  const message = err && err.stack ? err.stack : String(err);
  out(message + "\n");
  finish({ ok: false, stage: "boot", error: message, load_errors: [] });
}
if (pyodide) {
  const boot = Math.round(performance.now() - start) / 1000;
  running = true;
  const result = await runJob(pyodide, job, out);
  result.timings.boot = boot;
  finish(result);
}

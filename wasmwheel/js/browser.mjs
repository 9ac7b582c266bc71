// The smoke test page for headless Chromium (see wasmwheel/browser.py).
//
// The page comes from one local origin; the runtime and the wheels from another
// that sends CORS headers, as a CDN would. The page reports back to its own origin:
// POST /output (text, in order), /started (after the boot), /result (JSON).
import { bootOptions, runJob } from "./smoke-core.mjs";

let chain = Promise.resolve();
let pending = "";
let flushTimer = null;

function post(path, body) {
  chain = chain.then(() => fetch(path, { method: "POST", body }).then(() => {}, () => {}));
  return chain;
}

function flush() {
  flushTimer = null;
  if (!pending) return chain;
  const text = pending;
  pending = "";
  return post("/output", text);
}

function out(text) {
  pending += text;
  if (!flushTimer) flushTimer = setTimeout(flush, 50);
}

let reported = false;
async function report(result) {
  if (reported) return;
  reported = true;
  await flush();
  await post("/result", JSON.stringify(result));
}

const describe = (err) => (err && err.stack ? err.stack : String(err && err.message ? err.message : err));
addEventListener("error", (event) => report({ ok: false, stage: "crash", error: describe(event.error || event.message),
                                              load_errors: [] }));
addEventListener("unhandledrejection", (event) => report({ ok: false, stage: "crash", error: describe(event.reason),
                                                           load_errors: [] }));

const job = await (await fetch("/job.json")).json();
let pyodide;
const start = performance.now();
try {
  out(`# ${navigator.userAgent}\n# booting Pyodide from ${job.runtime_url}\n`);
  const { loadPyodide } = await import(job.runtime_url + "pyodide.mjs");
  pyodide = await loadPyodide({ indexURL: job.runtime_url, ...bootOptions(out, null) });
} catch (err) {
  out(describe(err) + "\n");
  await report({ ok: false, stage: "boot", error: describe(err), load_errors: [] });
}
if (pyodide) {
  const boot = Math.round(performance.now() - start) / 1000;
  await post("/started", JSON.stringify({ boot }));
  const result = await runJob(pyodide, job, out);
  result.timings.boot = boot;
  await report(result);
}

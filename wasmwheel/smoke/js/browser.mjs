// The smoke test page for headless Chromium (see wasmwheel/browser.py).
//
// The page comes from one local origin; the runtime and the wheels from another
// that sends CORS headers, as a CDN would. The page reports back to its own origin:
// POST /output (text, in order), /started (after the boot), /result (JSON).
import { bootOptions, outcomeOf, runJob, uncaught } from "./smoke-core.mjs";

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
// What the runtime prints with console.* (Pyodide's fatal-error report) goes to the log.
for (const level of ["log", "info", "warn", "error", "debug"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    original(...args);
    out(args.map((a) => (typeof a === "string" ? a : describe(a))).join(" ") + "\n");
  };
}
// Errors nothing caught end a running test with what they mean (smoke-core.mjs); before
// it runs, they end the boot.
let running = false;
const onUncaught = (err) => {
  if (running) return uncaught.report(err);
  report({ ...outcomeOf(err), ok: false, stage: "boot", load_errors: [] });
};
addEventListener("error", (event) => onUncaught(event.error || event.message));
addEventListener("unhandledrejection", (event) => onUncaught(event.reason));

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
  running = true;
  const result = await runJob(pyodide, job, out);
  result.timings.boot = boot;
  await report(result);
}

// One worker thread of the smoke server: boots one fresh Pyodide interpreter (from
// the runtime's boot snapshot when there is one), says "ready", runs exactly one job
// and is then thrown away by the server. A worker thread is a fresh JavaScript realm
// with a fresh WebAssembly instance, so nothing one test does reaches the next.
import { parentPort, workerData } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import path from "node:path";
import { inspect } from "node:util";
import { bootOptions, runJob, uncaught } from "./smoke-core.mjs";

let sink = (text) => bootOutput.push(text);
const bootOutput = [];
const out = (text) => sink(text);

// What the runtime prints with console.* (Pyodide's fatal-error report) belongs to the
// job's log, not to the server's; errors nothing caught end the test (smoke-core.mjs).
for (const level of ["log", "info", "warn", "error", "debug"]) {
  console[level] = (...args) => out(args.map((a) => (typeof a === "string" ? a : inspect(a))).join(" ") + "\n");
}
// Before a job runs, such an error is a failed boot: the server replaces this worker.
let running = false;
const onUncaught = (err) => {
  if (running) return uncaught.report(err);
  parentPort.postMessage({ type: "boot-error", error: err && err.stack ? String(err.stack) : String(err),
                           output: bootOutput.join("") });
};
process.on("uncaughtException", onUncaught);
process.on("unhandledRejection", onUncaught);

// The server compiles pyodide.asm.wasm once and hands the compiled module to every
// worker: V8 compiles functions lazily and optimises hot ones later, and a module
// shared between threads shares that code, so only the first interpreters pay for
// compiling what every smoke test runs. Pyodide instantiates its module from the
// file's bytes; those exact bytes are swapped for the shared module. Each worker
// still gets its own instance (its own memory): nothing else is shared.
if (workerData.wasm) {
  const { module, bytes } = workerData.wasm;
  const same = (source) => {
    if (!source || source.byteLength !== bytes.byteLength) return false;
    const view = ArrayBuffer.isView(source) ? source : new Uint8Array(source);
    return Buffer.compare(Buffer.from(view.buffer, view.byteOffset, view.byteLength), Buffer.from(bytes)) === 0;
  };
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = function (source, imports) {
    if (same(source)) return instantiate.call(WebAssembly, module, imports).then((instance) => ({ instance, module }));
    return instantiate.call(WebAssembly, source, imports);
  };
}

async function boot() {
  const start = performance.now();
  const { loadPyodide } = await import(pathToFileURL(path.join(workerData.runtime, "pyodide.mjs")).href);
  const pyodide = await loadPyodide(bootOptions(out, workerData.snapshot || null));
  return { pyodide, seconds: Math.round(performance.now() - start) / 1000 };
}

let booted;
try {
  booted = await boot();
  parentPort.postMessage({ type: "ready", boot: booted.seconds });
} catch (err) {
  parentPort.postMessage({ type: "boot-error", error: err && err.stack ? err.stack : String(err),
                           output: bootOutput.join("") });
}

parentPort.on("message", async (message) => {
  if (message.type !== "job" || !booted) return;
  running = true;
  sink = (text) => parentPort.postMessage({ type: "output", text });
  if (bootOutput.length) sink(bootOutput.join(""));
  let result;
  try {
    result = await runJob(booted.pyodide, message.job, out);
  } catch (err) {
    result = { ok: false, stage: "crash", error: err && err.stack ? err.stack : String(err), load_errors: [] };
  }
  result.timings = { ...(result.timings || {}), boot: booted.seconds };
  parentPort.postMessage({ type: "result", result });
});

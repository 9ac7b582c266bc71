// One worker thread of the smoke server: boots one fresh Pyodide interpreter (from
// the runtime's boot snapshot when there is one), says "ready", runs exactly one job
// and is then thrown away by the server. A worker thread is a fresh JavaScript realm
// with a fresh WebAssembly instance, so nothing one test does reaches the next.
import { parentPort, workerData } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import path from "node:path";
import { bootOptions, runJob } from "./smoke-core.mjs";

let sink = (text) => bootOutput.push(text);
const bootOutput = [];
const out = (text) => sink(text);

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

// Smoke-test wheels in a real Pyodide runtime: one Node process for one job.
//
//   node smoke.mjs JOB.json
//
// JOB: {"runtime": "<.../node_modules/pyodide>", "snapshot": "<boot snapshot file>"|null,
//       "timeout": <seconds for installing and testing>,
//       "wheels": [{"name", "url"}], "script": "<python code>", "filename": "<shown in tracebacks>"}
// Everything the runtime and the test print goes to stdout; the last line is
// "WASMWHEEL-RESULT <json>" (see smoke-core.mjs). This is the slow, simple path
// (a boot per wheel); the per-runtime server (smoke-server.mjs) is the fast one.
//
// The interpreter runs in a worker thread (smoke-worker.mjs, as in the server), so
// this thread stays free to end a test after `timeout` seconds even when the test
// blocks its own thread (`while True: pass`).
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { RESULT_PREFIX } from "./smoke-core.mjs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const timeout = Number(job.timeout) || 300;
const out = (text) => process.stdout.write(text);
let finished = false;
const finish = (result) => {
  if (finished) return;
  finished = true;
  process.stdout.write("\n" + RESULT_PREFIX + JSON.stringify(result) + "\n", () => process.exit(result.ok ? 0 : 1));
};
const describe = (err) => (err && err.stack ? String(err.stack) : String(err));

function boot(snapshot) {
  const worker = new Worker(new URL("./smoke-worker.mjs", import.meta.url), {
    workerData: { runtime: job.runtime, snapshot: snapshot ? readFileSync(snapshot) : null, wasm: null },
  });
  let timer = null;
  let started = false;
  const end = (result) => {
    clearTimeout(timer);
    worker.removeAllListeners("exit");
    worker.terminate();
    finish(result);
  };
  worker.on("message", (message) => {
    if (message.type === "ready") {
      started = true;
      timer = setTimeout(() => end({ ok: false, stage: "timeout", load_errors: [],
                                     error: `the smoke test did not finish within ${timeout} s and was killed` }),
                         timeout * 1000);
      worker.postMessage({ type: "job", job });
    } else if (message.type === "output") {
      out(message.text);
    } else if (message.type === "result") {
      end(message.result);
    } else if (message.type === "boot-error") {
      out(message.output || "");
      worker.removeAllListeners("exit");
      worker.terminate();
      if (snapshot) {
        out(`# booting from the snapshot ${snapshot} failed (${message.error.split("\n")[0]}); booting normally\n`);
        boot(null);
      } else {
        out(message.error + "\n");
        finish({ ok: false, stage: "boot", error: message.error, load_errors: [] });
      }
    }
  });
  worker.on("error", (err) => end({ ok: false, stage: started ? "crash" : "boot", error: describe(err),
                                    load_errors: [] }));
  worker.on("exit", (code) => end({
    ok: false, stage: started ? "crash" : "boot", load_errors: [],
    error: `the interpreter's worker exited with code ${code} before the ${started ? "test" : "boot"} finished`,
  }));
}

boot(job.snapshot || null);

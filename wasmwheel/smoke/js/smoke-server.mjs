// The smoke server of one Pyodide runtime: a pool of pre-booted, single-use worker
// threads behind a Unix socket, shared by every smoke step of that runtime (each
// doit task is its own process, also under `doit -n 2`).
//
//   node smoke-server.mjs '{"socket": ..., "runtime": ..., "snapshot": ...|null,
//                           "workers": N, "idle": SECONDS}'
//
// Each job gets a worker whose interpreter was booted before the job arrived and
// never ran anything; after the job the worker is terminated and a fresh one boots
// in the background. So every wheel meets a fresh interpreter, and the boot (from a
// memory snapshot, with the runtime's module compiled once for all workers: well
// under a second instead of 3-8 s) overlaps other tests.
//
// Protocol: one JSON request per line; replies are JSON lines.
//   {"cmd": "run", "job": {...}, "timeout": S} -> {"type": "started", ...},
//        {"type": "output", "text"}..., {"type": "result", "result": {...}}
//   {"cmd": "ping"} -> {"type": "pong", ...}
//   {"cmd": "stop"} -> {"type": "stopping"}, then the server exits
// The server exits by itself after `idle` seconds without connections.
import net from "node:net";
import { readFileSync, statSync, unlinkSync } from "node:fs";
import { Worker } from "node:worker_threads";
import path from "node:path";

const config = JSON.parse(process.argv[2]);
const log = (message) => console.log(`${new Date().toISOString()} ${message}`);
const MAX_BOOT_FAILURES = 3;
const OUTPUT_BATCH = 1 << 20; // characters of test output sent to the client in one message, at most
// Only these: a Worker's own bookkeeping listens to other events of the emitter.
const WORKER_EVENTS = ["message", "error", "exit"];
const detach = (worker) => WORKER_EVENTS.forEach((event) => worker.removeAllListeners(event));

let snapshot = null;
if (config.snapshot) {
  const bytes = readFileSync(config.snapshot);
  snapshot = new Uint8Array(new SharedArrayBuffer(bytes.length));
  snapshot.set(bytes);
}

// The runtime's main module, compiled once for all workers (see smoke-worker.mjs).
let wasm = null;
try {
  const file = readFileSync(path.join(config.runtime, "pyodide.asm.wasm"));
  const bytes = new Uint8Array(new SharedArrayBuffer(file.length));
  bytes.set(file);
  wasm = { module: await WebAssembly.compile(bytes), bytes };
} catch (err) {
  log(`could not compile pyodide.asm.wasm once for all workers (${err}); each compiles its own`);
}

// -- the pool -------------------------------------------------------------------------

const ready = []; // workers booted and waiting for a job
const queue = []; // jobs waiting for a ready worker
let booting = 0;
let bootFailures = 0;
let brokenReason = null;
let running = 0;

function spawn() {
  booting += 1;
  const worker = new Worker(new URL("./smoke-worker.mjs", import.meta.url),
                            { workerData: { runtime: config.runtime, snapshot, wasm } });
  worker.bootSeconds = null;
  worker.on("error", () => {}); // an unhandled 'error' event would end the server
  let settled = false;
  const bootFailed = (error) => {
    if (settled) return;
    settled = true;
    booting -= 1;
    bootFailures += 1;
    worker.terminate();
    log(`a worker failed to boot (${bootFailures} in a row): ${error}`);
    if (snapshot && bootFailures >= 2) {
      log("booting from the snapshot fails; booting without it from now on, and removing it " +
          "(the next server makes a new one)");
      snapshot = null;
      try {
        unlinkSync(config.snapshot);
      } catch {}
      bootFailures = 0;
    } else if (bootFailures >= MAX_BOOT_FAILURES) {
      brokenReason = `Pyodide does not boot in the smoke server: ${error}`;
      while (queue.length) queue.shift().fail("boot", brokenReason);
      return;
    }
    spawn();
  };
  worker.once("message", (message) => {
    if (message.type === "ready") {
      settled = true;
      booting -= 1;
      bootFailures = 0;
      worker.bootSeconds = message.boot;
      detach(worker);
      // A waiting worker that dies (out of memory, ...) leaves the pool.
      const lost = (why) => {
        const index = ready.indexOf(worker);
        if (index < 0 || stopping) return;
        ready.splice(index, 1);
        log(`a waiting worker was lost: ${why}`);
        refill();
      };
      worker.on("error", (err) => lost(String(err)));
      worker.on("exit", (code) => lost(`exit code ${code}`));
      ready.push(worker);
      dispatch();
    } else {
      bootFailed(message.error || "unknown error");
    }
  });
  worker.once("error", (err) => bootFailed(err && err.stack ? err.stack : String(err)));
  worker.once("exit", (code) => bootFailed(`the worker exited with code ${code} while booting`));
}

let stopping = false;

function refill() {
  while (!stopping && !brokenReason && ready.length + booting + running < config.workers) spawn();
}

function dispatch() {
  while (queue.length && ready.length) {
    const job = queue.shift();
    if (job.cancelled) continue;
    job.start(ready.shift());
  }
}

// -- one job ----------------------------------------------------------------------------

class Job {
  constructor(request, reply, onDone) {
    this.request = request;
    this.reply = reply;
    this.onDone = onDone;
    this.cancelled = false;
    this.queued = performance.now();
    this.pending = [];
    this.pendingSize = 0;
    this.flushQueued = false;
  }

  start(worker) {
    running += 1;
    this.worker = worker;
    detach(worker);
    const timeout = Number(this.request.timeout) || 300;
    this.reply({ type: "started", pid: process.pid, boot: worker.bootSeconds,
                 waited: Math.round(performance.now() - this.queued) / 1000, snapshot: Boolean(snapshot) });
    this.timer = setTimeout(() => this.finish({
      ok: false, stage: "timeout", load_errors: [],
      error: `the smoke test did not finish within ${timeout} s and was killed`,
    }), timeout * 1000);
    worker.on("message", (message) => {
      if (message.type === "output") this.output(message.text);
      else if (message.type === "result") this.finish(message.result);
    });
    worker.on("error", (err) => this.finish({
      ok: false, stage: "crash", load_errors: [],
      error: err && err.stack ? String(err.stack) : String(err),
    }));
    worker.on("exit", (code) => this.finish({
      ok: false, stage: "crash", load_errors: [],
      error: `the interpreter's worker exited with code ${code} before the test finished`,
    }));
    worker.postMessage({ type: "job", job: this.request.job });
  }

  // The worker sends what the test prints line by line, as it comes (so nothing is lost
  // when it hangs and is killed); the client gets it in batches: one message per line
  // would cost more than the test for a test that prints a lot.
  output(text) {
    this.pending.push(text);
    this.pendingSize += text.length;
    if (this.pendingSize >= OUTPUT_BATCH) this.flush();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => this.flush());
    }
  }

  flush() {
    this.flushQueued = false;
    if (!this.pending.length) return;
    this.reply({ type: "output", text: this.pending.join("") });
    this.pending = [];
    this.pendingSize = 0;
  }

  finish(result) {
    if (this.done) return;
    this.flush();
    this.done = true;
    clearTimeout(this.timer);
    detach(this.worker);
    this.worker.on("error", () => {});
    this.worker.terminate();
    running -= 1;
    if (!this.cancelled) this.reply({ type: "result", result });
    this.onDone();
    refill();
  }

  fail(stage, error) {
    this.done = true;
    this.reply({ type: "result", result: { ok: false, stage, error, load_errors: [] } });
    this.onDone();
  }

  cancel() {
    this.cancelled = true;
    if (this.worker && !this.done) this.finish({ ok: false, stage: "cancelled", error: "", load_errors: [] });
  }
}

// -- the socket ---------------------------------------------------------------------------

let connections = 0;
let lastActivity = performance.now();

const server = net.createServer((socket) => {
  connections += 1;
  lastActivity = performance.now();
  let buffer = "";
  let job = null;
  const reply = (obj) => {
    if (!socket.destroyed) socket.write(JSON.stringify(obj) + "\n");
  };
  socket.setEncoding("utf8");
  socket.on("data", (chunk) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      let request;
      try {
        request = JSON.parse(line);
      } catch {
        reply({ type: "error", error: "not JSON" });
        continue;
      }
      if (request.cmd === "ping") {
        reply({ type: "pong", pid: process.pid, runtime: config.runtime, workers: config.workers,
                snapshot: Boolean(snapshot), ready: ready.length, running, queued: queue.length });
      } else if (request.cmd === "stop") {
        reply({ type: "stopping" });
        shutdown("asked to stop");
      } else if (request.cmd === "run" && !job) {
        job = new Job(request, reply, () => { lastActivity = performance.now(); });
        if (brokenReason) job.fail("boot", brokenReason);
        else {
          queue.push(job);
          dispatch();
        }
      } else {
        reply({ type: "error", error: `unknown request ${line.slice(0, 80)}` });
      }
    }
  });
  socket.on("close", () => {
    connections -= 1;
    lastActivity = performance.now();
    if (job && !job.done) job.cancel();
  });
  socket.on("error", () => {});
});

let socketInode = null;

function shutdown(why) {
  if (stopping) return;
  stopping = true;
  log(`stopping: ${why}`);
  server.close();
  for (const worker of ready) worker.terminate();
  try {
    if (socketInode !== null && statSync(config.socket).ino === socketInode) unlinkSync(config.socket);
  } catch {}
  setTimeout(() => process.exit(0), 100);
}

setInterval(() => {
  if (socketInode === null) return;
  // Another server took the socket path over (or it was removed): this one is orphaned.
  try {
    if (statSync(config.socket).ino !== socketInode) return shutdown("the socket was replaced");
  } catch {
    return shutdown("the socket was removed");
  }
  const idle = (performance.now() - lastActivity) / 1000;
  if (connections === 0 && running === 0 && idle > config.idle) shutdown(`idle for ${Math.round(idle)} s`);
}, 1000).unref();

try {
  unlinkSync(config.socket); // the caller holds the start lock and found nobody answering
} catch {}
refill();
server.listen(config.socket, () => {
  socketInode = statSync(config.socket).ino;
  log(`listening on ${config.socket}: runtime ${config.runtime}, ${config.workers} workers, ` +
      (snapshot ? `snapshot ${config.snapshot}` : "no snapshot"));
});

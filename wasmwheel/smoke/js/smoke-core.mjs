// The smoke test itself, shared by every way wasmwheel runs it: one Node process
// per wheel (smoke.mjs), the worker threads of the per-runtime server
// (smoke-worker.mjs) and the headless-browser page (browser.html). No Node APIs here.
//
// A job is {wheels: [{name, url}], script, filename}. The wheels are installed in
// order (test requirements and dependencies first, the wheel under test last), then
// the script runs. The result is
//   {ok, stage: "boot"|"load"|"test"|"exit"|"crash", error, error_type, load_errors, timings}.
//
// loadPackage does not throw when a shared library fails to load: it prints
// "Failed to load ..." and hands the real error (LinkError, missing dylink section,
// ...) to errorCallback. Those messages are the result of the "load" stage; the
// misleading import error that would follow them is never reached.
//
// Some ends of a test never reach runPythonAsync's promise: SystemExit (sys.exit)
// escapes Pyodide's event loop, os._exit() ends the Emscripten runtime, a wasm trap
// or a JS error inside a wasm call is a Pyodide "fatal error". Those surface as
// uncaught errors of the realm; the caller hands them to runJob (``uncaught``), which
// turns them into the result they mean (see ``outcomeOf``).

export const RESULT_PREFIX = "WASMWHEEL-RESULT ";

const elapsed = (start) => Math.round(performance.now() - start) / 1000;

// Boot options for loadPyodide: output goes to ``out(text)`` (the job's sink, which
// may change between boot and job for pre-booted interpreters). Every caller boots
// in a fresh JavaScript realm (a process, a worker thread, a page), so the `js`
// module is that realm's own globalThis and nothing a test sets there survives it.
export function bootOptions(out, snapshot) {
  const options = {
    stdout: (s) => out(s + "\n"),
    stderr: (s) => out(s + "\n"),
  };
  if (snapshot) options._loadSnapshot = snapshot;
  return options;
}

// The job's own output goes through `write` handlers: Python hands them whole lines
// (sys.stdout is line-buffered) as bytes, three times faster than the line-by-line
// `stdout` option for a test that prints a lot.
function captureOutput(pyodide, out) {
  if (typeof pyodide.setStdout !== "function") return;
  for (const [set, decoder] of [["setStdout", new TextDecoder()], ["setStderr", new TextDecoder()]]) {
    pyodide[set]({ write: (bytes) => { out(decoder.decode(bytes, { stream: true })); return bytes.length; } });
  }
}

export async function runJob(pyodide, job, out) {
  captureOutput(pyodide, out);
  const timings = {};
  const loadErrors = [];
  let start = performance.now();
  for (const wheel of job.wheels) {
    out(`# installing ${wheel.name}\n`);
    const before = loadErrors.length;
    try {
      await pyodide.loadPackage(wheel.url, {
        messageCallback: (m) => out(String(m) + "\n"),
        errorCallback: (m) => {
          out(String(m) + "\n");
          loadErrors.push(String(m));
        },
        checkIntegrity: false,
      });
    } catch (err) {
      const message = err && err.message ? err.message : String(err);
      out(message + "\n");
      loadErrors.push(message);
    }
    if (loadErrors.length > before) {
      timings.load = elapsed(start);
      return { ok: false, stage: "load", wheel: wheel.name, error: loadErrors.join("\n"), load_errors: loadErrors,
               timings };
    }
  }
  timings.load = elapsed(start);
  start = performance.now();
  out(`# running the test script\n`);
  let outcome;
  try {
    // As a module, not as runPythonAsync: that returns the value of the script's last
    // expression, and a JS promise resolved with an awaitable (a task the test leaves
    // running, asyncio.ensure_future(...)) waits for it, forever for a task that never ends.
    const evalCodeAsync = pyodide.pyimport("pyodide.code").eval_code_async;
    const run = evalCodeAsync.callKwargs(job.script, { globals: pyodide.globals, return_mode: "none",
                                                      filename: job.filename || "<smoke test>" });
    outcome = await Promise.race([Promise.resolve(run).then(() => null), uncaught.promise]);
  } catch (err) {
    outcome = err;
  }
  timings.test = elapsed(start);
  if (outcome === null) return { ok: true, stage: "test", error: "", load_errors: [], timings };
  return { ...outcomeOf(outcome, out), load_errors: [], timings };
}

// Where the caller reports errors nothing caught (a worker's process "uncaughtException",
// a page's "error" event): while a test runs they end it with what they mean.
export const uncaught = (() => {
  let reject = () => {};
  const promise = new Promise((_, r) => { reject = r; });
  promise.catch(() => {});
  return { promise, report: (err) => reject(err) };
})();

const messageOf = (err) => (err && err.message !== undefined ? String(err.message) : String(err));

// What an error that ended the test means: {ok, stage, error, error_type}.
export function outcomeOf(err, out = () => {}) {
  const type = err && err.type ? String(err.type) : "";
  const message = messageOf(err);
  if (type === "SystemExit") {
    // sys.exit(): as for `python script.py`, 0 or None passes, anything else fails.
    const last = message.trimEnd().split("\n").pop();
    const code = last.startsWith("SystemExit:") ? last.slice("SystemExit:".length).trim() : "";
    if (code === "" || code === "0" || code === "None") {
      out(`# the test called sys.exit(${code}): a pass\n`);
      return { ok: true, stage: "test", error: "" };
    }
    return { ok: false, stage: "test", error: message, error_type: type };
  }
  const exit = /Program terminated with exit\((-?\d+)\)/.exec(message);
  if ((err && err.name === "ExitStatus") || exit) {
    const status = err && err.status !== undefined ? err.status : exit && Number(exit[1]);
    if (status === 0) {
      out("# the test ended the interpreter with exit status 0 (os._exit(0) or C exit(0)): a pass\n");
      return { ok: true, stage: "test", error: "" };
    }
    return { ok: false, stage: "exit", error_type: "ExitStatus",
             error: `exit status ${status} (the test or the extension called os._exit(${status}) or C exit())` };
  }
  const stack = err && err.stack ? String(err.stack) : message;
  if (err && err.pyodide_fatal_error) {
    return { ok: false, stage: "crash", error_type: "fatal",
             error: `Pyodide suffered a fatal error (a wasm trap, or a JavaScript error inside a wasm call): ${stack}` };
  }
  if (type) return { ok: false, stage: "test", error: message, error_type: type };
  return { ok: false, stage: "crash", error: stack, error_type: err && err.name ? String(err.name) : "" };
}

// The smoke test itself, shared by every way wasmwheel runs it: one Node process
// per wheel (smoke.mjs), the worker threads of the per-runtime server
// (smoke-worker.mjs) and the headless-browser page (browser.html). No Node APIs here.
//
// A job is {wheels: [{name, url}], script, filename}. The wheels are installed in
// order (test requirements and dependencies first, the wheel under test last), then
// the script runs. The result is
//   {ok, stage: "boot"|"load"|"test", error, error_type, load_errors, timings}.
//
// loadPackage does not throw when a shared library fails to load: it prints
// "Failed to load ..." and hands the real error (LinkError, missing dylink section,
// ...) to errorCallback. Those messages are the result of the "load" stage; the
// misleading import error that would follow them is never reached.

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

export async function runJob(pyodide, job, out) {
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
  try {
    out(`# running the test script\n`);
    await pyodide.runPythonAsync(job.script, { filename: job.filename || "<smoke test>" });
  } catch (err) {
    timings.test = elapsed(start);
    const message = err && err.message ? err.message : String(err);
    return { ok: false, stage: "test", error: message, error_type: err && err.type ? String(err.type) : "",
             load_errors: [], timings };
  }
  timings.test = elapsed(start);
  return { ok: true, stage: "test", error: "", load_errors: [], timings };
}

// The "try it" page of `doit serve` (wasmwheel/serve.py): boot the ABI's Pyodide with this index's
// lock file (loadPyodide({lockFileURL})), install a package with loadPackage, run some Python.
//
// Query parameters (all optional): abi, package, code; pyodide = the runtime's base URL (default:
// the Pyodide CDN of the version the lock names); run=1 runs at once; report = an origin the page
// POSTs "/started" and "/result" (JSON) to, for wasmwheel's index check in headless Chromium.
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const show = (text, error = false) => {
  $("output").textContent = text;
  $("output").className = error ? "error" : "";
};
const report = (path, data) =>
  params.get("report")
    ? fetch(params.get("report") + path, { method: "POST", mode: "no-cors", body: JSON.stringify(data) }).catch(() => {})
    : Promise.resolve();

const abis = (await (await fetch("/try.json")).json()).abis;
const abi = params.get("abi") || abis[abis.length - 1];
for (const name of abis) $("abi").add(new Option(name, name, false, name === abi));
$("abi").onchange = () => {
  params.set("abi", $("abi").value);
  params.delete("package");
  location.search = params.toString();
};
if (params.get("code")) $("code").value = params.get("code");

const lockFileURL = new URL(`/${abi}/pyodide-lock.json`, location.href).href;
const outcome = { ok: false, stage: "boot", error: "", value: "", timings: {} };
try {
  const [lock, simple] = await Promise.all([
    fetch(lockFileURL).then((r) => r.json()),
    fetch(`/${abi}/simple/`, { headers: { Accept: "application/vnd.pypi.simple.v1+json" } }).then((r) => r.json()),
  ]);
  const projects = simple.projects.map((p) => p.name);
  const wanted = params.get("package") || projects[0];
  for (const name of projects) $("package").add(new Option(name, name, false, name === wanted));
  const indexURL = params.get("pyodide") || `https://cdn.jsdelivr.net/pyodide/v${lock.info.version}/full/`;
  $("where").textContent = `ABI ${abi}: Pyodide ${lock.info.version} from ${indexURL}, packages from ${lockFileURL}`;
  let started = performance.now();
  const { loadPyodide } = await import(indexURL + "pyodide.mjs");
  const pyodide = await loadPyodide({ indexURL, lockFileURL });
  outcome.timings.boot = (performance.now() - started) / 1000;
  await report("/started", { boot: outcome.timings.boot });
  show(`Pyodide ${pyodide.version} booted in ${outcome.timings.boot.toFixed(1)} s`);
  const run = async () => {
    const name = $("package").value;
    const errors = [];
    outcome.stage = "load";
    started = performance.now();
    await pyodide.loadPackage(name, { messageCallback: () => {}, errorCallback: (m) => errors.push(String(m)) });
    if (errors.length) throw new Error(errors.join("\n"));
    outcome.timings.load = (performance.now() - started) / 1000;
    outcome.stage = "test";
    started = performance.now();
    const value = await pyodide.runPythonAsync($("code").value);
    outcome.timings.test = (performance.now() - started) / 1000;
    outcome.value = String(value);
    return `${name}: loaded in ${outcome.timings.load.toFixed(2)} s\n>>> ${outcome.value}`;
  };
  $("run").disabled = false;
  $("form").onsubmit = (event) => {
    event.preventDefault();
    run().then(show, (err) => show(String(err && err.message ? err.message : err), true));
  };
  if (params.get("run") === "1") {
    show(await run());
    outcome.ok = true;
  }
} catch (err) {
  outcome.failed = true;
  outcome.error = String(err && err.message ? err.message : err);
  show(`${outcome.stage} failed: ${outcome.error}`, true);
}
if (params.get("run") === "1" || outcome.failed) await report("/result", outcome);

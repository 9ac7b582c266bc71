// Stand-in for Emscripten's src/lib/libdylink.js: the emsdk stand-in installs it, and the tests patch it
// the way Pyodide patches the real one.
var LibraryDylink = {
  $resolveStub: (stubs, prop, resolveSymbol) => {
    var resolved;
    stubs[prop] = (...args) => {
      resolved ||= resolveSymbol(prop);
      return resolved(...args);
    };
  },
};

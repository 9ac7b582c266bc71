/* A C++ side module that throws and catches, to build with either exception-handling
 * ABI: JavaScript EH (`-fexceptions -mllvm -enable-emscripten-cxx-exceptions`: calls that
 * may throw go through imported `invoke_*` wrappers) or WebAssembly EH
 * (`-fwasm-exceptions`: try/catch instructions and an imported `__cpp_exception` tag).
 *
 *   risky(n)  calls thrower(n) inside try/catch: n != 0 throws an int, caught here.
 *
 * With -DINIT_TRY the module's init function runs inside try/catch too, as PyO3's
 * init trampoline does (catch_unwind), so a mismatch shows at import time.
 * With -DCLEANUP_ONLY risky(n) has no catch, only a destructor to run while unwinding:
 * under wasm EH that needs exception-handling instructions but no tag import. */
extern "C" {
#include "pyabi.h"
}

#ifndef MODULE_NAME
#define MODULE_NAME eh_module
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

__attribute__((noinline)) static long thrower(long n) {
  if (n) throw n;
  return 0;
}

#ifdef CLEANUP_ONLY
struct Guard { long *count; ~Guard() { *count += 1; } };
static long unwound;

static PyObject *risky(PyObject *self, PyObject *args) {
  long n;
  if (!PyArg_ParseTuple(args, "l", &n)) return 0;
  {
    Guard guard{&unwound};
    thrower(n);
  }
  return PyUnicode_FromFormat("no exception");
}
#else
static PyObject *risky(PyObject *self, PyObject *args) {
  long n;
  if (!PyArg_ParseTuple(args, "l", &n)) return 0;
  try {
    thrower(n);
  } catch (long caught) {
    return PyUnicode_FromFormat("caught %ld", caught);
  }
  return PyUnicode_FromFormat("no exception");
}
#endif

static PyMethodDef module_methods[] = {
  {"risky", risky, METH_VARARGS, "Call a function that throws when n != 0; catch it."},
  {0, 0, 0, 0},
};

static PyModuleDef module_def = {
  PyModuleDef_HEAD_INIT, STR(MODULE_NAME), "C++ exceptions in a side module.", -1,
  module_methods, 0, 0, 0, 0,
};

__attribute__((noinline)) static PyObject *create(long n) {
  thrower(n);
  return PyModule_Create2(&module_def, 1013);
}

extern "C" EXPORT PyObject *PYINIT_X(MODULE_NAME)(void) {
#ifdef INIT_TRY
  try {
    return create(0);
  } catch (...) {
    return 0;
  }
#else
  return PyModule_Create2(&module_def, 1013);
#endif
}

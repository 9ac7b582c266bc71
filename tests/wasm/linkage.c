/* A module whose f(n) needs symbols from elsewhere, chosen by macros, for the audit's
 * linking checks (what the runtime, a needed library or nobody provides):
 *   UNDEF_FUNC       calls made_up_function(n), which nobody defines (in f, or in
 *                    PyInit with CALL_IN_INIT, or in a constructor with CALL_IN_CTOR)
 *   UNDEF_DATA       reads made_up_data, which nobody defines (a GOT.mem import)
 *   UNDEF_FUNC_ADDR  takes the address of made_up_fn_addr (a GOT.func import)
 *   WEAK_DATA        reads weak_data if it exists (a weak GOT.mem import)
 *   FOREIGN_IMPORT   calls bar() imported from the wasm module "foo", not "env"
 *   DEP              calls dep_value(n) = 2n + 1 (dep.c; link with it or not)
 *   MULTI_PHASE      PEP 489 init: returns PyModuleDef_Init(&def) (needed for PyInitU_)
 *   BIG_BSS=<bytes>  that much zeroed static data (the module's memory import grows with it)
 * Without any: f(n) = n + 1. MODULE_NAME names the module, INIT_FN its init function. */
#include "pyabi.h"

#ifndef MODULE_NAME
#define MODULE_NAME linkage
#endif
#ifndef INIT_FN
#define INIT_FN PYINIT_X(MODULE_NAME)
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

#ifdef UNDEF_FUNC
long made_up_function(long);
#endif
#if defined(UNDEF_FUNC) && defined(CALL_IN_CTOR)
__attribute__((constructor)) static void at_load(void) { made_up_function(3); }
#endif
#ifdef UNDEF_DATA
extern long made_up_data;
#endif
#ifdef UNDEF_FUNC_ADDR
long made_up_fn_addr(long);
long (*volatile fn_addr)(long) = made_up_fn_addr;
#endif
#ifdef WEAK_DATA
extern long weak_data __attribute__((weak));
#endif
#ifdef FOREIGN_IMPORT
__attribute__((import_module("foo"), import_name("bar"))) long foo_bar(long);
#endif
#ifdef DEP
long dep_value(long);
#endif
#ifdef BIG_BSS
static volatile char big[BIG_BSS];
#endif

static PyObject *f(PyObject *self, PyObject *args) {
  long n;
  if (!PyArg_ParseTuple(args, "l", &n)) return 0;
  long r = n + 1;
#if defined(UNDEF_FUNC) && !defined(CALL_IN_INIT)
  r = made_up_function(n);
#endif
#ifdef UNDEF_DATA
  r += made_up_data;
#endif
#ifdef UNDEF_FUNC_ADDR
  r = fn_addr(n);
#endif
#ifdef WEAK_DATA
  if (&weak_data) r += weak_data;
#endif
#ifdef FOREIGN_IMPORT
  r = foo_bar(n);
#endif
#ifdef DEP
  r = dep_value(n);
#endif
#ifdef BIG_BSS
  big[n % BIG_BSS] = 1;
  r += big[0] - big[0];
#endif
  return PyLong_FromLong(r);
}

static PyMethodDef methods[] = {{"f", f, METH_VARARGS, "f(n)"}, {0, 0, 0, 0}};
static PyModuleDef def = {PyModuleDef_HEAD_INIT, STR(MODULE_NAME), "Linking cases.", 0, methods, 0, 0, 0, 0};

EXPORT PyObject *INIT_FN(void) {
#if defined(UNDEF_FUNC) && defined(CALL_IN_INIT)
  if (made_up_function(1) == 12345) return 0;
#endif
#ifdef MULTI_PHASE
  return PyModuleDef_Init(&def);
#else
  return PyModule_Create2(&def, 1013);
#endif
}

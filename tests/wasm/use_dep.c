/* An extension module that calls into a shared library (link it with libdep.so from dep.c):
 * its dylink.0 section then names libdep.so as needed, and Pyodide must find that file.
 *   f(n) -> dep_value(n) = 2n + 1 */
#include "pyabi.h"

#ifndef MODULE_NAME
#define MODULE_NAME use_dep
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

long dep_value(long);

static PyObject *f(PyObject *self, PyObject *args) {
  long n;
  if (!PyArg_ParseTuple(args, "l", &n)) return 0;
  return PyLong_FromLong(dep_value(n));
}

static PyMethodDef methods[] = {{"f", f, METH_VARARGS, "2n + 1, computed by libdep.so"}, {0, 0, 0, 0}};
static PyModuleDef def = {PyModuleDef_HEAD_INIT, STR(MODULE_NAME), "Needs libdep.so.", -1, methods, 0, 0, 0, 0};

EXPORT PyObject *PYINIT_X(MODULE_NAME)(void) { return PyModule_Create2(&def, 1013); }

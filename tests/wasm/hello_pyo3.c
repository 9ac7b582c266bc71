/* What the example crate examples/hello-pyo3 exposes, written in C so that the
 * tests can build a real Pyodide side module with clang + wasm-ld (no Emscripten
 * SDK, no Rust target needed): a function sum_as_string(a, b) and a class
 * Counter with increment(). MODULE_NAME / INIT_NAME may be overridden to make
 * deliberately broken modules for the audit tests. */
#include "pyabi.h"

#ifndef MODULE_NAME
#define MODULE_NAME hello_pyo3
#endif
#ifndef INIT_NAME
#define INIT_NAME MODULE_NAME
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

static PyObject *sum_as_string(PyObject *self, PyObject *args) {
  long a, b;
  if (!PyArg_ParseTuple(args, "ll", &a, &b)) return 0;
  return PyUnicode_FromFormat("%ld", a + b);
}

typedef struct { PyObject ob_base; long count; } Counter;

static PyObject *counter_increment(PyObject *self, PyObject *unused) {
  Counter *c = (Counter *)self;
  c->count += 1;
  return PyLong_FromLong(c->count);
}

static PyMethodDef counter_methods[] = {
  {"increment", counter_increment, METH_NOARGS, "Add one and return the new count."},
  {0, 0, 0, 0},
};

static PyType_Slot counter_slots[] = {
  {Py_tp_new, (void *)PyType_GenericNew},
  {Py_tp_methods, counter_methods},
  {Py_tp_doc, "A counter that starts at zero."},
  {0, 0},
};

static PyType_Spec counter_spec = {STR(MODULE_NAME) ".Counter", sizeof(Counter), 0, 0, counter_slots};

static PyMethodDef module_methods[] = {
  {"sum_as_string", sum_as_string, METH_VARARGS, "Return the sum of a and b as a string."},
  {0, 0, 0, 0},
};

static PyModuleDef module_def = {
  PyModuleDef_HEAD_INIT, STR(MODULE_NAME), "The hello-pyo3 example, as a C side module.", -1,
  module_methods, 0, 0, 0, 0,
};

EXPORT PyObject *PYINIT_X(INIT_NAME)(void) {
  PyObject *m = PyModule_Create2(&module_def, 1013);
  if (!m) return 0;
  PyObject *counter = PyType_FromSpec(&counter_spec);
  if (!counter || PyModule_AddObjectRef(m, "Counter", counter) < 0) return 0;
  return m;
}

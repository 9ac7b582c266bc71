/* The few CPython C-API declarations the test modules use, for wasm32 (ILP32).
 * No Python headers are needed: these layouts are the stable ABI on 32-bit
 * (Py_ssize_t = long = 4 bytes, PyObject = 8 bytes, PyModuleDef = 52 bytes). */
#ifndef WASMWHEEL_PYABI_H
#define WASMWHEEL_PYABI_H

#ifndef PY_MINOR
#error "compile with -DPY_MINOR=<minor version of the target Python>"
#endif

typedef long Py_ssize_t;
typedef struct _object { Py_ssize_t ob_refcnt; void *ob_type; } PyObject;
typedef PyObject *(*PyCFunction)(PyObject *, PyObject *);

typedef struct { const char *ml_name; PyCFunction ml_meth; int ml_flags; const char *ml_doc; } PyMethodDef;
typedef struct { PyObject ob_base; PyObject *(*m_init)(void); Py_ssize_t m_index; PyObject *m_copy; } PyModuleDef_Base;
typedef struct {
  PyModuleDef_Base m_base;
  const char *m_name;
  const char *m_doc;
  Py_ssize_t m_size;
  PyMethodDef *m_methods;
  void *m_slots, *m_traverse, *m_clear, *m_free;
} PyModuleDef;
typedef struct { int slot; void *pfunc; } PyType_Slot;
typedef struct { const char *name; int basicsize; int itemsize; unsigned int flags; PyType_Slot *slots; } PyType_Spec;

_Static_assert(sizeof(PyObject) == 8, "PyObject is 8 bytes on wasm32");
_Static_assert(sizeof(PyModuleDef_Base) == 20, "PyModuleDef_Base is 20 bytes on wasm32");
_Static_assert(sizeof(PyModuleDef) == 52, "PyModuleDef is 52 bytes on wasm32");
_Static_assert(sizeof(PyMethodDef) == 16, "PyMethodDef is 16 bytes on wasm32");

/* The immortal refcount in PyModuleDef_HEAD_INIT. */
#if PY_MINOR >= 14
#define PY_IMMORTAL_REFCNT (7L << 28)
#else
#define PY_IMMORTAL_REFCNT 0x3FFFFFFFL
#endif
#define PyModuleDef_HEAD_INIT { { PY_IMMORTAL_REFCNT, 0 }, 0, 0, 0 }

#define METH_VARARGS 0x0001
#define METH_NOARGS 0x0004
#define Py_tp_methods 64
#define Py_tp_new 65
#define Py_tp_doc 56

PyObject *PyModule_Create2(PyModuleDef *, int apiver);
PyObject *PyModuleDef_Init(PyModuleDef *);
int PyModule_AddObjectRef(PyObject *mod, const char *name, PyObject *value);
int PyArg_ParseTuple(PyObject *args, const char *format, ...);
PyObject *PyUnicode_FromFormat(const char *format, ...);
PyObject *PyLong_FromLong(long);
PyObject *PyType_FromSpec(PyType_Spec *);
PyObject *PyType_GenericNew(void *type, PyObject *args, PyObject *kwds);

#define PYINIT(name) PyInit_##name
#define PYINIT_X(name) PYINIT(name)
#define EXPORT __attribute__((visibility("default"), used))

#endif

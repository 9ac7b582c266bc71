/* A module that needs libextra.so (listed in its dylink.0 section) at load time. */
#include "pyabi.h"

#ifndef MODULE_NAME
#define MODULE_NAME hello_pyo3
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

int extra_answer(void);

static PyModuleDef module_def = {
  PyModuleDef_HEAD_INIT, STR(MODULE_NAME), "Needs libextra.so.", -1, 0, 0, 0, 0, 0,
};

EXPORT PyObject *PYINIT_X(MODULE_NAME)(void) {
  if (extra_answer() != 42) return 0;
  return PyModule_Create2(&module_def, 1013);
}

/* setjmp/longjmp in a side module, to build with either ABI: JavaScript SjLj
 * (`-mllvm -enable-emscripten-sjlj`: imports invoke_* and emscripten_longjmp) or
 * WebAssembly SjLj (`-mllvm -wasm-enable-sjlj`: imports the `__c_longjmp` tag).
 *   f(n) -> n, after a longjmp when n != 0 */
#include "pyabi.h"

#ifndef MODULE_NAME
#define MODULE_NAME sjlj
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

typedef struct { long buf[64]; } jmp_buf[1]; /* large enough for Emscripten's jmp_buf */
int setjmp(jmp_buf);
_Noreturn void longjmp(jmp_buf, int);

__attribute__((noinline)) static void jumper(jmp_buf env, long n) {
  if (n) longjmp(env, (int)n);
}

static PyObject *f(PyObject *self, PyObject *args) {
  long n;
  jmp_buf env;
  if (!PyArg_ParseTuple(args, "l", &n)) return 0;
  int r = setjmp(env);
  if (r == 0) jumper(env, n);
  return PyLong_FromLong(r);
}

static PyMethodDef methods[] = {{"f", f, METH_VARARGS, "longjmp back with n"}, {0, 0, 0, 0}};
static PyModuleDef def = {PyModuleDef_HEAD_INIT, STR(MODULE_NAME), "setjmp/longjmp.", -1, methods, 0, 0, 0, 0};

EXPORT PyObject *PYINIT_X(MODULE_NAME)(void) { return PyModule_Create2(&def, 1013); }

/* A shared library another side module links against (libextra.so), for the
 * "missing dependency" smoke tests: the wheel that needs it does not ship it. */
__attribute__((visibility("default"))) int extra_answer(void) { return 42; }

/* A plain shared library (no Python): what a module lists in dylink.0's needed libraries
 * when linked against it. */
__attribute__((visibility("default"))) long dep_value(long x) { return x * 2 + 1; }

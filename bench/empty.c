/* The floor for process start: a shared object with nothing in it, to
 * preload instead of libkawrap.so. What loading it costs (open, mmap,
 * relocation, page faults) any LD_PRELOAD library pays. */
int kawrap_bench_empty;

/* MKL's CPU-vendor test, answered "Intel", so that MKL picks its kernels by the CPU's
 * instruction sets alone (mnog/mkl.py explains why and when it is loaded). */
int mkl_serv_intel_cpu_true(void) { return 1; }

/* A marker: mnog.mkl.preloaded() looks it up to see that this library is loaded. */
int mnog_mkl_intel(void) { return 1; }

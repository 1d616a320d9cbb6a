/* OpenBLAS core selection. Debian 12's OpenBLAS 0.3.21 does not recognise this CPU generation and
 * falls back to its slowest kernels ("Prescott", ~50 GFLOP/s instead of ~250 on two AVX-512
 * cores). The core type is read only when the library loads, so a program re-runs itself once
 * with OPENBLAS_CORETYPE set. A user's own OPENBLAS_CORETYPE is respected, and
 * OCD_NO_BLAS_REEXEC=1 turns this off. */
#ifndef OCD_BASE_BLAS_CORE_H
#define OCD_BASE_BLAS_CORE_H

/* Call first thing in main(); returns only if no re-exec was needed (or it failed). */
void blas_select_core(char **argv);

#endif

/* OpenMP threads: how many, and where they run. */
#ifndef OCD_BASE_THREADS_H
#define OCD_BASE_THREADS_H

/* Sets the team size (n > 0; 0 keeps OpenMP's default, one per core) and pins thread i of the
 * team to the i-th CPU (mod their count) of the CPUs the process was started with, so that each
 * thread keeps its rows/tiles' data in its own core's caches. Skipped when the user placed the
 * threads (OMP_PROC_BIND, GOMP_CPU_AFFINITY) or set OCD_NO_PIN. Call from the main thread
 * outside parallel regions; later teams of at most that size reuse the pinned threads. Returns
 * the number of threads pinned (0: none). */
int ocd_threads_setup(int n);

#endif

#include "base/threads.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

/* The CPUs the process started with, read once: after pinning, the main thread's own mask is a
 * single CPU (and a forked child inherits that), so it cannot be asked again. */
static cpu_set_t g_cpus;
static int g_have_cpus;

int ocd_threads_setup(int n) {
    if (n > 0) omp_set_num_threads(n);
    if (getenv("OMP_PROC_BIND") || getenv("GOMP_CPU_AFFINITY") || getenv("OCD_NO_PIN")) return 0;
    if (!g_have_cpus) {
        if (sched_getaffinity(0, sizeof g_cpus, &g_cpus)) return 0;
        g_have_cpus = 1;
    }
    static int cpus[CPU_SETSIZE];
    int nc = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &g_cpus)) cpus[nc++] = c;
    if (nc < 2) return 0;
    int pinned = 0;
#pragma omp parallel reduction(+ : pinned)
    {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[omp_get_thread_num() % nc], &one);
        pinned += pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
    }
    return pinned;
}

#include "base/arena.h"

#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"

void arena_init(ocd_arena *a) { *a = (ocd_arena){0}; }

/* Reserves as much address space as the machine has RAM (at least 1 GiB): untouched pages cost
 * nothing, and no single pass can use more than the RAM anyway. */
static int reserve(ocd_arena *a) {
    if (a->base) return 0;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    size_t bytes = pages > 0 && psize > 0 ? (size_t)pages * (size_t)psize : (size_t)1 << 30;
    if (bytes < ((size_t)1 << 30)) bytes = (size_t)1 << 30;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return ocd_fail("out of memory: cannot reserve %zu MiB of address space for an arena", bytes >> 20);
    a->base = p;
    a->reserved = bytes;
    return 0;
}

int arena_reserve(ocd_arena *a, size_t bytes) {
    if (a->used_total != 0) return ocd_fail("arena_reserve on a busy arena");
    if (reserve(a)) return -1;
    return bytes <= a->reserved ? 0 : ocd_fail("out of memory: an arena of %zu MiB exceeds the RAM", bytes >> 20);
}

float *arena_floats(ocd_arena *a, size_t n) {
    const size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    if (reserve(a)) return NULL;
    if (bytes > a->reserved - a->used_total) {
        ocd_fail("out of memory: the pass needs more than %zu MiB of scratch", a->reserved >> 20);
        return NULL;
    }
    float *p = (float *)(a->base + a->used_total);
    a->used_total += bytes;
    if (a->used_total > a->high_water) {
        a->high_water = a->used_total;
        a->n_grows++;
    }
    return p;
}

size_t arena_mark(const ocd_arena *a) { return a->used_total; }

void arena_rewind(ocd_arena *a, size_t mark) {
    if (mark < a->used_total) a->used_total = mark;
}

int arena_reset(ocd_arena *a) {
    a->used_total = 0;
    return 0;
}

void arena_trim(ocd_arena *a) {
    a->used_total = 0;
    if (a->base && a->high_water) madvise(a->base, a->high_water, MADV_DONTNEED);
    a->high_water = 0;
}

void arena_free(ocd_arena *a) {
    if (a->base) munmap(a->base, a->reserved);
    *a = (ocd_arena){0};
}

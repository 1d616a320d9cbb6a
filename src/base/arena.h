/* Planned scratch memory. A forward pass takes all its buffers from an arena (a bump allocator
 * with marks) and resets it when done.
 *
 * The arena is one contiguous range of virtual memory reserved up front (as large as the
 * machine's RAM, MAP_NORESERVE), of which the kernel backs only the pages touched. So it never
 * reallocates or fragments: its resident size is exactly the largest amount ever in use
 * (high_water), the first pass at a given size plans the memory, and later passes at that size
 * touch no new page. */
#ifndef OCD_BASE_ARENA_H
#define OCD_BASE_ARENA_H

#include <stddef.h>

typedef struct {
    unsigned char *base;    /* the reserved range (NULL until first used) */
    size_t reserved;        /* its size in bytes */
    size_t used_total;      /* bytes handed out since the last reset */
    size_t high_water;      /* max used_total over all resets: the resident bytes */
    int n_grows;            /* times the high-water mark rose (tests assert none happen in loops) */
} ocd_arena;

void arena_init(ocd_arena *a);
/* Ensures `bytes` can be handed out (the range is reserved on first use anyway). */
int arena_reserve(ocd_arena *a, size_t bytes);
/* 64-byte aligned floats; NULL with the error set when out of memory. */
float *arena_floats(ocd_arena *a, size_t n);
/* Marks and rewinds for nested scopes (e.g. one block of the network). */
size_t arena_mark(const ocd_arena *a);
void arena_rewind(ocd_arena *a, size_t mark);
/* Rewinds to empty. */
int arena_reset(ocd_arena *a);
/* Rewinds to empty and hands the resident pages back to the OS (high_water 0): for the end of a
 * phase whose passes will not come back soon; the next pass plans its memory anew. */
void arena_trim(ocd_arena *a);
void arena_free(ocd_arena *a);

#endif

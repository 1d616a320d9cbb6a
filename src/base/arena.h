/* Planned scratch memory. A forward pass takes all its buffers from an arena and resets
 * it when done; the first pass at a given size sizes the arena (it may grow in blocks),
 * after which the blocks are merged into one and later passes allocate nothing. */
#ifndef OCD_BASE_ARENA_H
#define OCD_BASE_ARENA_H

#include <stddef.h>

typedef struct ocd_arena_block ocd_arena_block;

typedef struct {
    ocd_arena_block *head;  /* current (last) block; blocks chain backwards */
    size_t used_total;      /* bytes handed out since the last reset */
    size_t high_water;      /* max used_total over all resets */
    size_t capacity;        /* bytes held in all blocks */
    int n_grows;            /* block allocations so far (tests assert none happen in loops) */
} ocd_arena;

void arena_init(ocd_arena *a);
/* Ensures one block of at least `bytes` (call before a loop to plan the memory). */
int arena_reserve(ocd_arena *a, size_t bytes);
/* 64-byte aligned floats; NULL with the error set when out of memory. */
float *arena_floats(ocd_arena *a, size_t n);
/* Marks and rewinds for nested scopes (e.g. one block of the network). */
size_t arena_mark(const ocd_arena *a);
void arena_rewind(ocd_arena *a, size_t mark);
/* Rewinds to empty; if the pass needed several blocks, replaces them by one. */
int arena_reset(ocd_arena *a);
void arena_free(ocd_arena *a);

#endif

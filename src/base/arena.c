#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>

#include "base/error.h"

struct ocd_arena_block {
    ocd_arena_block *prev;
    size_t size, used;
    size_t base;            /* used_total at which this block starts */
    uint8_t *data;
};

void arena_init(ocd_arena *a) { *a = (ocd_arena){0}; }

static int add_block(ocd_arena *a, size_t bytes) {
    ocd_arena_block *b = calloc(1, sizeof *b);
    if (!b) return ocd_fail("out of memory");
    bytes = (bytes + 63) & ~(size_t)63;
    if (!(b->data = aligned_alloc(64, bytes))) { free(b); return ocd_fail("out of memory: arena block of %zu MiB", bytes >> 20); }
    b->size = bytes;
    b->base = a->used_total;
    b->prev = a->head;
    a->head = b;
    a->capacity += bytes;
    a->n_grows++;
    return 0;
}

static void free_blocks(ocd_arena *a) {
    for (ocd_arena_block *b = a->head, *p; b; b = p) { p = b->prev; free(b->data); free(b); }
    a->head = NULL;
    a->capacity = 0;
}

int arena_reserve(ocd_arena *a, size_t bytes) {
    if (a->used_total == 0 && a->head && !a->head->prev && a->head->size >= bytes) return 0;
    if (a->used_total != 0) return ocd_fail("arena_reserve on a busy arena");
    free_blocks(a);
    return add_block(a, bytes);
}

float *arena_floats(ocd_arena *a, size_t n) {
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    if (!a->head || a->head->used + bytes > a->head->size) {
        size_t want = bytes > (a->capacity / 2) ? bytes : a->capacity / 2;
        if (want < ((size_t)1 << 20)) want = (size_t)1 << 20;
        if (add_block(a, want)) return NULL;
    }
    float *p = (float *)(a->head->data + a->head->used);
    a->head->used += bytes;
    a->used_total += bytes;
    if (a->used_total > a->high_water) a->high_water = a->used_total;
    return p;
}

size_t arena_mark(const ocd_arena *a) { return a->used_total; }

void arena_rewind(ocd_arena *a, size_t mark) {
    /* Blocks that start after the mark become empty; they stay allocated until reset. */
    for (ocd_arena_block *b = a->head; b; b = b->prev) {
        if (b->base >= mark) b->used = 0;
        else { if (mark - b->base < b->used) b->used = mark - b->base; break; }
    }
    /* Keep allocating from the oldest block that still has room: walk to the block
     * holding the mark. Simplest correct policy: if the head is empty and has a prev
     * that is not full, allocations just continue in the head (fresh space). */
    a->used_total = mark;
    for (ocd_arena_block *b = a->head; b; b = b->prev) if (b->used == 0) b->base = mark;
}

int arena_reset(ocd_arena *a) {
    a->used_total = 0;
    if (a->head && a->head->prev) { /* several blocks: merge into one of the high-water size */
        size_t want = a->high_water;
        free_blocks(a);
        return add_block(a, want);
    }
    if (a->head) { a->head->used = 0; a->head->base = 0; }
    return 0;
}

void arena_free(ocd_arena *a) { free_blocks(a); *a = (ocd_arena){0}; }

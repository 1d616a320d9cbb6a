/* AMX tile helpers shared by the bf16 kernels (internal to src/kernels).
 * Compiled with per-function target attributes, so the rest of the build needs no -mamx flags;
 * callers run these only when k_bf16_available() says the CPU and the OS grant the tiles. */
#ifndef OCD_KERNELS_AMX_H
#define OCD_KERNELS_AMX_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define K_HAVE_AMX 1
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define BF_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl")))

typedef struct {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} k_tile_cfg;

/* All eight tiles 16 rows x 64 bytes: a C tile is 16 x 16 fp32, an A tile 16 x 32 bf16, a B
 * tile 16 rows of 16 (k, k+1) bf16 pairs. Per thread, inside each parallel region. */
BF_TARGET static inline void k_tiles_on(void) {
    k_tile_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) { c.rows[i] = 16; c.colsb[i] = 64; }
    _tile_loadconfig(&c);
}

BF_TARGET static inline void k_tiles_off(void) { _tile_release(); }

/* 16 floats -> their bf16 (nearest even) in the high halves of 16 dwords. */
BF_TARGET static inline __m512i k_bf_hi(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    return _mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u));
}

/* 16 floats -> 16 bf16 (nearest even). */
BF_TARGET static inline __m256i k_bf16x16(__m512 v) {
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(k_bf_hi(v), 16));
}
#endif

#endif

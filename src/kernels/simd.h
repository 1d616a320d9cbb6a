/* AVX-512 helpers shared by the kernels (internal to src/kernels). */
#ifndef OCD_KERNELS_SIMD_H
#define OCD_KERNELS_SIMD_H

/* Also compiled, with a target attribute, where the build is not for AVX-512 (the sanitizer
 * build): the AMX kernels (amx.h) select their instruction sets per function and call these. */
#if defined(__AVX512F__) || (defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__))
#include <immintrin.h>
#define K_SIMD_TARGET __attribute__((target("avx512f")))

/* exp(x), ~1 ulp: Cody-Waite reduction by ln 2 and Cephes' degree-6 polynomial, then
 * scalef (which flushes to 0 below the float range and gives +inf above it). */
K_SIMD_TARGET static inline __m512 k_exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(100.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* silu(t) = t / (1 + exp(-t)) */
K_SIMD_TARGET static inline __m512 k_silu512(__m512 t) {
    return _mm512_div_ps(t, _mm512_add_ps(_mm512_set1_ps(1.0f), k_exp512(_mm512_sub_ps(_mm512_setzero_ps(), t))));
}
#endif

#endif

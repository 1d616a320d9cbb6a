/* Seeded, counter-based random numbers (Philox4x32-10, Salmon et al. 2011, "Parallel random
 * numbers: as easy as 1, 2, 3"; checked against Random123's known-answer vectors).
 *
 * Philox is a keyed bijection of a 128-bit counter: output block = philox(counter, key). There
 * is no sequential state, so element i of every tensor depends only on (seed, stream, i):
 * results are identical for any thread count and any chunking, and a caller can regenerate
 * any slice without generating what precedes it.
 *
 * Layout of one draw (documented because reproducibility across versions depends on it):
 *   key     = { seed & 0xffffffff, seed >> 32 }
 *   counter = { b & 0xffffffff, (b >> 32) | domain << 24, stream & 0xffffffff, stream >> 32 }
 * where b is the block index and `domain` separates the kinds of draw so that rng_normal and
 * rng_uniform_int on the same (seed, stream) do not reuse bits:
 *   normal  (domain 1): block b = i/2 -> two 53-bit uniforms u1 in (0,1], u2 in [0,1)
 *                       (word0|word1<<32, word2|word3<<32, each >> 11), Box-Muller in double:
 *                       r = sqrt(-2 ln u1); out[2b] = r cos(2 pi u2), out[2b+1] = r sin(2 pi u2)
 *   uint    (domain 2): block b = i/2 -> element i uses the 64-bit word pair (2 (i%2), 2 (i%2)+1);
 *                       value = floor(w64 * bound / 2^64) (Lemire's multiply; bias <= bound/2^64)
 *   uniform (domain 3): block b = i/4 -> element i uses word (i%4): (w >> 8) * 2^-24, in [0,1)
 * Index limit: i < 2^56 (the top byte of counter word 1 carries the domain). */
#ifndef OCD_BASE_RNG_H
#define OCD_BASE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* The raw bijection: out = Philox4x32-10(ctr, key). */
void rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* out[i] ~ N(0, 1), i = 0..n-1, element i a function of (seed, stream, i) only. */
void rng_normal(uint64_t seed, uint64_t stream, float *out, size_t n);
/* Same values as rng_normal(seed, stream, ...) at indices first..first+n-1 (a slice). */
void rng_normal_at(uint64_t seed, uint64_t stream, uint64_t first, float *out, size_t n);

/* out[i] uniform in [0, bound), bound in 1..INT32_MAX. -1 (ocd_fail) on a bad bound. */
int rng_uniform_int(uint64_t seed, uint64_t stream, uint32_t bound, int32_t *out, size_t n);
/* out[i] uniform in [0, 1) with 24 random bits (exactly representable floats). */
void rng_uniform(uint64_t seed, uint64_t stream, float *out, size_t n);

/* Derives a stream id from a few small integers (e.g. step, layer, frame) by a SplitMix64
 * chain, so callers need not invent bit layouts: rng_stream(rng_stream(a, b), c). */
uint64_t rng_stream(uint64_t a, uint64_t b);

#endif

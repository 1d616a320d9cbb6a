#include "base/rng.h"

#include <math.h>
#include <stdint.h>

#include "base/error.h"

enum { DOMAIN_NORMAL = 1, DOMAIN_UINT = 2, DOMAIN_UNIFORM = 3 };

/* Philox constants (Random123 philox.h). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) { k0 += PHILOX_W0; k1 += PHILOX_W1; }   /* key schedule: bump between rounds */
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block(uint64_t seed, uint64_t stream, uint32_t domain, uint64_t b, uint32_t out[4]) {
    const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
    const uint32_t ctr[4] = { (uint32_t)b, (uint32_t)(b >> 32) | (domain << 24),
                              (uint32_t)stream, (uint32_t)(stream >> 32) };
    rng_philox4x32_10(ctr, key, out);
}

static void normal_pair(uint64_t seed, uint64_t stream, uint64_t b, double z[2]) {
    uint32_t w[4];
    block(seed, stream, DOMAIN_NORMAL, b, w);
    const double two53 = 1.0 / 9007199254740992.0;   /* 2^-53 */
    double u1 = (double)((((uint64_t)w[1] << 32 | w[0]) >> 11) + 1) * two53;   /* (0,1]: log is finite */
    double u2 = (double)(((uint64_t)w[3] << 32 | w[2]) >> 11) * two53;         /* [0,1) */
    double r = sqrt(-2.0 * log(u1));
    double a = 6.283185307179586476925 * u2;
    z[0] = r * cos(a);
    z[1] = r * sin(a);
}

void rng_normal_at(uint64_t seed, uint64_t stream, uint64_t first, float *out, size_t n) {
    if (n == 0) return;
    /* Pairs are independent, so the loop may be split across threads freely. */
    const uint64_t b0 = first / 2, b1 = (first + n - 1) / 2;
    #pragma omp parallel for schedule(static) if (n > (1u << 16))
    for (int64_t bb = (int64_t)b0; bb <= (int64_t)b1; bb++) {
        double z[2];
        normal_pair(seed, stream, (uint64_t)bb, z);
        for (int k = 0; k < 2; k++) {
            uint64_t i = (uint64_t)bb * 2 + (uint64_t)k;
            if (i >= first && i < first + n) out[i - first] = (float)z[k];
        }
    }
}

void rng_normal(uint64_t seed, uint64_t stream, float *out, size_t n) {
    rng_normal_at(seed, stream, 0, out, n);
}

int rng_uniform_int(uint64_t seed, uint64_t stream, uint32_t bound, int32_t *out, size_t n) {
    if (bound == 0 || bound > (uint32_t)INT32_MAX)
        return ocd_fail("rng_uniform_int: bound %u out of range 1..%d", bound, INT32_MAX);
    for (size_t i = 0; i < n; i++) {
        uint32_t w[4];
        block(seed, stream, DOMAIN_UINT, (uint64_t)i / 2, w);
        int j = (int)(i % 2) * 2;
        uint64_t x = (uint64_t)w[j + 1] << 32 | w[j];
        /* floor(x * bound / 2^64) without 128-bit arithmetic */
        uint64_t hi = (x >> 32) * bound, lo = (x & 0xffffffffu) * bound;
        out[i] = (int32_t)((hi + (lo >> 32)) >> 32);
    }
    return 0;
}

void rng_uniform(uint64_t seed, uint64_t stream, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t w[4];
        block(seed, stream, DOMAIN_UNIFORM, (uint64_t)i / 4, w);
        out[i] = (float)(w[i % 4] >> 8) * (1.0f / 16777216.0f);
    }
}

uint64_t rng_stream(uint64_t a, uint64_t b) {
    /* SplitMix64 finaliser over a ^ mixed(b): cheap, bijective in each argument. */
    uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Philox known answers, determinism (independent of slicing and thread count) and rough
 * distribution statistics of the seeded RNG. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "testlib.h"

static void test_kat(void) {
    /* Random123 tests/kat_vectors, philox4x32 10 */
    static const uint32_t ctr[3][4] = { { 0, 0, 0, 0 },
                                        { 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu },
                                        { 0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u } };
    static const uint32_t key[3][2] = { { 0, 0 }, { 0xffffffffu, 0xffffffffu }, { 0xa4093822u, 0x299f31d0u } };
    static const uint32_t want[3][4] = { { 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u },
                                         { 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu },
                                         { 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u } };
    for (int k = 0; k < 3; k++) {
        uint32_t out[4];
        rng_philox4x32_10(ctr[k], key[k], out);
        char name[64];
        snprintf(name, sizeof name, "philox4x32_10 KAT %d", k);
        t_check(!memcmp(out, want[k], sizeof out), name, "%08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    }
}

static void test_determinism(void) {
    const size_t n = 200003;   /* odd, above the parallel threshold */
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    rng_normal(42, 7, a, n);
    rng_normal(42, 7, b, n);
    t_check(!memcmp(a, b, n * sizeof(float)), "normal: same (seed, stream) same values", "n=%zu", n);

    int nthreads = omp_get_max_threads();
    omp_set_num_threads(1);
    rng_normal(42, 7, c, n);
    omp_set_num_threads(nthreads > 1 ? nthreads : 4);
    rng_normal(42, 7, b, n);
    omp_set_num_threads(nthreads);
    t_check(!memcmp(a, c, n * sizeof(float)) && !memcmp(a, b, n * sizeof(float)),
            "normal: independent of thread count", "1 vs %d threads", nthreads > 1 ? nthreads : 4);

    /* element i depends only on i: prefixes and odd-offset slices agree */
    float small[5];
    rng_normal(42, 7, small, 5);
    int ok = !memcmp(small, a, sizeof small);
    const size_t offs[] = { 1, 2, 3, 1001, 199990 };
    for (size_t k = 0; k < sizeof offs / sizeof *offs; k++) {
        size_t len = n - offs[k] < 13 ? n - offs[k] : 13;
        rng_normal_at(42, 7, offs[k], c, len);
        ok &= !memcmp(c, a + offs[k], len * sizeof(float));
    }
    t_check(ok, "normal: prefix / slice consistency", "offsets 1,2,3,1001,199990");

    rng_normal(43, 7, b, 64);
    rng_normal(42, 8, c, 64);
    int same_seed = 0, same_stream = 0;
    for (int i = 0; i < 64; i++) { same_seed += b[i] == a[i]; same_stream += c[i] == a[i]; }
    t_check(same_seed == 0 && same_stream == 0, "normal: other seed / stream differ", "equal elements %d, %d",
            same_seed, same_stream);

    int32_t ia[100], ib[100];
    rng_uniform_int(42, 7, 4, ia, 100);
    rng_uniform_int(42, 7, 4, ib, 100);
    t_check(!memcmp(ia, ib, sizeof ia), "uniform_int: deterministic", "n=100");
    free(a); free(b); free(c);
}

static void test_stats(void) {
    const size_t n = t_quick() ? (1u << 18) : (1u << 21);
    float *z = malloc(n * sizeof(float));
    rng_normal(1234, 0, z, n);
    double m = 0, m2 = 0, m3 = 0, m4 = 0;
    size_t within1 = 0, nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        double v = z[i];
        if (!isfinite(v)) nonfinite++;
        m += v; m2 += v * v; m3 += v * v * v; m4 += v * v * v * v;
        within1 += fabs(v) < 1.0;
    }
    m /= n; m2 /= n; m3 /= n; m4 /= n;
    double var = m2 - m * m, se = 1.0 / sqrt((double)n);
    t_check(nonfinite == 0 && fabs(m) < 5 * se && fabs(var - 1) < 10 * se && fabs(m3) < 20 * se &&
            fabs(m4 - 3) < 60 * se && fabs((double)within1 / n - 0.682689) < 5 * 0.466 * se,
            "normal: moments", "n=%zu mean %.5f var %.5f skew %.5f kurt %.4f P(|z|<1) %.5f",
            n, m, var, m3, m4, (double)within1 / n);
    free(z);

    const size_t nu = 1u << 18;
    int32_t *u = malloc(nu * sizeof(int32_t));
    long cnt[7] = { 0 };
    int in_range = !rng_uniform_int(5, 1, 7, u, nu);
    for (size_t i = 0; i < nu; i++) {
        if (u[i] < 0 || u[i] >= 7) in_range = 0; else cnt[u[i]]++;
    }
    double chi2 = 0, e = nu / 7.0;
    for (int k = 0; k < 7; k++) chi2 += (cnt[k] - e) * (cnt[k] - e) / e;
    t_check(in_range && chi2 < 30, "uniform_int: range and chi^2 (6 dof)", "chi2 %.2f", chi2);
    t_check(rng_uniform_int(5, 1, 0, u, 1) == -1, "uniform_int: bound 0 is an error", "%s", "");
    free(u);

    float *f = malloc(nu * sizeof(float));
    rng_uniform(9, 2, f, nu);
    double s = 0;
    int ok = 1;
    for (size_t i = 0; i < nu; i++) { s += f[i]; ok &= f[i] >= 0 && f[i] < 1; }
    t_check(ok && fabs(s / nu - 0.5) < 0.005, "uniform: [0,1) and mean", "mean %.5f", s / nu);
    free(f);

    uint64_t s1 = rng_stream(rng_stream(3, 4), 5), s2 = rng_stream(rng_stream(3, 5), 4);
    t_check(s1 != s2 && rng_stream(0, 0) != rng_stream(0, 1), "rng_stream: order matters", "%llx %llx",
            (unsigned long long)s1, (unsigned long long)s2);
}

int main(int argc, char **argv) {
    (void)argc;
    test_kat();
    test_determinism();
    test_stats();
    return t_summary(argv[0]);
}

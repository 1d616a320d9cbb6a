#include "testlib.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas_core.h"
#include "base/error.h"

static int g_pass, g_fail;

/* Test programs run the BLAS kernels the ocd binary runs (see base/blas_core.h): before main,
 * re-run this program with the right OPENBLAS_CORETYPE when the library misdetected the CPU. */
__attribute__((constructor)) static void t_select_blas_core(void) {
    static char buf[8192];
    char *argv[64];
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    int argc = 0;
    for (size_t i = 0; i < n && argc < 63; i += strlen(buf + i) + 1) argv[argc++] = buf + i;
    argv[argc] = NULL;
    if (argc) blas_select_core(argv);
}

int t_check(int ok, const char *name, const char *fmt, ...) {
    printf("%s  %-44s ", ok ? "PASS" : "FAIL", name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (ok) g_pass++; else g_fail++;
    return ok;
}

int t_close(const char *name, const float *got, const float *ref, size_t n, double atol, double rtol) {
    double max_abs = 0, max_rel = 0, worst_excess = 0;
    size_t bad = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!isfinite(got[i])) d = INFINITY;
        double r = d / (fabs((double)ref[i]) + 1e-12);
        if (d > max_abs) max_abs = d;
        if (r > max_rel && fabs(ref[i]) > 1e-6) max_rel = r;
        double lim = atol + rtol * fabs((double)ref[i]);
        if (!(d <= lim)) {
            bad++;
            if (d - lim > worst_excess || bad == 1) { worst_excess = d - lim; worst = i; }
        }
    }
    if (bad)
        return t_check(0, name, "max_abs %.3g max_rel %.3g (atol %.2g rtol %.2g) %zu/%zu bad, e.g. [%zu] got %.7g ref %.7g",
                       max_abs, max_rel, atol, rtol, bad, n, worst, got[worst], ref[worst]);
    return t_check(1, name, "max_abs %.3g max_rel %.3g (atol %.2g rtol %.2g) n=%zu", max_abs, max_rel, atol, rtol, n);
}

int t_equal_i32(const char *name, const int32_t *got, const int32_t *ref, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != ref[i]) return t_check(0, name, "differs at [%zu]: got %d ref %d", i, got[i], ref[i]);
    return t_check(1, name, "exact, n=%zu", n);
}

int t_summary(const char *prog) {
    const char *base = strrchr(prog, '/');
    printf("%s: %d passed, %d failed\n", base ? base + 1 : prog, g_pass, g_fail);
    return g_fail ? 1 : 0;
}

int t_quick(void) {
    const char *q = getenv("OCD_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* One cache of parsed specs, keyed by file pointer (tests open few files). */
/* Keyed by path: a closed file's pointer may be reused by the next one opened. */
static struct { char path[512]; json_t *spec; } g_specs[64];

st_file *golden_open(const char *case_name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", GOLDEN_DIR, case_name);
    st_file *f = st_open(path);
    if (!f) {
        fprintf(stderr, "golden_open: %s\n", ocd_last_error());
        exit(2);
    }
    return f;
}

void *golden_spec(st_file *g) {
    for (int i = 0; i < 64; i++) if (!strcmp(g_specs[i].path, st_path(g))) return g_specs[i].spec;
    const char *s = st_metadata(g, "spec");
    json_error_t err;
    json_t *spec = s ? json_loads(s, 0, &err) : NULL;
    if (!spec) { fprintf(stderr, "golden %s: no readable spec\n", st_path(g)); exit(2); }
    for (int i = 0; i < 64; i++)
        if (!g_specs[i].path[0]) { snprintf(g_specs[i].path, sizeof g_specs[i].path, "%s", st_path(g)); g_specs[i].spec = spec; break; }
    return spec;
}

float *golden_f32(st_file *g, const char *name) {
    const st_tensor *t = st_find(g, name);
    float *p = t ? st_to_f32(t) : NULL;
    if (!p) { fprintf(stderr, "golden %s: tensor %s missing or unreadable\n", st_path(g), name); exit(2); }
    return p;
}

int golden_check(st_file *g, const char *name, const float *got, size_t n) {
    json_t *spec = golden_spec(g);
    json_t *o = json_object_get(json_object_get(spec, "outputs"), name);
    const st_tensor *t = st_find(g, name);
    char label[256];
    const char *base = strrchr(st_path(g), '/');
    snprintf(label, sizeof label, "%.60s:%s", base ? base + 1 : st_path(g), name);
    if (!t || !o) return t_check(0, label, "no such golden output");
    if ((size_t)t->numel != n) return t_check(0, label, "size %zu, golden has %lld", n, (long long)t->numel);
    float *ref = golden_f32(g, name);
    double rtol = json_number_value(json_object_get(o, "rtol"));
    double atol = json_number_value(json_object_get(o, "atol"));
    if (json_is_true(json_object_get(o, "exact"))) rtol = atol = 0;
    int ok = t_close(label, got, ref, n, atol, rtol);
    free(ref);
    return ok;
}

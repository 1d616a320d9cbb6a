/* ToMe golden probe: tomesd bipartite_soft_matching_random2d (no_rand) per batch item. */
#include "app/probe_tome.h"

#include <jansson.h>
#include <stdlib.h>

#include "app/probe_util.h"
#include "base/error.h"
#include "edit/tome.h"
#include "io/safetensors.h"

static int param_int(const json_t *params, const char *key, int def) {
    json_t *v = json_object_get(params, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

int probe_tome(const char *in_path, const char *out_path) {
    st_file *f;
    json_t *spec;
    if (probe_open(in_path, &f, &spec)) return -1;
    const json_t *params = json_object_get(spec, "params");
    const st_tensor *xt = st_find(f, "x"), *yt = st_find(f, "y");
    float *x = NULL, *y = NULL, *merged = NULL, *unm = NULL, *rt = NULL;
    tome_plan plan = {0};
    st_writer *w = NULL;
    int rc = -1;
    if (!xt || xt->ndim != 3) { ocd_fail("%s: tome needs x [B, N, C]", in_path); goto done; }
    int B = (int)xt->shape[0], N = (int)xt->shape[1], C = (int)xt->shape[2];
    int h = param_int(params, "h", 0), wd = param_int(params, "w", 0);
    int sx = param_int(params, "sx", 2), sy = param_int(params, "sy", 2);
    json_t *rj = json_object_get(params, "ratio");
    double ratio = json_is_number(rj) ? json_number_value(rj) : 0.5;
    if (h * wd != N) { ocd_fail("%s: params h %d x w %d disagree with x's %d tokens", in_path, h, wd, N); goto done; }
    if (!(x = st_to_f32(xt)) || tome_plan_init(&plan, N)) goto done;
    int M = -1;
    for (int b = 0; b < B; b++) {
        if (tome_bipartite_plan(x + (size_t)b * N * C, C, h, wd, sx, sy, (float)ratio, NULL, &plan)) goto done;
        if (M < 0) {
            M = plan.n_out;
            if (yt && (yt->ndim != 3 || yt->shape[0] != B || yt->shape[1] != M || yt->shape[2] != C)) {
                ocd_fail("%s: y must be [%d, %d, %d]", in_path, B, M, C);
                goto done;
            }
            merged = ocd_malloc(sizeof(float) * (size_t)B * M * C);
            rt = ocd_malloc(sizeof(float) * (size_t)B * N * C);
            unm = ocd_malloc(sizeof(float) * (size_t)B * N * C);
            if (!merged || !rt || !unm || (yt && !(y = st_to_f32(yt)))) goto done;
        }
        tome_merge(&plan, x + (size_t)b * N * C, C, merged + (size_t)b * M * C);
        tome_unmerge(&plan, merged + (size_t)b * M * C, C, rt + (size_t)b * N * C);
        if (y) tome_unmerge(&plan, y + (size_t)b * M * C, C, unm + (size_t)b * N * C);
    }
    if (!(w = st_writer_new())) goto done;
    if (B > 0 && (st_writer_add_f32(w, "merged", 3, (int64_t[]){B, M, C}, merged) ||
                  st_writer_add_f32(w, "roundtrip", 3, (int64_t[]){B, N, C}, rt) ||
                  (y && st_writer_add_f32(w, "unmerged_y", 3, (int64_t[]){B, N, C}, unm))))
        goto done;
    rc = st_writer_save(w, out_path);
done:
    st_writer_free(w);
    tome_plan_free(&plan);
    free(x); free(y); free(merged); free(unm); free(rt);
    json_decref(spec);
    st_close(f);
    return rc;
}

/* AutoencoderKL (algorithms.md E.3): layer descriptions built from the config, weights
 * pulled by diffusers names, and one forward walker per direction.
 *
 * Memory: every forward runs twice through the same code, first in "plan" mode (no
 * arithmetic, no buffers: it only records the largest activation, conv scratch,
 * attention scratch and the FLOPs), then for real on a workspace sized from that plan.
 * So the plan can never disagree with the computation. Activations live in three
 * rotating buffers of the largest activation size. */
#include "nn/vae.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "kernels/kernels.h"

#define VAE_MAX_RES 9 /* resnets per level (decoder: layers_per_block + 1) */

typedef struct {
    int ci, co, k, stride, pad_t, pad_b, pad_l, pad_r;
    const float *w; /* [co, ci, k, k] */
    const float *b; /* [co] */
} vconv;

typedef struct {
    int c;
    const float *g, *b; /* [c] */
} vnorm;

typedef struct {
    int ci, co;
    vnorm n1, n2;
    vconv c1, c2;
    int has_sc;
    vconv sc;           /* 1x1 shortcut when ci != co */
} vres;

typedef struct {
    int c;
    vnorm n;
    const float *wq, *wk, *wv, *wo; /* [c, c] Linear (out, in) */
    const float *bq, *bk, *bv, *bo; /* [c] */
} vattn;

typedef struct {
    vres r0;
    vattn attn;
    vres r1;
} vmid;

typedef struct {
    int nres;
    vres res[VAE_MAX_RES];
    int has_resample;   /* encoder: downsample; decoder: upsample */
    vconv resample;
} vlevel;

struct vae {
    vae_config cfg;
    /* encoder */
    vconv e_in;
    vlevel e_lv[VAE_MAX_LEVELS];
    vmid e_mid;
    vnorm e_nout;
    vconv e_out, quant;
    /* decoder */
    vconv post_quant, d_in;
    vmid d_mid;
    vlevel d_lv[VAE_MAX_LEVELS];
    vnorm d_nout;
    vconv d_out;
    /* workspace: act[3] | conv scratch | attention scratch */
    float *ws;
    size_t ws_floats;
    int bf16;            /* 1: convs and the attention's linears run on bf16 weights (wb) */
    k_bf16_set wb;
    int tile, overlap;   /* tiling, in latent cells: frames larger than tile x tile go by tiles (0: never) */
};

/* ------------------------------------------------------------------ config */

void vae_config_sd15(vae_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = 3;
    c->out_channels = 3;
    c->latent_channels = 4;
    c->n_levels = 4;
    c->block_out[0] = 128; c->block_out[1] = 256; c->block_out[2] = 512; c->block_out[3] = 512;
    c->layers_per_block = 2;
    c->groups = 32;
    c->eps = 1e-6f;
    c->scaling_factor = 0.18215f;
}

int vae_downscale(const vae_config *c) { return 1 << (c->n_levels - 1); }

static int check_config(const vae_config *c) {
    if (c->n_levels < 1 || c->n_levels > VAE_MAX_LEVELS)
        return ocd_fail("vae config: %d levels (1..%d supported)", c->n_levels, VAE_MAX_LEVELS);
    if (c->layers_per_block < 1 || c->layers_per_block + 1 > VAE_MAX_RES)
        return ocd_fail("vae config: layers_per_block %d (1..%d supported)", c->layers_per_block, VAE_MAX_RES - 1);
    if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1 || c->groups < 1)
        return ocd_fail("vae config: channel and group counts must be positive");
    if (!(c->eps > 0) || !(c->scaling_factor > 0))
        return ocd_fail("vae config: eps and scaling_factor must be positive");
    for (int i = 0; i < c->n_levels; i++)
        if (c->block_out[i] < 1 || c->block_out[i] % c->groups)
            return ocd_fail("vae config: block_out_channels[%d] = %d is not a positive multiple of norm_num_groups %d",
                            i, c->block_out[i], c->groups);
    return 0;
}

static int json_int(json_t *root, const char *key, int dflt, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = dflt; return 0; }
    if (!json_is_integer(v)) return ocd_fail("vae config: \"%s\" is not an integer", key);
    *out = (int)json_integer_value(v);
    return 0;
}

/* Every entry of the string array `key` (if present) must equal `want`; returns its length or -1. */
static int json_all_strings(json_t *root, const char *key, const char *want, int *len) {
    json_t *a = json_object_get(root, key);
    *len = -1;
    if (!a) return 0;
    if (!json_is_array(a)) return ocd_fail("vae config: \"%s\" is not an array", key);
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s || strcmp(s, want))
            return ocd_fail("vae config: %s[%zu] = %s is not supported (only %s)", key, i, s ? s : "?", want);
    }
    *len = (int)json_array_size(a);
    return 0;
}

int vae_config_from_json(vae_config *c, const char *json_text) {
    json_error_t err;
    json_t *root = json_loads(json_text, 0, &err);
    if (!root) return ocd_fail("vae config: invalid JSON at line %d: %s", err.line, err.text);
    int rc = -1;
    memset(c, 0, sizeof *c);
    if (!json_is_object(root)) { ocd_fail("vae config: not a JSON object"); goto done; }
    /* defaults are diffusers' AutoencoderKL.__init__ defaults */
    if (json_int(root, "in_channels", 3, &c->in_channels) || json_int(root, "out_channels", 3, &c->out_channels) ||
        json_int(root, "latent_channels", 4, &c->latent_channels) ||
        json_int(root, "layers_per_block", 1, &c->layers_per_block) ||
        json_int(root, "norm_num_groups", 32, &c->groups))
        goto done;
    json_t *bo = json_object_get(root, "block_out_channels");
    if (!bo) { c->n_levels = 1; c->block_out[0] = 64; }
    else {
        if (!json_is_array(bo) || json_array_size(bo) < 1 || json_array_size(bo) > VAE_MAX_LEVELS) {
            ocd_fail("vae config: block_out_channels must be an array of 1..%d integers", VAE_MAX_LEVELS);
            goto done;
        }
        c->n_levels = (int)json_array_size(bo);
        for (int i = 0; i < c->n_levels; i++) {
            json_t *e = json_array_get(bo, i);
            if (!json_is_integer(e)) { ocd_fail("vae config: block_out_channels[%d] is not an integer", i); goto done; }
            c->block_out[i] = (int)json_integer_value(e);
        }
    }
    int nd, nu;
    if (json_all_strings(root, "down_block_types", "DownEncoderBlock2D", &nd) ||
        json_all_strings(root, "up_block_types", "UpDecoderBlock2D", &nu))
        goto done;
    if ((nd >= 0 && nd != c->n_levels) || (nu >= 0 && nu != c->n_levels)) {
        ocd_fail("vae config: %d down / %d up block types for %d block_out_channels", nd, nu, c->n_levels);
        goto done;
    }
    json_t *act = json_object_get(root, "act_fn");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu"))) {
        ocd_fail("vae config: act_fn must be \"silu\"");
        goto done;
    }
    const char *must_true[] = {"mid_block_add_attention", "use_quant_conv", "use_post_quant_conv"};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(root, must_true[i]);
        if (v && json_is_false(v)) { ocd_fail("vae config: %s = false is not supported", must_true[i]); goto done; }
    }
    json_t *sf = json_object_get(root, "scaling_factor");
    c->scaling_factor = sf && json_is_number(sf) ? (float)json_number_value(sf) : 0.18215f;
    c->eps = 1e-6f; /* diffusers hard-codes it for every VAE GroupNorm */
    rc = check_config(c);
done:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ construction */

#define VAE_NAME_MAX 256

/* Formats a tensor name into buf[VAE_NAME_MAX] (names here are far shorter). */
static const char *nm(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *nm(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, VAE_NAME_MAX, fmt, ap);
    va_end(ap);
    return buf;
}

/* With ws == NULL only the dimensions are filled in (for FLOP counts). */
static int load_conv(vconv *c, ws_source *ws, int ci, int co, int k, int stride, int pad, const char *name) {
    *c = (vconv){ci, co, k, stride, pad, pad, pad, pad, NULL, NULL};
    if (!ws) return 0;
    if (!(c->w = ws_getf(ws, WS_SHAPE4(co, ci, k, k), "%s.weight", name))) return -1;
    if (!(c->b = ws_getf(ws, WS_SHAPE1(co), "%s.bias", name))) return -1;
    return 0;
}

static int load_norm(vnorm *n, ws_source *ws, int c, const char *name) {
    n->c = c;
    n->g = n->b = NULL;
    if (!ws) return 0;
    if (!(n->g = ws_getf(ws, WS_SHAPE1(c), "%s.weight", name))) return -1;
    if (!(n->b = ws_getf(ws, WS_SHAPE1(c), "%s.bias", name))) return -1;
    return 0;
}

static int load_res(vres *r, ws_source *ws, int ci, int co, const char *name) {
    char b[VAE_NAME_MAX];
    r->ci = ci;
    r->co = co;
    r->has_sc = ci != co;
    if (load_norm(&r->n1, ws, ci, nm(b, "%s.norm1", name)) ||
        load_conv(&r->c1, ws, ci, co, 3, 1, 1, nm(b, "%s.conv1", name)) ||
        load_norm(&r->n2, ws, co, nm(b, "%s.norm2", name)) ||
        load_conv(&r->c2, ws, co, co, 3, 1, 1, nm(b, "%s.conv2", name)))
        return -1;
    if (r->has_sc && load_conv(&r->sc, ws, ci, co, 1, 1, 0, nm(b, "%s.conv_shortcut", name)))
        return -1;
    return 0;
}

static int load_attn(vattn *a, ws_source *ws, int c, const char *name) {
    a->c = c;
    char b[VAE_NAME_MAX];
    if (load_norm(&a->n, ws, c, nm(b, "%s.group_norm", name))) return -1;
    if (!ws) return 0;
    /* current diffusers names, else the pre-0.14 AttentionBlock names */
    static const char *const names[2][4] = {{"to_q", "to_k", "to_v", "to_out.0"}, {"query", "key", "value", "proj_attn"}};
    nm(b, "%s.to_q.weight", name);
    const char *const *n = names[ws_has(ws, b) ? 0 : 1];
    const float **w[4] = {&a->wq, &a->wk, &a->wv, &a->wo}, **bias[4] = {&a->bq, &a->bk, &a->bv, &a->bo};
    for (int i = 0; i < 4; i++) {
        if (!(*w[i] = ws_getf(ws, WS_SHAPE2(c, c), "%s.%s.weight", name, n[i]))) return -1;
        if (!(*bias[i] = ws_getf(ws, WS_SHAPE1(c), "%s.%s.bias", name, n[i]))) return -1;
    }
    return 0;
}

static int load_mid(vmid *m, ws_source *ws, int c, const char *part) {
    char b[VAE_NAME_MAX];
    return load_res(&m->r0, ws, c, c, nm(b, "%s.mid_block.resnets.0", part)) ||
                   load_attn(&m->attn, ws, c, nm(b, "%s.mid_block.attentions.0", part)) ||
                   load_res(&m->r1, ws, c, c, nm(b, "%s.mid_block.resnets.1", part))
               ? -1
               : 0;
}

static int build(vae *v, ws_source *ws) {
    const vae_config *c = &v->cfg;
    const int n = c->n_levels, L = c->latent_channels, top = c->block_out[n - 1];
    char b[VAE_NAME_MAX];
    /* encoder */
    if (load_conv(&v->e_in, ws, c->in_channels, c->block_out[0], 3, 1, 1, "encoder.conv_in")) return -1;
    int prev = c->block_out[0];
    for (int i = 0; i < n; i++) {
        vlevel *lv = &v->e_lv[i];
        int co = c->block_out[i];
        lv->nres = c->layers_per_block;
        for (int j = 0; j < lv->nres; j++)
            if (load_res(&lv->res[j], ws, j ? co : prev, co,
                         nm(b, "encoder.down_blocks.%d.resnets.%d", i, j)))
                return -1;
        lv->has_resample = i < n - 1;
        if (lv->has_resample) {
            if (load_conv(&lv->resample, ws, co, co, 3, 2, 0,
                          nm(b, "encoder.down_blocks.%d.downsamplers.0.conv", i)))
                return -1;
            /* diffusers Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then the conv */
            lv->resample.pad_b = lv->resample.pad_r = 1;
        }
        prev = co;
    }
    if (load_mid(&v->e_mid, ws, top, "encoder") || load_norm(&v->e_nout, ws, top, "encoder.conv_norm_out") ||
        load_conv(&v->e_out, ws, top, 2 * L, 3, 1, 1, "encoder.conv_out") ||
        load_conv(&v->quant, ws, 2 * L, 2 * L, 1, 1, 0, "quant_conv"))
        return -1;
    /* decoder: levels run from the top channel count back down */
    if (load_conv(&v->post_quant, ws, L, L, 1, 1, 0, "post_quant_conv") ||
        load_conv(&v->d_in, ws, L, top, 3, 1, 1, "decoder.conv_in") || load_mid(&v->d_mid, ws, top, "decoder"))
        return -1;
    prev = top;
    for (int i = 0; i < n; i++) {
        vlevel *lv = &v->d_lv[i];
        int co = c->block_out[n - 1 - i];
        lv->nres = c->layers_per_block + 1;
        for (int j = 0; j < lv->nres; j++)
            if (load_res(&lv->res[j], ws, j ? co : prev, co,
                         nm(b, "decoder.up_blocks.%d.resnets.%d", i, j)))
                return -1;
        lv->has_resample = i < n - 1;
        if (lv->has_resample &&
            load_conv(&lv->resample, ws, co, co, 3, 1, 1,
                      nm(b, "decoder.up_blocks.%d.upsamplers.0.conv", i)))
            return -1;
        prev = co;
    }
    if (load_norm(&v->d_nout, ws, c->block_out[0], "decoder.conv_norm_out") ||
        load_conv(&v->d_out, ws, c->block_out[0], c->out_channels, 3, 1, 1, "decoder.conv_out"))
        return -1;
    return 0;
}

static vae *vae_alloc(const vae_config *c) {
    if (check_config(c)) return NULL;
    vae *v = ocd_calloc(1, sizeof *v);
    if (v) {
        v->cfg = *c;
        v->tile = VAE_TILE_DEFAULT / vae_downscale(c);
        v->overlap = VAE_OVERLAP_DEFAULT / vae_downscale(c);
    }
    return v;
}

vae *vae_new(const vae_config *c, ws_source *ws) {
    if (!ws) { ocd_fail("vae: no weight source"); return NULL; }
    vae *v = vae_alloc(c);
    if (!v) return NULL;
    if (build(v, ws)) {
        ocd_fail_context("vae");
        vae_free(v);
        return NULL;
    }
    return v;
}

void vae_free(vae *v) {
    if (!v) return;
    k_bf16_set_clear(&v->wb, 0);
    free(v->ws);
    free(v);
}

const vae_config *vae_get_config(const vae *v) { return &v->cfg; }

/* ------------------------------------------------------------------ precision */

static int add_conv(vae *v, const vconv *c) {
    /* the 3-channel image convs and the 4-channel latent ones stay fp32 (see unet.c) */
    if (!c->w || c->ci < 16 || c->co < 16) return 0;
    return k_bf16_set_add(&v->wb, (float *)c->w, k_bf16_conv_desc(c->co, c->ci, c->k, c->k, c->stride));
}

static int add_res(vae *v, const vres *r) {
    return add_conv(v, &r->c1) || add_conv(v, &r->c2) || (r->has_sc && add_conv(v, &r->sc));
}

static int add_mid(vae *v, const vmid *m) {
    const int C = m->attn.c;
    const float *w[4] = {m->attn.wq, m->attn.wk, m->attn.wv, m->attn.wo};
    if (add_res(v, &m->r0) || add_res(v, &m->r1)) return -1;
    for (int i = 0; i < 4; i++)
        if (k_bf16_set_add(&v->wb, (float *)w[i], k_bf16_linear_desc(C, C))) return -1;
    return 0;
}

static int pack_all(vae *v) {
    const vae_config *c = &v->cfg;
    if (add_conv(v, &v->e_in) || add_mid(v, &v->e_mid) || add_conv(v, &v->e_out) || add_conv(v, &v->quant) ||
        add_conv(v, &v->post_quant) || add_conv(v, &v->d_in) || add_mid(v, &v->d_mid) || add_conv(v, &v->d_out))
        return -1;
    for (int i = 0; i < c->n_levels; i++)
        for (int side = 0; side < 2; side++) {
            const vlevel *lv = side ? &v->d_lv[i] : &v->e_lv[i];
            for (int j = 0; j < lv->nres; j++)
                if (add_res(v, &lv->res[j])) return -1;
            if (lv->has_resample && add_conv(v, &lv->resample)) return -1;
        }
    return 0;
}

int vae_set_precision(vae *v, int bf16) {
    if (!bf16 == !v->bf16) return 0;
    if (!bf16) {
        k_bf16_set_clear(&v->wb, 1);
        v->bf16 = 0;
        return 0;
    }
    if (!k_bf16_available()) {
        fprintf(stderr, "ocd: bf16 needs AMX-BF16 (not available on this CPU/OS): the VAE stays fp32\n");
        return 0;
    }
    if (pack_all(v)) {
        k_bf16_set_clear(&v->wb, 1);
        return ocd_fail_context("vae: switching to bf16");
    }
    v->bf16 = 1;
    return 0;
}

int vae_precision_bf16(const vae *v) { return v->bf16; }

/* ------------------------------------------------------------------ forward */

typedef struct {
    int plan;                /* 1: record sizes and FLOPs only */
    vae *v;                  /* for the bf16 weights (NULL: fp32) */
    float *act[3];           /* rotating activation buffers, act_floats[i] each */
    float *conv_scr, *attn_scr;
    /* plan: maxima seen. Per buffer, because the rotation is fixed: at a level change
     * only two of the three hold the wider activation (SD at 512x512: -17% memory). */
    size_t act_floats[3], conv_floats, attn_floats;
    double flops;
    int cur;                 /* index of the buffer holding the current activation */
    int C, H, W;             /* its shape */
} run;

static void need(size_t *m, size_t n) { if (n > *m) *m = n; }

/* dst[co, Ho, Wo] = conv(src[ci, H, W]). */
static void op_conv(run *r, const vconv *c, int src, int dst, int *H, int *W) {
    k_conv_shape s = {c->ci, *H, *W, c->co, c->k, c->k, c->stride, c->pad_t, c->pad_b, c->pad_l, c->pad_r};
    int ho = k_conv_out_h(&s), wo = k_conv_out_w(&s);
    const k_bf16_weight *wb = r->v && r->v->bf16 ? k_bf16_set_find(&r->v->wb, c->w) : NULL;
    if (r->plan) {
        need(&r->act_floats[dst], (size_t)c->co * ho * wo);
        need(&r->conv_floats, wb ? k_conv2d_bf16_scratch_floats(&s) : k_conv2d_scratch_floats(&s));
        r->flops += 2.0 * c->co * c->ci * c->k * c->k * (double)ho * wo;
    } else if (wb) {
        k_conv2d_bf16(r->act[dst], r->act[src], wb, c->b, &s, r->conv_scr);
    } else {
        k_conv2d(r->act[dst], r->act[src], c->w, c->b, &s, r->conv_scr);
    }
    *H = ho;
    *W = wo;
}

static void op_norm(run *r, const vnorm *n, float eps, int groups, int src, int dst, int HW, int silu) {
    if (r->plan) need(&r->act_floats[dst], (size_t)n->c * HW);
    else k_group_norm(r->act[dst], r->act[src], n->g, n->b, n->c, HW, groups, eps, silu);
}

static void op_add(run *r, int dst, int src, size_t n) {
    if (!r->plan) k_add(r->act[dst], r->act[src], n);
}

/* ResnetBlock2D without time embedding: x + conv2(silu(gn(conv1(silu(gn(x)))))),
 * the skip through a 1x1 conv when channels change. */
static void op_res(run *r, const vres *res, const vae_config *cfg) {
    int x = r->cur, t = (x + 1) % 3, u = (x + 2) % 3, H = r->H, W = r->W, HW = H * W;
    op_norm(r, &res->n1, cfg->eps, cfg->groups, x, t, HW, 1);
    op_conv(r, &res->c1, t, u, &H, &W);
    op_norm(r, &res->n2, cfg->eps, cfg->groups, u, u, HW, 1);
    op_conv(r, &res->c2, u, t, &H, &W);
    if (res->has_sc) {
        op_conv(r, &res->sc, x, u, &H, &W);
        op_add(r, t, u, (size_t)res->co * HW);
    } else {
        op_add(r, t, x, (size_t)res->co * HW);
    }
    r->cur = t;
    r->C = res->co;
}

static void vlin(run *r, float *y, const float *x, const float *w, const float *b, int M, int K, int N) {
    const k_bf16_weight *wb = r->v && r->v->bf16 ? k_bf16_set_find(&r->v->wb, w) : NULL;
    if (wb) k_linear_bf16(y, x, wb, b, M, K, N);
    else k_linear(y, x, w, b, M, K, N);
}

/* Single-head self-attention over the H*W tokens, with its own GroupNorm and residual. */
static void op_attn(run *r, const vattn *a, const vae_config *cfg) {
    const int x = r->cur, t = (x + 1) % 3, u = (x + 2) % 3, C = a->c, N = r->H * r->W;
    const size_t nc = (size_t)N * C;
    if (r->plan) {
        need(&r->act_floats[t], nc);
        need(&r->act_floats[u], nc);
        need(&r->attn_floats, 3 * nc + k_attention_scratch_floats(N, N));
        r->flops += 8.0 * N * (double)C * C + 4.0 * N * (double)N * C;
        return;
    }
    float *q = r->attn_scr, *k = q + nc, *v = k + nc, *scores = v + nc;
    k_group_norm(r->act[t], r->act[x], a->n.g, a->n.b, C, N, cfg->groups, cfg->eps, 0);
    k_transpose(r->act[u], r->act[t], C, N);                       /* tokens [N, C] */
    vlin(r, q, r->act[u], a->wq, a->bq, N, C, C);
    vlin(r, k, r->act[u], a->wk, a->bk, N, C, C);
    vlin(r, v, r->act[u], a->wv, a->bv, N, C, C);
    k_attention(r->act[t], C, q, C, k, C, v, C, N, N, 1, C, 1.0f / sqrtf((float)C), 0, scores);
    vlin(r, r->act[u], r->act[t], a->wo, a->bo, N, C, C);
    k_transpose(r->act[t], r->act[u], N, C);                       /* back to [C, N] */
    k_add(r->act[x], r->act[t], nc);
}

static void op_mid(run *r, const vmid *m, const vae_config *cfg) {
    op_res(r, &m->r0, cfg);
    op_attn(r, &m->attn, cfg);
    op_res(r, &m->r1, cfg);
}

/* Convolution from the current buffer into the next one. */
static void op_conv_cur(run *r, const vconv *c) {
    int dst = (r->cur + 1) % 3;
    op_conv(r, c, r->cur, dst, &r->H, &r->W);
    r->cur = dst;
    r->C = c->co;
}

/* Upsample2D: nearest x2 then conv, fused (the x2 plane is never stored). */
static void op_upconv(run *r, const vconv *c) {
    k_conv_shape s = {c->ci, r->H, r->W, c->co, c->k, c->k, c->stride, c->pad_t, c->pad_b, c->pad_l, c->pad_r};
    int ho = k_conv_up2_out_h(&s), wo = k_conv_up2_out_w(&s), dst = (r->cur + 1) % 3;
    const k_bf16_weight *wb = r->v && r->v->bf16 ? k_bf16_set_find(&r->v->wb, c->w) : NULL;
    if (r->plan) {
        need(&r->act_floats[dst], (size_t)c->co * ho * wo);
        need(&r->conv_floats, wb ? k_conv2d_up2_bf16_scratch_floats(&s) : k_conv2d_up2_scratch_floats(&s));
        r->flops += 2.0 * c->co * c->ci * c->k * c->k * (double)ho * wo;
    } else if (wb) {
        k_conv2d_up2_bf16(r->act[dst], r->act[r->cur], wb, c->b, &s, r->conv_scr);
    } else {
        k_conv2d_up2(r->act[dst], r->act[r->cur], c->w, c->b, &s, r->conv_scr);
    }
    r->cur = dst;
    r->C = c->co;
    r->H = ho;
    r->W = wo;
}

static void run_encoder(const vae *v, run *r, const float *image, int H, int W, float *mean, float *logvar) {
    const vae_config *c = &v->cfg;
    r->cur = 0; r->C = c->in_channels; r->H = H; r->W = W;
    if (r->plan) need(&r->act_floats[0], (size_t)c->in_channels * H * W);
    else memcpy(r->act[0], image, sizeof(float) * c->in_channels * H * W);
    op_conv_cur(r, &v->e_in);
    for (int i = 0; i < c->n_levels; i++) {
        const vlevel *lv = &v->e_lv[i];
        for (int j = 0; j < lv->nres; j++) op_res(r, &lv->res[j], c);
        if (lv->has_resample) op_conv_cur(r, &lv->resample);
    }
    op_mid(r, &v->e_mid, c);
    op_norm(r, &v->e_nout, c->eps, c->groups, r->cur, r->cur, r->H * r->W, 1);
    op_conv_cur(r, &v->e_out);
    op_conv_cur(r, &v->quant);
    if (r->plan) return;
    /* moments [2L, h, w] = (mean, logvar) */
    const size_t n = (size_t)c->latent_channels * r->H * r->W;
    const float *mom = r->act[r->cur];
    memcpy(mean, mom, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        float lv = mom[n + i];
        logvar[i] = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
    }
}

static void run_decoder(const vae *v, run *r, const float *z, int h, int w, float *image) {
    const vae_config *c = &v->cfg;
    r->cur = 0; r->C = c->latent_channels; r->H = h; r->W = w;
    if (r->plan) need(&r->act_floats[0], (size_t)c->latent_channels * h * w);
    else memcpy(r->act[0], z, sizeof(float) * c->latent_channels * h * w);
    op_conv_cur(r, &v->post_quant);
    op_conv_cur(r, &v->d_in);
    op_mid(r, &v->d_mid, c);
    for (int i = 0; i < c->n_levels; i++) {
        const vlevel *lv = &v->d_lv[i];
        for (int j = 0; j < lv->nres; j++) op_res(r, &lv->res[j], c);
        if (lv->has_resample) op_upconv(r, &lv->resample);
    }
    op_norm(r, &v->d_nout, c->eps, c->groups, r->cur, r->cur, r->H * r->W, 1);
    op_conv_cur(r, &v->d_out);
    if (!r->plan) memcpy(image, r->act[r->cur], sizeof(float) * c->out_channels * r->H * r->W);
}

static size_t plan_floats(const run *p) {
    return p->act_floats[0] + p->act_floats[1] + p->act_floats[2] + p->conv_floats + p->attn_floats;
}

/* Sizes the workspace for plan p (growing only) and points r's buffers into it. */
static int bind_workspace(vae *v, const run *p, run *r) {
    size_t need_f = plan_floats(p);
    if (need_f > v->ws_floats) {
        free(v->ws);
        v->ws_floats = 0;
        if (!(v->ws = ocd_malloc(sizeof(float) * need_f))) return ocd_fail_context("vae workspace");
        v->ws_floats = need_f;
    }
    memset(r, 0, sizeof *r);
    r->v = v;
    r->act[0] = v->ws;
    r->act[1] = r->act[0] + p->act_floats[0];
    r->act[2] = r->act[1] + p->act_floats[1];
    r->conv_scr = r->act[2] + p->act_floats[2];
    r->attn_scr = r->conv_scr + p->conv_floats;
    return 0;
}

static int check_size(const vae *v, int H, int W, const char *what) {
    int f = vae_downscale(&v->cfg);
    if (H <= 0 || W <= 0 || H % f || W % f || (double)H * W > 1e9)
        return ocd_fail("vae %s: image size %dx%d must be positive multiples of %d", what, W, H, f);
    return 0;
}

static int encode_whole(vae *v, const float *image, int H, int W, float *mean, float *logvar) {
    run p = {.plan = 1, .v = v}, r;
    run_encoder(v, &p, NULL, H, W, NULL, NULL);
    if (bind_workspace(v, &p, &r)) return -1;
    run_encoder(v, &r, image, H, W, mean, logvar);
    return 0;
}

static int decode_whole(vae *v, const float *z, int h, int w, float *image) {
    run p = {.plan = 1, .v = v}, r;
    run_decoder(v, &p, NULL, h, w, NULL);
    if (bind_workspace(v, &p, &r)) return -1;
    run_decoder(v, &r, z, h, w, image);
    return 0;
}

/* ------------------------------------------------------------------ tiles
 * A frame larger than v->tile latent cells (either side) goes through the network in tiles
 * overlapping by v->overlap cells: n = ceil((L - ov) / (tile - ov)) tiles per side, all of
 * the same size ceil((L + (n-1) ov) / n) (so the workspace is planned once, and the size is
 * as small as the count allows). Outputs are blended with weights ramping linearly across
 * each overlap (1 elsewhere and at the frame border) and normalised by the weight sum.
 * Peak memory: one tile's workspace plus the frame. Not exact: GroupNorm statistics and the
 * mid-block attention see one tile, not the frame (as diffusers' tiled VAE). */

static void tile_grid(int L, int tile, int ov, int *n, int *size) {
    if (L <= tile) { *n = 1; *size = L; return; }
    *n = (L - ov + (tile - ov) - 1) / (tile - ov);
    *size = (L + (*n - 1) * ov + *n - 1) / *n;
}

/* Start of tile i of n of this size over L cells (the last one ends at L). */
static int tile_start(int i, int n, int size, int L) { return n == 1 ? 0 : (int)((long)i * (L - size) / (n - 1)); }

/* Blend weight of output index i in [0, n) of a tile whose neighbours overlap it by lo (before)
 * and hi (after) output units. */
static float ramp(int i, int n, int lo, int hi) {
    float a = lo > 0 ? OCD_MIN(1.0f, (i + 0.5f) / lo) : 1.0f, b = hi > 0 ? OCD_MIN(1.0f, (n - i - 0.5f) / hi) : 1.0f;
    return a * b;
}

/* dec: z [L, h, w] -> out [3, h f, w f]; else image in [3, h f, w f] -> out [2L, h, w] (moments). */
static int run_tiled(vae *v, int dec, const float *in, int h, int w, float *out) {
    const vae_config *c = &v->cfg;
    const int f = vae_downscale(c), si = dec ? 1 : f, so = dec ? f : 1;
    const int ci = dec ? c->latent_channels : c->in_channels, co = dec ? c->out_channels : 2 * c->latent_channels;
    int ny, nx, th, tw;
    tile_grid(h, v->tile, v->overlap, &ny, &th);
    tile_grid(w, v->tile, v->overlap, &nx, &tw);
    const size_t OH = (size_t)h * so, OW = (size_t)w * so, tin = (size_t)ci * th * si * tw * si, tout = (size_t)co * th * so * tw * so;
    float *tx = malloc(sizeof(float) * tin), *ty = malloc(sizeof(float) * tout), *den = calloc(OH * OW, sizeof(float));
    if (!tx || !ty || !den) { free(tx); free(ty); free(den); return ocd_fail("vae: out of memory (tiles)"); }
    memset(out, 0, sizeof(float) * co * OH * OW);
    int rc = 0;
    for (int ty_i = 0; ty_i < ny && !rc; ty_i++)
        for (int tx_i = 0; tx_i < nx && !rc; tx_i++) {
            const int y0 = tile_start(ty_i, ny, th, h), x0 = tile_start(tx_i, nx, tw, w);
            /* overlaps with the neighbours, in output units */
            const int lo_y = ty_i > 0 ? (tile_start(ty_i - 1, ny, th, h) + th - y0) * so : 0;
            const int hi_y = ty_i < ny - 1 ? (y0 + th - tile_start(ty_i + 1, ny, th, h)) * so : 0;
            const int lo_x = tx_i > 0 ? (tile_start(tx_i - 1, nx, tw, w) + tw - x0) * so : 0;
            const int hi_x = tx_i < nx - 1 ? (x0 + tw - tile_start(tx_i + 1, nx, tw, w)) * so : 0;
            const int IH = th * si, IW = tw * si, TH = th * so, TW = tw * so;
            for (int k = 0; k < ci; k++)
                for (int y = 0; y < IH; y++)
                    memcpy(tx + ((size_t)k * IH + y) * IW, in + ((size_t)k * h * si + (size_t)y0 * si + y) * w * si + (size_t)x0 * si,
                           sizeof(float) * IW);
            if (dec) rc = decode_whole(v, tx, th, tw, ty);
            else rc = encode_whole(v, tx, IH, IW, ty, ty + (size_t)c->latent_channels * th * tw);
            if (rc) break;
            for (int y = 0; y < TH; y++) {
                const float wy = ramp(y, TH, lo_y, hi_y);
                for (int x = 0; x < TW; x++) {
                    const float wt = wy * ramp(x, TW, lo_x, hi_x);
                    const size_t o = ((size_t)y0 * so + y) * OW + (size_t)x0 * so + x;
                    den[o] += wt;
                    for (int k = 0; k < co; k++) out[(size_t)k * OH * OW + o] += wt * ty[((size_t)k * TH + y) * TW + x];
                }
            }
        }
    if (!rc)
        for (int k = 0; k < co; k++)
            for (size_t o = 0; o < OH * OW; o++) out[(size_t)k * OH * OW + o] /= den[o];
    free(tx);
    free(ty);
    free(den);
    return rc;
}

static int tiled(const vae *v, int h, int w) { return v->tile > 0 && (h > v->tile || w > v->tile); }

int vae_set_tiling(vae *v, int tile_px, int overlap_px) {
    const int f = vae_downscale(&v->cfg);
    if (tile_px < 0 || overlap_px < 0 || tile_px % f || overlap_px % f)
        return ocd_fail("vae tiling: tile %d and overlap %d px must be non-negative multiples of %d", tile_px, overlap_px, f);
    if (tile_px && 2 * overlap_px >= tile_px)
        return ocd_fail("vae tiling: overlap %d px must be less than half the tile (%d px)", overlap_px, tile_px);
    v->tile = tile_px / f;
    v->overlap = overlap_px / f;
    return 0;
}

int vae_encode(vae *v, const float *image, int H, int W, float *mean, float *logvar) {
    if (check_size(v, H, W, "encode")) return -1;
    const int f = vae_downscale(&v->cfg);
    if (!tiled(v, H / f, W / f)) return encode_whole(v, image, H, W, mean, logvar);
    const size_t n = (size_t)v->cfg.latent_channels * (H / f) * (W / f);
    float *mom = malloc(sizeof(float) * 2 * n);
    if (!mom) return ocd_fail("vae: out of memory (tiles)");
    int rc = run_tiled(v, 0, image, H / f, W / f, mom);
    if (!rc) {
        memcpy(mean, mom, sizeof(float) * n);
        memcpy(logvar, mom + n, sizeof(float) * n);
    }
    free(mom);
    return rc;
}

int vae_decode(vae *v, const float *z, int h, int w, float *image) {
    int f = vae_downscale(&v->cfg);
    if (h <= 0 || w <= 0 || (double)h * w * f * f > 1e9)
        return ocd_fail("vae decode: latent size %dx%d must be positive", w, h);
    return tiled(v, h, w) ? run_tiled(v, 1, z, h, w, image) : decode_whole(v, z, h, w, image);
}

size_t vae_scratch_bytes(vae *v, int H, int W) {
    int f = vae_downscale(&v->cfg), ny, nx, th, tw;
    if (tiled(v, H / f, W / f)) { /* one tile's workspace */
        tile_grid(H / f, v->tile, v->overlap, &ny, &th);
        tile_grid(W / f, v->tile, v->overlap, &nx, &tw);
        H = th * f;
        W = tw * f;
    }
    run pe = {.plan = 1, .v = v}, pd = {.plan = 1, .v = v};
    run_encoder(v, &pe, NULL, H, W, NULL, NULL);
    run_decoder(v, &pd, NULL, H / f, W / f, NULL);
    size_t a = plan_floats(&pe), b = plan_floats(&pd);
    return sizeof(float) * (a > b ? a : b);
}

size_t vae_workspace_bytes(const vae *v) { return sizeof(float) * v->ws_floats; }

void vae_trim(vae *v) {
    free(v->ws);
    v->ws = NULL;
    v->ws_floats = 0;
}

double vae_encode_flops(const vae_config *c, int H, int W) {
    vae *v = vae_alloc(c);
    if (!v) return 0;
    run p = {.plan = 1};
    if (!build(v, NULL)) run_encoder(v, &p, NULL, H, W, NULL, NULL);
    vae_free(v);
    return p.flops;
}

double vae_decode_flops(const vae_config *c, int h, int w) {
    vae *v = vae_alloc(c);
    if (!v) return 0;
    run p = {.plan = 1};
    if (!build(v, NULL)) run_decoder(v, &p, NULL, h, w, NULL);
    vae_free(v);
    return p.flops;
}

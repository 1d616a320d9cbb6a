/* UNet2DConditionModel forward pass (diffusers semantics, fp32). */
#include "nn/unet.h"
#include "nn/unet_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "kernels/kernels.h"

#define MAX_LAYERS 8   /* resnets per block */
#define MAX_SKIPS UNET_MAX_SKIPS

typedef struct {
    int cin, cout;
    float *n1_g, *n1_b;      /* [cin] */
    float *c1_w, *c1_b;      /* [cout, cin, 3, 3], [cout] */
    float *t_w, *t_b;        /* time_emb_proj [cout, temb], [cout] */
    float *n2_g, *n2_b;      /* [cout] */
    float *c2_w, *c2_b;      /* [cout, cout, 3, 3], [cout] */
    float *sc_w, *sc_b;      /* conv_shortcut [cout, cin] (1x1) or NULL */
} resnet;

typedef struct {
    float *n1_g, *n1_b;                   /* [C] */
    float *q1, *k1, *v1, *o1, *o1_b;      /* attn1: [C, C] x4, [C] */
    float *n2_g, *n2_b;
    float *q2, *k2, *v2;                  /* attn2: [C, C], [C, cross], [C, cross] */
    float *o2, *o2_b;
    float *n3_g, *n3_b;
    float *ff1_w, *ff1_b;                 /* GEGLU proj [8C, C], [8C] */
    float *ff2_w, *ff2_b;                 /* [C, 4C], [C] */
} tblock;

typedef struct {
    int C, heads, depth;
    int layer_id;                         /* first attention layer index of this transformer */
    int part;                             /* UNET_PART_* */
    float *norm_g, *norm_b;               /* GroupNorm(groups, eps 1e-6) [C] */
    float *pin_w, *pin_b;                 /* proj_in [C, C] (1x1 conv or linear) */
    tblock *tb;                           /* [depth] */
    float *pout_w, *pout_b;               /* proj_out [C, C] */
} xformer;

typedef struct {
    int n_res, has_attn, has_sample, cout;
    resnet res[MAX_LAYERS];
    xformer attn[MAX_LAYERS];
    float *s_w, *s_b;                     /* down: conv stride 2; up: conv after nearest upsampling */
} block;

struct unet {
    unet_config cfg;
    int temb_dim;
    float *conv_in_w, *conv_in_b;         /* [C0, in, 3, 3] */
    float *t1_w, *t1_b, *t2_w, *t2_b;     /* time_embedding.linear_1 [4C0, C0], linear_2 [4C0, 4C0] */
    block down[UNET_MAX_LEVELS], up[UNET_MAX_LEVELS];
    resnet mid_res[2];
    xformer mid_attn;
    float *no_g, *no_b;                   /* conv_norm_out [C0] */
    float *conv_out_w, *conv_out_b;       /* [out, C0, 3, 3] */
    int n_attn_layers;
    int trunk_only;                       /* ControlNet: no up blocks, no conv_out */
    size_t ff_floats;                     /* feed-forward hidden state per block of rows (UNET_FF_FLOATS) */
    ocd_arena arena;
    double flops;
    int bf16;                             /* 1: convs and linears run on bf16 weights (wb) */
    k_bf16_set wb;                        /* bf16 packings, keyed by the fp32 weight pointers */
};

/* ------------------------------------------------------------------ config */

static int block_type_has_attn(const char *s) { return strstr(s, "CrossAttn") != NULL; }

int unet_config_from_json(unet_config *c, const char *json_text) {
    json_error_t err;
    json_t *j = json_loads(json_text, 0, &err);
    if (!j) return ocd_fail("unet config: invalid JSON (%s)", err.text);
    memset(c, 0, sizeof *c);
    c->in_ch = c->out_ch = 4;
    c->layers_per_block = 2;
    c->cross_dim = 768;
    c->groups = 32;
    c->eps = 1e-5f;
    c->flip_sin_to_cos = 1;
    c->transformer_depth = 1;
    c->sample_size = 64;
    json_t *v, *e;
    size_t i;
    int rc = -1;
    if ((v = json_object_get(j, "in_channels")) && json_is_integer(v)) c->in_ch = (int)json_integer_value(v);
    if ((v = json_object_get(j, "out_channels")) && json_is_integer(v)) c->out_ch = (int)json_integer_value(v);
    if ((v = json_object_get(j, "layers_per_block")) && json_is_integer(v)) c->layers_per_block = (int)json_integer_value(v);
    if ((v = json_object_get(j, "cross_attention_dim")) && json_is_integer(v)) c->cross_dim = (int)json_integer_value(v);
    if ((v = json_object_get(j, "norm_num_groups")) && json_is_integer(v)) c->groups = (int)json_integer_value(v);
    if ((v = json_object_get(j, "norm_eps")) && json_is_number(v)) c->eps = (float)json_number_value(v);
    if ((v = json_object_get(j, "flip_sin_to_cos")) && json_is_boolean(v)) c->flip_sin_to_cos = json_is_true(v);
    if ((v = json_object_get(j, "freq_shift")) && json_is_integer(v)) c->freq_shift = (int)json_integer_value(v);
    if ((v = json_object_get(j, "sample_size")) && json_is_integer(v)) c->sample_size = (int)json_integer_value(v);
    if ((v = json_object_get(j, "transformer_layers_per_block")) && json_is_integer(v))
        c->transformer_depth = (int)json_integer_value(v);
    v = json_object_get(j, "block_out_channels");
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > UNET_MAX_LEVELS) {
        ocd_fail("unet config: block_out_channels missing or with more than %d levels", UNET_MAX_LEVELS);
        goto done;
    }
    c->n_levels = (int)json_array_size(v);
    json_array_foreach(v, i, e) c->block_out[i] = (int)json_integer_value(e);
    /* SD 1.x calls the head count "attention_head_dim"; newer configs say num_attention_heads. */
    v = json_object_get(j, "num_attention_heads");
    if (!v || json_is_null(v)) v = json_object_get(j, "attention_head_dim");
    for (int l = 0; l < c->n_levels; l++) {
        c->heads[l] = 8;
        if (json_is_integer(v)) c->heads[l] = (int)json_integer_value(v);
        else if (json_is_array(v) && (size_t)l < json_array_size(v)) c->heads[l] = (int)json_integer_value(json_array_get(v, l));
    }
    json_t *down = json_object_get(j, "down_block_types"), *up = json_object_get(j, "up_block_types");
    for (int l = 0; l < c->n_levels; l++) {
        /* Default SD 1.x pattern: attention everywhere but the lowest resolution. */
        c->down_attn[l] = l < c->n_levels - 1;
        c->up_attn[l] = l > 0;
        if (json_is_array(down) && (size_t)l < json_array_size(down) && json_is_string(json_array_get(down, l)))
            c->down_attn[l] = block_type_has_attn(json_string_value(json_array_get(down, l)));
        if (json_is_array(up) && (size_t)l < json_array_size(up) && json_is_string(json_array_get(up, l)))
            c->up_attn[l] = block_type_has_attn(json_string_value(json_array_get(up, l)));
    }
    if ((v = json_object_get(j, "use_linear_projection")) && json_is_true(v)) { /* same math: [C,C] either way */ }
    for (int l = 0; l < c->n_levels; l++)
        if (c->block_out[l] < 1 || c->block_out[l] > 8192 || c->heads[l] < 1 || c->block_out[l] % c->heads[l] ||
            c->block_out[l] % c->groups) {
            ocd_fail("unet config: level %d has %d channels, %d heads, %d groups: not divisible", l, c->block_out[l],
                     c->heads[l], c->groups);
            goto done;
        }
    if (c->layers_per_block < 1 || c->layers_per_block >= MAX_LAYERS || c->cross_dim < 1 || c->in_ch < 1 ||
        c->out_ch < 1 || c->transformer_depth < 1 || c->transformer_depth > 16) {
        ocd_fail("unet config: implausible values");
        goto done;
    }
    rc = 0;
done:
    json_decref(j);
    return rc;
}

int unet_config_infer(unet_config *c, ws_source *ws) {
    int64_t s[8];
    char name[160];
    memset(c, 0, sizeof *c);
    if (ws_shape(ws, "conv_in.weight", s) != 4) return ocd_fail("%s: cannot infer the UNet: no conv_in", ws_label(ws));
    c->in_ch = (int)s[1];
    if (ws_shape(ws, "conv_out.weight", s) != 4) return ocd_fail("%s: no conv_out", ws_label(ws));
    c->out_ch = (int)s[0];
    for (c->n_levels = 0; c->n_levels < UNET_MAX_LEVELS; c->n_levels++) {
        snprintf(name, sizeof name, "down_blocks.%d.resnets.0.conv1.weight", c->n_levels);
        if (ws_shape(ws, name, s) != 4) break;
        c->block_out[c->n_levels] = (int)s[0];
    }
    if (!c->n_levels) return ocd_fail("%s: no down_blocks", ws_label(ws));
    for (c->layers_per_block = 0; c->layers_per_block < MAX_LAYERS - 1; c->layers_per_block++) {
        snprintf(name, sizeof name, "down_blocks.0.resnets.%d.conv1.weight", c->layers_per_block);
        if (!ws_has(ws, name)) break;
    }
    for (int l = 0; l < c->n_levels; l++) {
        snprintf(name, sizeof name, "down_blocks.%d.attentions.0.proj_in.weight", l);
        c->down_attn[l] = ws_has(ws, name);
        snprintf(name, sizeof name, "up_blocks.%d.attentions.0.proj_in.weight", l);
        c->up_attn[l] = ws_has(ws, name);
        c->heads[l] = 8; /* SD 1.x; not recoverable from shapes */
    }
    c->cross_dim = 768;
    for (int l = 0; l < c->n_levels; l++)
        if (c->down_attn[l]) {
            snprintf(name, sizeof name, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", l);
            if (ws_shape(ws, name, s) == 2) c->cross_dim = (int)s[1];
            break;
        }
    c->groups = 32;
    c->eps = 1e-5f;
    c->flip_sin_to_cos = 1;
    c->transformer_depth = 1;
    c->sample_size = 64;
    return 0;
}

/* ------------------------------------------------------------------ weights */

static int load_resnet(resnet *r, ws_source *ws, const char *p, int cin, int cout, int temb) {
    r->cin = cin;
    r->cout = cout;
    char sc[200];
    snprintf(sc, sizeof sc, "%s.conv_shortcut.weight", p);
    int has_sc = cin != cout || ws_has(ws, sc);
    return (r->n1_g = ws_getf(ws, WS_SHAPE1(cin), "%s.norm1.weight", p)) &&
           (r->n1_b = ws_getf(ws, WS_SHAPE1(cin), "%s.norm1.bias", p)) &&
           (r->c1_w = ws_getf(ws, WS_SHAPE4(cout, cin, 3, 3), "%s.conv1.weight", p)) &&
           (r->c1_b = ws_getf(ws, WS_SHAPE1(cout), "%s.conv1.bias", p)) &&
           (r->t_w = ws_getf(ws, WS_SHAPE2(cout, temb), "%s.time_emb_proj.weight", p)) &&
           (r->t_b = ws_getf(ws, WS_SHAPE1(cout), "%s.time_emb_proj.bias", p)) &&
           (r->n2_g = ws_getf(ws, WS_SHAPE1(cout), "%s.norm2.weight", p)) &&
           (r->n2_b = ws_getf(ws, WS_SHAPE1(cout), "%s.norm2.bias", p)) &&
           (r->c2_w = ws_getf(ws, WS_SHAPE4(cout, cout, 3, 3), "%s.conv2.weight", p)) &&
           (r->c2_b = ws_getf(ws, WS_SHAPE1(cout), "%s.conv2.bias", p)) &&
           (!has_sc || ((r->sc_w = ws_getf(ws, WS_SHAPE2(cout, cin), "%s.conv_shortcut.weight", p)) &&
                        (r->sc_b = ws_getf(ws, WS_SHAPE1(cout), "%s.conv_shortcut.bias", p))))
               ? 0 : -1;
}

static int load_xformer(xformer *x, ws_source *ws, const char *p, int C, int heads, int depth, int cross, int *layer) {
    x->part = p[0] == 'd' ? UNET_PART_DOWN : p[0] == 'm' ? UNET_PART_MID : UNET_PART_UP;
    x->C = C;
    x->heads = heads;
    x->depth = depth;
    x->layer_id = *layer;
    *layer += depth;
    if (!(x->tb = calloc(depth, sizeof *x->tb))) return ocd_fail("out of memory");
    if (!(x->norm_g = ws_getf(ws, WS_SHAPE1(C), "%s.norm.weight", p)) ||
        !(x->norm_b = ws_getf(ws, WS_SHAPE1(C), "%s.norm.bias", p)) ||
        !(x->pin_w = ws_getf(ws, WS_SHAPE2(C, C), "%s.proj_in.weight", p)) ||
        !(x->pin_b = ws_getf(ws, WS_SHAPE1(C), "%s.proj_in.bias", p)) ||
        !(x->pout_w = ws_getf(ws, WS_SHAPE2(C, C), "%s.proj_out.weight", p)) ||
        !(x->pout_b = ws_getf(ws, WS_SHAPE1(C), "%s.proj_out.bias", p)))
        return -1;
    for (int d = 0; d < depth; d++) {
        tblock *t = &x->tb[d];
        char q[200];
        snprintf(q, sizeof q, "%s.transformer_blocks.%d", p, d);
        if (!(t->n1_g = ws_getf(ws, WS_SHAPE1(C), "%s.norm1.weight", q)) ||
            !(t->n1_b = ws_getf(ws, WS_SHAPE1(C), "%s.norm1.bias", q)) ||
            !(t->q1 = ws_getf(ws, WS_SHAPE2(C, C), "%s.attn1.to_q.weight", q)) ||
            !(t->k1 = ws_getf(ws, WS_SHAPE2(C, C), "%s.attn1.to_k.weight", q)) ||
            !(t->v1 = ws_getf(ws, WS_SHAPE2(C, C), "%s.attn1.to_v.weight", q)) ||
            !(t->o1 = ws_getf(ws, WS_SHAPE2(C, C), "%s.attn1.to_out.0.weight", q)) ||
            !(t->o1_b = ws_getf(ws, WS_SHAPE1(C), "%s.attn1.to_out.0.bias", q)) ||
            !(t->n2_g = ws_getf(ws, WS_SHAPE1(C), "%s.norm2.weight", q)) ||
            !(t->n2_b = ws_getf(ws, WS_SHAPE1(C), "%s.norm2.bias", q)) ||
            !(t->q2 = ws_getf(ws, WS_SHAPE2(C, C), "%s.attn2.to_q.weight", q)) ||
            !(t->k2 = ws_getf(ws, WS_SHAPE2(C, cross), "%s.attn2.to_k.weight", q)) ||
            !(t->v2 = ws_getf(ws, WS_SHAPE2(C, cross), "%s.attn2.to_v.weight", q)) ||
            !(t->o2 = ws_getf(ws, WS_SHAPE2(C, C), "%s.attn2.to_out.0.weight", q)) ||
            !(t->o2_b = ws_getf(ws, WS_SHAPE1(C), "%s.attn2.to_out.0.bias", q)) ||
            !(t->n3_g = ws_getf(ws, WS_SHAPE1(C), "%s.norm3.weight", q)) ||
            !(t->n3_b = ws_getf(ws, WS_SHAPE1(C), "%s.norm3.bias", q)) ||
            !(t->ff1_w = ws_getf(ws, WS_SHAPE2(8 * C, C), "%s.ff.net.0.proj.weight", q)) ||
            !(t->ff1_b = ws_getf(ws, WS_SHAPE1(8 * C), "%s.ff.net.0.proj.bias", q)) ||
            !(t->ff2_w = ws_getf(ws, WS_SHAPE2(C, 4 * C), "%s.ff.net.2.weight", q)) ||
            !(t->ff2_b = ws_getf(ws, WS_SHAPE1(C), "%s.ff.net.2.bias", q)))
            return -1;
    }
    return 0;
}

static unet *unet_build(const unet_config *c, ws_source *ws, int trunk_only);

unet *unet_new(const unet_config *c, ws_source *ws) { return unet_build(c, ws, 0); }
unet *unet_new_trunk(const unet_config *c, ws_source *ws) { return unet_build(c, ws, 1); }

static unet *unet_build(const unet_config *c, ws_source *ws, int trunk_only) {
    unet *u = calloc(1, sizeof *u);
    if (!u) { ocd_fail("out of memory"); return NULL; }
    u->cfg = *c;
    arena_init(&u->arena);
    u->ff_floats = UNET_FF_FLOATS;
    const int C0 = c->block_out[0], L = c->layers_per_block, nl = c->n_levels;
    const int T = u->temb_dim = 4 * C0;
    char p[160];
    int layer = 0;
    if (!(u->conv_in_w = ws_get(ws, "conv_in.weight", WS_SHAPE4(C0, c->in_ch, 3, 3))) ||
        !(u->conv_in_b = ws_get(ws, "conv_in.bias", WS_SHAPE1(C0))) ||
        !(u->t1_w = ws_get(ws, "time_embedding.linear_1.weight", WS_SHAPE2(T, C0))) ||
        !(u->t1_b = ws_get(ws, "time_embedding.linear_1.bias", WS_SHAPE1(T))) ||
        !(u->t2_w = ws_get(ws, "time_embedding.linear_2.weight", WS_SHAPE2(T, T))) ||
        !(u->t2_b = ws_get(ws, "time_embedding.linear_2.bias", WS_SHAPE1(T))))
        goto fail;
    int ch = C0;
    for (int i = 0; i < nl; i++) {
        block *b = &u->down[i];
        b->cout = c->block_out[i];
        b->n_res = L;
        b->has_attn = c->down_attn[i];
        b->has_sample = i < nl - 1;
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            if (load_resnet(&b->res[j], ws, p, j == 0 ? ch : b->cout, b->cout, T)) goto fail;
            if (b->has_attn) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                if (load_xformer(&b->attn[j], ws, p, b->cout, c->heads[i], c->transformer_depth, c->cross_dim, &layer))
                    goto fail;
            }
        }
        ch = b->cout;
        if (b->has_sample && (!(b->s_w = ws_getf(ws, WS_SHAPE4(ch, ch, 3, 3), "down_blocks.%d.downsamplers.0.conv.weight", i)) ||
                              !(b->s_b = ws_getf(ws, WS_SHAPE1(ch), "down_blocks.%d.downsamplers.0.conv.bias", i))))
            goto fail;
    }
    if (load_resnet(&u->mid_res[0], ws, "mid_block.resnets.0", ch, ch, T) ||
        load_xformer(&u->mid_attn, ws, "mid_block.attentions.0", ch, c->heads[nl - 1], c->transformer_depth, c->cross_dim,
                     &layer) ||
        load_resnet(&u->mid_res[1], ws, "mid_block.resnets.1", ch, ch, T))
        goto fail;
    u->trunk_only = trunk_only;
    if (trunk_only) {
        u->n_attn_layers = layer;
        return u;
    }
    /* Skip channels, in push order: conv_in, then each down resnet(/attn) and downsampler. */
    int skip_ch[MAX_SKIPS], n_skip = 0;
    skip_ch[n_skip++] = C0;
    for (int i = 0; i < nl; i++) {
        for (int j = 0; j < L; j++) skip_ch[n_skip++] = c->block_out[i];
        if (i < nl - 1) skip_ch[n_skip++] = c->block_out[i];
    }
    for (int i = 0; i < nl; i++) {
        block *b = &u->up[i];
        const int lvl = nl - 1 - i;
        b->cout = c->block_out[lvl];
        b->n_res = L + 1;
        b->has_attn = c->up_attn[i];
        b->has_sample = i < nl - 1;
        for (int j = 0; j < L + 1; j++) {
            int cin = ch + skip_ch[--n_skip];
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            if (load_resnet(&b->res[j], ws, p, cin, b->cout, T)) goto fail;
            ch = b->cout;
            if (b->has_attn) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                if (load_xformer(&b->attn[j], ws, p, b->cout, c->heads[lvl], c->transformer_depth, c->cross_dim, &layer))
                    goto fail;
            }
        }
        if (b->has_sample && (!(b->s_w = ws_getf(ws, WS_SHAPE4(ch, ch, 3, 3), "up_blocks.%d.upsamplers.0.conv.weight", i)) ||
                              !(b->s_b = ws_getf(ws, WS_SHAPE1(ch), "up_blocks.%d.upsamplers.0.conv.bias", i))))
            goto fail;
    }
    if (!(u->no_g = ws_get(ws, "conv_norm_out.weight", WS_SHAPE1(ch))) ||
        !(u->no_b = ws_get(ws, "conv_norm_out.bias", WS_SHAPE1(ch))) ||
        !(u->conv_out_w = ws_get(ws, "conv_out.weight", WS_SHAPE4(c->out_ch, ch, 3, 3))) ||
        !(u->conv_out_b = ws_get(ws, "conv_out.bias", WS_SHAPE1(c->out_ch))))
        goto fail;
    u->n_attn_layers = layer;
    return u;
fail:
    unet_free(u);
    return NULL;
}

void unet_free(unet *u) {
    if (!u) return;
    for (int i = 0; i < UNET_MAX_LEVELS; i++)
        for (int j = 0; j < MAX_LAYERS; j++) { free(u->down[i].attn[j].tb); free(u->up[i].attn[j].tb); }
    free(u->mid_attn.tb);
    k_bf16_set_clear(&u->wb, 0);
    arena_free(&u->arena);
    free(u);
}

/* ------------------------------------------------------------------ precision */

/* conv_in (4 channels in) and conv_out (4 out) stay fp32: padded to tiles they would waste
 * most of the work, they cost little in fp32, and they sit where rounding hurts most. */
static int add_conv(unet *u, float *w, int co, int ci, int k, int stride) {
    return w && co >= 16 && ci >= 16 ? k_bf16_set_add(&u->wb, w, k_bf16_conv_desc(co, ci, k, k, stride)) : 0;
}

static int add_lin(unet *u, float *w, int K, int N) { return w ? k_bf16_set_add(&u->wb, w, k_bf16_linear_desc(K, N)) : 0; }

static int add_resnet(unet *u, const resnet *r) {
    return add_conv(u, r->c1_w, r->cout, r->cin, 3, 1) || add_conv(u, r->c2_w, r->cout, r->cout, 3, 1) ||
           add_conv(u, r->sc_w, r->cout, r->cin, 1, 1) || add_lin(u, r->t_w, u->temb_dim, r->cout);
}

static int add_xformer(unet *u, const xformer *x) {
    const int C = x->C, X = u->cfg.cross_dim;
    if (add_lin(u, x->pin_w, C, C) || add_lin(u, x->pout_w, C, C)) return -1;
    for (int d = 0; d < x->depth; d++) {
        const tblock *t = &x->tb[d];
        if (add_lin(u, t->q1, C, C) || add_lin(u, t->k1, C, C) || add_lin(u, t->v1, C, C) || add_lin(u, t->o1, C, C) ||
            add_lin(u, t->q2, C, C) || add_lin(u, t->k2, X, C) || add_lin(u, t->v2, X, C) || add_lin(u, t->o2, C, C) ||
            add_lin(u, t->ff1_w, C, 8 * C) || add_lin(u, t->ff2_w, 4 * C, C))
            return -1;
    }
    return 0;
}

/* Every conv and linear weight, with the shape and stride it is used with. */
static int pack_all(unet *u) {
    const unet_config *c = &u->cfg;
    const int C0 = c->block_out[0], T = u->temb_dim;
    if (add_conv(u, u->conv_in_w, C0, c->in_ch, 3, 1) || add_lin(u, u->t1_w, C0, T) || add_lin(u, u->t2_w, T, T))
        return -1;
    for (int i = 0; i < c->n_levels; i++)
        for (int side = 0; side < 2; side++) {
            const block *b = side ? &u->up[i] : &u->down[i];
            if (side && u->trunk_only) continue;
            for (int j = 0; j < b->n_res; j++)
                if (add_resnet(u, &b->res[j]) || (b->has_attn && add_xformer(u, &b->attn[j]))) return -1;
            if (b->has_sample && add_conv(u, b->s_w, b->cout, b->cout, 3, side ? 1 : 2)) return -1;
        }
    if (add_resnet(u, &u->mid_res[0]) || add_xformer(u, &u->mid_attn) || add_resnet(u, &u->mid_res[1])) return -1;
    if (!u->trunk_only && add_conv(u, u->conv_out_w, c->out_ch, C0, 3, 1)) return -1;
    return 0;
}

int unet_set_precision(unet *u, int bf16) {
    if (!bf16 == !u->bf16) return 0;
    if (!bf16) {
        k_bf16_set_clear(&u->wb, 1);
        u->bf16 = 0;
        return 0;
    }
    if (!k_bf16_available()) {
        fprintf(stderr, "ocd: bf16 needs AMX-BF16 (not available on this CPU/OS): the UNet stays fp32\n");
        return 0;
    }
    if (pack_all(u)) {
        k_bf16_set_clear(&u->wb, 1);
        return ocd_fail_context("unet: switching to bf16");
    }
    u->bf16 = 1;
    return 0;
}

int unet_precision_bf16(const unet *u) { return u->bf16; }
size_t unet_bf16_weight_bytes(const unet *u) { return k_bf16_set_bytes(&u->wb); }

const unet_config *unet_get_config(const unet *u) { return &u->cfg; }
int unet_n_attn_layers(const unet *u) { return u->n_attn_layers; }
double unet_last_flops(const unet *u) { return u->flops; }
size_t unet_arena_bytes(const unet *u) { return u->arena.high_water; }
void unet_set_ff_block(unet *u, size_t floats) { u->ff_floats = floats ? floats : UNET_FF_FLOATS; }
int unet_arena_grows(const unet *u) { return u->arena.n_grows; }

/* ------------------------------------------------------------------ forward */

typedef struct {
    unet *u;
    int B;
    const unet_attn_hook *hook;
    const float *ctx;           /* [B, n_ctx, cross] */
    int n_ctx;
    const float *temb_act;      /* SiLU(temb) [B, T] */
    const float *t;             /* timesteps [B] */
    int nf;                     /* frames sharing GroupNorm statistics (hook->norm_frames), >= 1 */
} fwd;

#define ALLOC(n) arena_floats(&f->u->arena, (size_t)(n))

/* y[M, N] = x[M, K] W^T + b, on the bf16 packing of W when the UNet runs in bf16. */
static void lin(unet *u, float *y, const float *x, const float *w, const float *b, int M, int K, int N) {
    const k_bf16_weight *wb = u->bf16 ? k_bf16_set_find(&u->wb, w) : NULL;
    if (wb) k_linear_bf16(y, x, wb, b, M, K, N);
    else k_linear(y, x, w, b, M, K, N);
}

/* y[co, ho, wo] = conv(x[ci, h, w]) for each batch item; returns 0/-1. */
static int conv_batch(fwd *f, float *y, const float *x, const float *w, const float *b, int ci, int h, int wd, int co,
                      int k, int stride, int pad) {
    k_conv_shape s = {.ci = ci, .h = h, .w = wd, .co = co, .kh = k, .kw = k, .stride = stride,
                      .pad_t = pad, .pad_b = pad, .pad_l = pad, .pad_r = pad};
    const int ho = k_conv_out_h(&s), wo = k_conv_out_w(&s);
    size_t m = arena_mark(&f->u->arena);
    const k_bf16_weight *wb = f->u->bf16 ? k_bf16_set_find(&f->u->wb, w) : NULL;
    float *scratch = ALLOC(wb ? k_conv2d_bf16_scratch_floats(&s) : k_conv2d_batch_scratch_floats(&s, f->B));
    if (!scratch) return -1;
    if (wb)
        for (int i = 0; i < f->B; i++)
            k_conv2d_bf16(y + (size_t)i * co * ho * wo, x + (size_t)i * ci * h * wd, wb, b, &s, scratch);
    else
        k_conv2d_batch(y, x, f->B, w, b, &s, scratch); /* the whole batch: Winograd's tiles span it */
    arena_rewind(&f->u->arena, m);
    f->u->flops += 2.0 * f->B * co * ci * k * k * ho * wo;
    return 0;
}

/* y [B, C, HW] = GroupNorm(x) (+ SiLU) per item, or with statistics over each run of f->nf
 * items (a clip: torch's GroupNorm on [b, c, f, h, w]). Two-pass, in double, like k_group_norm. */
static int group_norm_batch(fwd *f, float *y, const float *x, const float *gamma, const float *beta, int C, int HW, int G,
                            float eps, int silu) {
    const int nf = f->nf;
    if (nf <= 1) {
        for (int b = 0; b < f->B; b++)
            k_group_norm(y + (size_t)b * C * HW, x + (size_t)b * C * HW, gamma, beta, C, HW, G, eps, silu);
        return 0;
    }
    if (f->B % nf) return ocd_fail("unet: batch %d is not a multiple of %d frames", f->B, nf);
    const int cg = C / G;
    const size_t gs = (size_t)cg * HW;
    for (int v = 0; v < f->B / nf; v++) {
        const size_t base = (size_t)v * nf * C * HW;
        #pragma omp parallel for schedule(static)
        for (int g = 0; g < G; g++) {
            double s = 0, q = 0;
            for (int k = 0; k < nf; k++) {
                const float *p = x + base + (size_t)k * C * HW + (size_t)g * gs;
                for (size_t i = 0; i < gs; i++) s += p[i];
            }
            const double mean = s / ((double)gs * nf);
            for (int k = 0; k < nf; k++) {
                const float *p = x + base + (size_t)k * C * HW + (size_t)g * gs;
                for (size_t i = 0; i < gs; i++) q += (p[i] - mean) * (p[i] - mean);
            }
            const double rstd = 1.0 / sqrt(q / ((double)gs * nf) + eps);
            for (int k = 0; k < nf; k++)
                for (int c = g * cg; c < (g + 1) * cg; c++) {
                    const size_t o = base + (size_t)k * C * HW + (size_t)c * HW;
                    const double a = rstd * gamma[c], b = beta[c];
                    for (int i = 0; i < HW; i++) {
                        float t = (float)((x[o + i] - mean) * a + b);
                        y[o + i] = silu ? t / (1.0f + expf(-t)) : t;
                    }
                }
        }
    }
    return 0;
}

/* out [B, cout, H, W] = resnet(x [B, cin, H, W]). */
static int resnet_fwd(fwd *f, const resnet *r, const float *x, int H, int W, float *out) {
    const int HW = H * W, G = f->u->cfg.groups;
    const float eps = f->u->cfg.eps;
    size_t m = arena_mark(&f->u->arena);
    float *t = ALLOC((size_t)f->B * (r->cin > r->cout ? r->cin : r->cout) * HW); /* normed input */
    float *h = ALLOC((size_t)f->B * r->cout * HW);
    float *tp = ALLOC((size_t)f->B * r->cout);                                     /* time projection [B, cout] */
    if (!t || !h || !tp) return -1;
    if (group_norm_batch(f, t, x, r->n1_g, r->n1_b, r->cin, HW, G, eps, 1)) return -1;
    if (conv_batch(f, h, t, r->c1_w, r->c1_b, r->cin, H, W, r->cout, 3, 1, 1)) return -1;
    lin(f->u, tp, f->temb_act, r->t_w, r->t_b, f->B, f->u->temb_dim, r->cout);
    f->u->flops += 2.0 * f->B * f->u->temb_dim * r->cout;
    for (int b = 0; b < f->B; b++)
        for (int c = 0; c < r->cout; c++) {
            float *p = h + ((size_t)b * r->cout + c) * HW, v = tp[b * r->cout + c];
            for (int i = 0; i < HW; i++) p[i] += v;
        }
    if (group_norm_batch(f, h, h, r->n2_g, r->n2_b, r->cout, HW, G, eps, 1)) return -1;
    if (conv_batch(f, out, h, r->c2_w, r->c2_b, r->cout, H, W, r->cout, 3, 1, 1)) return -1;
    if (r->sc_w) {
        if (conv_batch(f, h, x, r->sc_w, r->sc_b, r->cin, H, W, r->cout, 1, 1, 0)) return -1;
        k_add(out, h, (size_t)f->B * r->cout * HW);
    } else k_add(out, x, (size_t)f->B * r->cout * HW);
    arena_rewind(&f->u->arena, m);
    return 0;
}

void unet_attention(const unet_attn_call *c, const float *q, const float *k, const float *v, int Nk) {
    if (c->bf16) k_attention_bf16(c->out, c->C, q, c->C, k, c->C, v, c->C, c->Nq, Nk, c->heads, c->dh, c->scale, c->scratch);
    else k_attention(c->out, c->C, q, c->C, k, c->C, v, c->C, c->Nq, Nk, c->heads, c->dh, c->scale, 0, c->scratch);
}

int unet_attend_plain(const unet_attn_call *c) {
    const size_t q_off = (size_t)c->b * c->Nq * c->C, kv_off = (size_t)c->b * c->Nk * c->C;
    unet_attention(c, c->q + q_off, c->k + kv_off, c->v + kv_off, c->Nk);
    return 0;
}

/* att [B, Nq, C] = attention for every item through the hook. */
static int attend_all(fwd *f, int layer, int part, int is_cross, int H, int W, int Nq, int Nk, int C, int heads, const float *q,
                      const float *k, const float *v, float *att) {
    const unet_attn_hook *hk = f->hook;
    int kvf = hk && hk->kv_frames_max > 1 ? hk->kv_frames_max : 1;
    size_t m = arena_mark(&f->u->arena);
    float *scratch = ALLOC(k_attention_scratch_floats(Nq, Nk * kvf));
    if (!scratch) return -1;
    unet_attn_call call = {.layer = layer, .part = part, .is_cross = is_cross, .H = H, .W = W, .batch = f->B, .Nq = Nq, .Nk = Nk,
                           .C = C, .heads = heads, .dh = C / heads, .scale = 1.0f / sqrtf((float)(C / heads)),
                           .q = q, .k = k, .v = v, .scratch = scratch, .bf16 = f->u->bf16};
    for (int b = 0; b < f->B; b++) {
        call.b = b;
        call.timestep = (int)lrintf(f->t[b]);
        call.out = att + (size_t)b * Nq * C;
        int rc = hk && hk->attend ? hk->attend(hk->user, &call) : unet_attend_plain(&call);
        if (rc) return -1;
    }
    arena_rewind(&f->u->arena, m);
    /* Plain attention cost; hooks that change the key count report their own savings. */
    f->u->flops += 4.0 * f->B * Nq * Nk * C;
    return 0;
}

/* out [B, C, H, W] = x + transformer(x). */
static int xformer_fwd(fwd *f, const xformer *xf, const float *x, int H, int W, float *out) {
    const int C = xf->C, HW = H * W, N = f->B * HW, X = f->u->cfg.cross_dim, nc = f->n_ctx;
    size_t m = arena_mark(&f->u->arena);
    float *tok = ALLOC((size_t)N * C);     /* [B*HW, C] residual stream */
    float *n = ALLOC((size_t)N * C);       /* [B*HW, C] normed */
    float *q = ALLOC((size_t)N * C);
    float *k = ALLOC((size_t)N * C);
    float *v = ALLOC((size_t)N * C);
    float *att = ALLOC((size_t)N * C);
    /* the feed-forward runs in blocks of rows: its 12C-wide hidden state would otherwise be the
     * largest buffer of the whole UNet (1 GiB for 16 frames at 512 px) */
    const int ff_rows = OCD_MIN(N, OCD_MAX(1, (int)(f->u->ff_floats / (12 * (size_t)C))));
    float *ff = ALLOC((size_t)ff_rows * 8 * C);  /* GEGLU input [rows, 8C] */
    float *gg = ALLOC((size_t)ff_rows * 4 * C);  /* GEGLU output [rows, 4C] */
    float *kc = ALLOC((size_t)f->B * nc * C), *vc = ALLOC((size_t)f->B * nc * C); /* [B, n_ctx, C] */
    if (!tok || !n || !q || !k || !v || !att || !ff || !gg || !kc || !vc) return -1;
    for (int b = 0; b < f->B; b++) {
        k_group_norm(att, x + (size_t)b * C * HW, xf->norm_g, xf->norm_b, C, HW, f->u->cfg.groups, 1e-6f, 0);
        k_transpose(n + (size_t)b * HW * C, att, C, HW);
    }
    lin(f->u, tok, n, xf->pin_w, xf->pin_b, N, C, C);
    double fl = 2.0 * N * C * C * 2; /* proj_in, proj_out */
    for (int d = 0; d < xf->depth; d++) {
        const tblock *t = &xf->tb[d];
        const int layer = xf->layer_id + d;
        /* attn1: self-attention (cross-frame variants come through the hook) */
        k_layer_norm(n, tok, t->n1_g, t->n1_b, N, C, 1e-5f);
        lin(f->u, q, n, t->q1, NULL, N, C, C);
        lin(f->u, k, n, t->k1, NULL, N, C, C);
        lin(f->u, v, n, t->v1, NULL, N, C, C);
        if (attend_all(f, layer, xf->part, 0, H, W, HW, HW, C, xf->heads, q, k, v, att)) return -1;
        lin(f->u, n, att, t->o1, t->o1_b, N, C, C);
        k_add(tok, n, (size_t)N * C);
        /* attn2: cross-attention to the text */
        k_layer_norm(n, tok, t->n2_g, t->n2_b, N, C, 1e-5f);
        lin(f->u, q, n, t->q2, NULL, N, C, C);
        lin(f->u, kc, f->ctx, t->k2, NULL, f->B * nc, X, C);
        lin(f->u, vc, f->ctx, t->v2, NULL, f->B * nc, X, C);
        if (attend_all(f, layer, xf->part, 1, H, W, HW, nc, C, xf->heads, q, kc, vc, att)) return -1;
        lin(f->u, n, att, t->o2, t->o2_b, N, C, C);
        k_add(tok, n, (size_t)N * C);
        /* feed-forward, GEGLU */
        k_layer_norm(n, tok, t->n3_g, t->n3_b, N, C, 1e-5f);
        for (int r0 = 0; r0 < N; r0 += ff_rows) { /* rows are independent: any block size gives the same result */
            const int nr = OCD_MIN(ff_rows, N - r0);
            lin(f->u, ff, n + (size_t)r0 * C, t->ff1_w, t->ff1_b, nr, C, 8 * C);
            k_geglu(gg, ff, nr, 4 * C);
            lin(f->u, q + (size_t)r0 * C, gg, t->ff2_w, t->ff2_b, nr, 4 * C, C);
        }
        fl += 2.0 * N * C * C * 5 + 2.0 * f->B * nc * X * C * 2 + 2.0 * N * C * 8 * C + 2.0 * N * 4 * C * C;
        k_add(tok, q, (size_t)N * C);
    }
    lin(f->u, n, tok, xf->pout_w, xf->pout_b, N, C, C);
    for (int b = 0; b < f->B; b++) {
        k_transpose(out + (size_t)b * C * HW, n + (size_t)b * HW * C, HW, C);
        k_add(out + (size_t)b * C * HW, x + (size_t)b * C * HW, (size_t)C * HW);
    }
    f->u->flops += fl;
    arena_rewind(&f->u->arena, m);
    return 0;
}

/* Time embedding, conv_in, down blocks and mid block: the trunk the UNet shares with ControlNet.
 * `add_in` [B, C0, H, W] (may be NULL) is added after conv_in (ControlNet's condition). The
 * features stay in the arena until the caller resets it. */
int unet_trunk_forward(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                       const unet_attn_hook *hook, const float *add_in, unet_feats *out) {
    return unet_trunk_forward_ex(u, x, t, ctx, n_ctx, B, H, W, hook, add_in, NULL, out);
}

int unet_trunk_forward_ex(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                          const unet_attn_hook *hook, const float *add_in, const float *mid_add, unet_feats *out) {
    const unet_config *c = &u->cfg;
    const int C0 = c->block_out[0], T = u->temb_dim, nl = c->n_levels;
    if (B < 1 || H < 1 || W < 1 || n_ctx < 1) return ocd_fail("unet_forward: empty input");
    u->flops = 0;
    fwd fs = {.u = u, .B = B, .hook = hook, .ctx = ctx, .n_ctx = n_ctx, .t = t,
              .nf = hook && hook->norm_frames > 1 ? hook->norm_frames : 1}, *f = &fs;

    /* timestep embedding, computed in float32 like diffusers */
    float *temb = ALLOC((size_t)B * T), *sin_emb = ALLOC((size_t)B * C0), *t1 = ALLOC((size_t)B * T);
    if (!temb || !sin_emb || !t1) return -1;
    const int half = C0 / 2;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < half; i++) {
            float expo = (float)(-9.210340371976184 * i) / (float)(half - c->freq_shift);
            float arg = t[b] * expf(expo);
            float s = sinf(arg), co = cosf(arg);
            sin_emb[b * C0 + i] = c->flip_sin_to_cos ? co : s;
            sin_emb[b * C0 + half + i] = c->flip_sin_to_cos ? s : co;
        }
    }
    lin(u, t1, sin_emb, u->t1_w, u->t1_b, B, C0, T);
    k_silu(t1, (size_t)B * T);
    lin(u, temb, t1, u->t2_w, u->t2_b, B, T, T);
    k_silu(temb, (size_t)B * T); /* resnets use SiLU(temb) */
    u->flops += 2.0 * B * (C0 * T + T * T);
    fs.temb_act = temb;
    out->temb_act = temb;

    /* down path; skips kept in the arena */
    int ns = 0;
    int h = H, w = W, ch = C0;
    float *cur = ALLOC((size_t)B * C0 * h * w);
    if (!cur || conv_batch(f, cur, x, u->conv_in_w, u->conv_in_b, c->in_ch, h, w, C0, 3, 1, 1)) return -1;
    if (add_in) k_add(cur, add_in, (size_t)B * C0 * h * w);
#define PUSH(p) (out->x[ns] = (p), out->c[ns] = ch, out->h[ns] = h, out->w[ns++] = w)
    PUSH(cur);
    for (int i = 0; i < nl; i++) {
        const block *bl = &u->down[i];
        for (int j = 0; j < bl->n_res; j++) {
            /* the skip first, the resnet's output (when a transformer follows) above it, dropped after */
            float *skip = ALLOC((size_t)B * bl->cout * h * w);
            const size_t m = arena_mark(&u->arena);
            float *nx = bl->has_attn ? ALLOC((size_t)B * bl->cout * h * w) : skip;
            if (!skip || !nx || resnet_fwd(f, &bl->res[j], cur, h, w, nx)) return -1;
            ch = bl->cout;
            if (bl->has_attn && xformer_fwd(f, &bl->attn[j], nx, h, w, skip)) return -1;
            arena_rewind(&u->arena, m);
            cur = skip;
            PUSH(cur);
        }
        if (bl->has_sample) {
            int h2 = (h - 1) / 2 + 1, w2 = (w - 1) / 2 + 1;
            float *dx = ALLOC((size_t)B * ch * h2 * w2);
            if (!dx || conv_batch(f, dx, cur, bl->s_w, bl->s_b, ch, h, w, ch, 3, 2, 1)) return -1;
            cur = dx, h = h2, w = w2;
            PUSH(cur);
        }
    }
#undef PUSH
    out->n = ns;
    /* mid */
    float *a = ALLOC((size_t)B * ch * h * w), *b2 = ALLOC((size_t)B * ch * h * w), *c2 = ALLOC((size_t)B * ch * h * w);
    if (mid_add) { /* the mid block's own input copy: the skip itself stays as it is */
        float *m = ALLOC((size_t)B * ch * h * w);
        if (!m) return -1;
        memcpy(m, cur, sizeof(float) * B * ch * h * w);
        k_add(m, mid_add, (size_t)B * ch * h * w);
        cur = m;
    }
    if (!a || !b2 || !c2 || resnet_fwd(f, &u->mid_res[0], cur, h, w, a) || xformer_fwd(f, &u->mid_attn, a, h, w, b2) ||
        resnet_fwd(f, &u->mid_res[1], b2, h, w, c2))
        return -1;
    out->mid = c2;
    out->mid_c = ch, out->mid_h = h, out->mid_w = w;
    return 0;
}

void unet_release(unet *u) { arena_reset(&u->arena); }
void unet_trim(unet *u) { arena_trim(&u->arena); }

int unet_forward(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                 const unet_attn_hook *hook, float *eps) {
    return unet_forward_res(u, x, t, ctx, n_ctx, B, H, W, hook, NULL, eps);
}

int unet_forward_res(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                     const unet_attn_hook *hook, const unet_residuals *res, float *eps) {
    const unet_config *c = &u->cfg;
    const int nl = c->n_levels;
    if (u->trunk_only) return ocd_fail("unet_forward: this network is a ControlNet trunk");
    unet_feats ft;
    const float *mid_add = res && res->mid_in_place && res->n_down > 0 ? res->down[res->n_down - 1] : NULL;
    if (unet_trunk_forward_ex(u, x, t, ctx, n_ctx, B, H, W, hook, NULL, mid_add, &ft)) goto fail;
    fwd fs = {.u = u, .B = B, .hook = hook, .ctx = ctx, .n_ctx = n_ctx, .t = t, .temb_act = ft.temb_act,
              .nf = hook && hook->norm_frames > 1 ? hook->norm_frames : 1}, *f = &fs;
    int ns = ft.n, h = ft.mid_h, w = ft.mid_w, ch = ft.mid_c;
    float *cur = ft.mid;
    if (res) { /* ControlNet residuals: added to every skip and to the mid block's output */
        if (res->n_down != ns) { ocd_fail("unet_forward: %d residuals for %d skip connections", res->n_down, ns); goto fail; }
        for (int i = 0; i < ns; i++) k_add(ft.x[i], res->down[i], (size_t)B * ft.c[i] * ft.h[i] * ft.w[i]);
        k_add(cur, res->mid, (size_t)B * ch * h * w);
    }
    /* up path: the running activation lives in two buffers used in turn (pp), each step's
     * temporaries (the concatenation, the upsampled plane) are dropped as soon as it is done, so
     * the memory is that of one level, not of the whole path */
    size_t pmax = 0;
    {
        int n2 = ns, h2 = h, w2 = w, c2 = ch;
        for (int i = 0; i < nl; i++) {
            const block *bl = &u->up[i];
            n2 -= bl->n_res, c2 = bl->cout;
            pmax = OCD_MAX(pmax, (size_t)c2 * h2 * w2);
            if (bl->has_sample) h2 = ft.h[n2 - 1], w2 = ft.w[n2 - 1], pmax = OCD_MAX(pmax, (size_t)c2 * h2 * w2);
        }
    }
    float *pp[2] = {ALLOC((size_t)B * pmax), ALLOC((size_t)B * pmax)};
    if (!pp[0] || !pp[1]) goto fail;
    int pi = 0;
    for (int i = 0; i < nl; i++) {
        const block *bl = &u->up[i];
        for (int j = 0; j < bl->n_res; j++) {
            --ns;
            const int sc = ft.c[ns], HW = h * w;
            const size_t m = arena_mark(&u->arena);
            float *cat = ALLOC((size_t)B * (ch + sc) * HW); /* [B, ch + sc, h, w] = cat([cur, skip]) */
            if (!cat) goto fail;
            for (int b = 0; b < B; b++) {
                memcpy(cat + (size_t)b * (ch + sc) * HW, cur + (size_t)b * ch * HW, sizeof(float) * ch * HW);
                memcpy(cat + (size_t)b * (ch + sc) * HW + (size_t)ch * HW, ft.x[ns] + (size_t)b * sc * HW,
                       sizeof(float) * sc * HW);
            }
            float *nx = pp[pi];
            if (resnet_fwd(f, &bl->res[j], cat, h, w, nx)) goto fail;
            arena_rewind(&u->arena, m);
            cur = nx, pi ^= 1;
            ch = bl->cout;
            if (bl->has_attn) {
                float *ax = pp[pi];
                if (xformer_fwd(f, &bl->attn[j], cur, h, w, ax)) goto fail;
                cur = ax, pi ^= 1;
            }
        }
        if (bl->has_sample) {
            /* nearest upsampling to the next skip's size (x2 when sizes divide) */
            const int h2 = ft.h[ns - 1], w2 = ft.w[ns - 1];
            const size_t m = arena_mark(&u->arena);
            float *ux = ALLOC((size_t)B * ch * h2 * w2), *cx = pp[pi];
            if (!ux) goto fail;
            for (int b = 0; b < B; b++)
                k_upsample_nearest(ux + (size_t)b * ch * h2 * w2, cur + (size_t)b * ch * h * w, ch, h, w, h2, w2);
            if (conv_batch(f, cx, ux, bl->s_w, bl->s_b, ch, h2, w2, ch, 3, 1, 1)) goto fail;
            arena_rewind(&u->arena, m);
            cur = cx, h = h2, w = w2, pi ^= 1;
        }
    }
    /* out */
    {
        float *nrm = ALLOC((size_t)B * ch * h * w);
        if (!nrm) goto fail;
        if (group_norm_batch(f, nrm, cur, u->no_g, u->no_b, ch, h * w, c->groups, c->eps, 1)) goto fail;
        if (conv_batch(f, eps, nrm, u->conv_out_w, u->conv_out_b, ch, h, w, c->out_ch, 3, 1, 1)) goto fail;
    }
    return arena_reset(&u->arena);
fail:
    arena_reset(&u->arena);
    return -1;
}

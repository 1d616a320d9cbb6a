/* ControlNet forward (diffusers ControlNetModel semantics, fp32). The trunk is the UNet's own
 * code (unet_new_trunk / unet_trunk_forward), so every block computes exactly as in the UNet. */
#include "nn/controlnet.h"
#include "nn/unet_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

struct controlnet {
    controlnet_config cfg;
    unet *trunk;
    float *e_in_w, *e_in_b;                          /* conv_in [e0, cond_ch, 3, 3], [e0] */
    float *e_w[2 * CN_MAX_EMBED], *e_b[2 * CN_MAX_EMBED]; /* blocks.k: even k [e_i, e_i, 3, 3], odd k stride 2 [e_i+1, e_i, 3, 3] */
    float *e_out_w, *e_out_b;                        /* conv_out [C0, e_last, 3, 3], [C0] */
    int n_skips;
    int skip_c[UNET_MAX_SKIPS];                      /* channels of skip i */
    float *zc_w[UNET_MAX_SKIPS], *zc_b[UNET_MAX_SKIPS]; /* controlnet_down_blocks.i [c, c] (1x1), [c] */
    float *mid_w, *mid_b;                            /* controlnet_mid_block [Cm, Cm], [Cm] */
    float *ws;                                       /* workspace: embedding ping-pong + conv scratch */
    size_t ws_cap;                                   /* floats */
    double flops;
};

/* ------------------------------------------------------------------ config */

static int parse_extras(controlnet_config *c, json_t *j) {
    json_t *v, *e;
    size_t i;
    c->cond_channels = 3;
    c->n_embed = 4;
    const int dflt[4] = {16, 32, 96, 256};
    memcpy(c->embed, dflt, sizeof dflt);
    if ((v = json_object_get(j, "conditioning_channels")) && json_is_integer(v)) c->cond_channels = (int)json_integer_value(v);
    v = json_object_get(j, "conditioning_embedding_out_channels");
    if (json_is_array(v)) {
        if (json_array_size(v) < 1 || json_array_size(v) > CN_MAX_EMBED)
            return ocd_fail("controlnet config: conditioning_embedding_out_channels must have 1..%d entries", CN_MAX_EMBED);
        c->n_embed = (int)json_array_size(v);
        json_array_foreach(v, i, e) c->embed[i] = (int)json_integer_value(e);
    }
    v = json_object_get(j, "controlnet_conditioning_channel_order");
    if (json_is_string(v)) {
        if (!strcmp(json_string_value(v), "bgr")) c->bgr = 1;
        else if (strcmp(json_string_value(v), "rgb")) return ocd_fail("controlnet config: channel order \"%s\" (rgb or bgr)", json_string_value(v));
    }
    if ((v = json_object_get(j, "global_pool_conditions")) && json_is_true(v)) c->global_pool = 1;
    if (c->cond_channels < 1 || c->cond_channels > 64) return ocd_fail("controlnet config: %d conditioning channels", c->cond_channels);
    for (int k = 0; k < c->n_embed; k++)
        if (c->embed[k] < 1 || c->embed[k] > 8192) return ocd_fail("controlnet config: embedding width %d", c->embed[k]);
    return 0;
}

int controlnet_config_from_json(controlnet_config *c, const char *json_text) {
    memset(c, 0, sizeof *c);
    if (unet_config_from_json(&c->trunk, json_text)) return ocd_fail_context("controlnet config");
    json_t *j = json_loads(json_text, 0, NULL);
    if (!j) return ocd_fail("controlnet config: invalid JSON");
    int rc = parse_extras(c, j);
    json_decref(j);
    return rc;
}

int controlnet_config_infer(controlnet_config *c, ws_source *ws) {
    int64_t s[8];
    char name[160];
    memset(c, 0, sizeof *c);
    unet_config *u = &c->trunk;
    if (ws_shape(ws, "conv_in.weight", s) != 4) return ocd_fail("%s: cannot infer the ControlNet: no conv_in", ws_label(ws));
    u->in_ch = u->out_ch = (int)s[1];
    for (u->n_levels = 0; u->n_levels < UNET_MAX_LEVELS; u->n_levels++) {
        snprintf(name, sizeof name, "down_blocks.%d.resnets.0.conv1.weight", u->n_levels);
        if (ws_shape(ws, name, s) != 4) break;
        u->block_out[u->n_levels] = (int)s[0];
    }
    if (!u->n_levels) return ocd_fail("%s: no down_blocks: not a ControlNet", ws_label(ws));
    for (u->layers_per_block = 0; u->layers_per_block < 7; u->layers_per_block++) {
        snprintf(name, sizeof name, "down_blocks.0.resnets.%d.conv1.weight", u->layers_per_block);
        if (!ws_has(ws, name)) break;
    }
    u->cross_dim = 768;
    for (int l = 0; l < u->n_levels; l++) {
        snprintf(name, sizeof name, "down_blocks.%d.attentions.0.proj_in.weight", l);
        u->down_attn[l] = ws_has(ws, name);
        u->up_attn[u->n_levels - 1 - l] = u->down_attn[l];
        u->heads[l] = 8;
        snprintf(name, sizeof name, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", l);
        if (u->down_attn[l] && ws_shape(ws, name, s) == 2) u->cross_dim = (int)s[1];
    }
    u->groups = 32;
    u->eps = 1e-5f;
    u->flip_sin_to_cos = 1;
    u->transformer_depth = 1;
    u->sample_size = 64;
    if (ws_shape(ws, "controlnet_cond_embedding.conv_in.weight", s) != 4)
        return ocd_fail("%s: no controlnet_cond_embedding.conv_in (input_hint_block.0): not a ControlNet", ws_label(ws));
    c->cond_channels = (int)s[1];
    c->embed[0] = (int)s[0];
    c->n_embed = 1;
    for (int k = 1; k < 2 * CN_MAX_EMBED; k += 2) {
        snprintf(name, sizeof name, "controlnet_cond_embedding.blocks.%d.weight", k);
        if (ws_shape(ws, name, s) != 4) break;
        if (c->n_embed == CN_MAX_EMBED) return ocd_fail("%s: more than %d embedding widths", ws_label(ws), CN_MAX_EMBED);
        c->embed[c->n_embed++] = (int)s[0];
    }
    return 0;
}

int controlnet_config_preset(controlnet_config *c, const char *preset) {
    static const char sd15[] =
        "{\"block_out_channels\":[320,640,1280,1280],\"layers_per_block\":2,\"attention_head_dim\":8,"
        "\"cross_attention_dim\":768,\"norm_num_groups\":32,\"norm_eps\":1e-5,\"in_channels\":4,"
        "\"down_block_types\":[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"DownBlock2D\"],"
        "\"flip_sin_to_cos\":true,\"freq_shift\":0,\"conditioning_channels\":3,"
        "\"conditioning_embedding_out_channels\":[16,32,96,256],\"controlnet_conditioning_channel_order\":\"rgb\"}";
    static const char tiny[] =
        "{\"block_out_channels\":[16,32,32,32],\"layers_per_block\":2,\"attention_head_dim\":8,"
        "\"cross_attention_dim\":32,\"norm_num_groups\":8,\"norm_eps\":1e-5,\"in_channels\":4,"
        "\"down_block_types\":[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"DownBlock2D\"],"
        "\"flip_sin_to_cos\":true,\"freq_shift\":0,\"conditioning_channels\":3,"
        "\"conditioning_embedding_out_channels\":[8,16,32,64],\"controlnet_conditioning_channel_order\":\"rgb\"}";
    if (!strcmp(preset, "sd15")) return controlnet_config_from_json(c, sd15);
    if (!strcmp(preset, "tiny")) return controlnet_config_from_json(c, tiny);
    return ocd_fail("unknown ControlNet preset \"%s\" (sd15 or tiny)", preset);
}

int controlnet_cond_factor(const controlnet_config *c) { return 1 << (c->n_embed - 1); }

/* ------------------------------------------------------------------ build */

controlnet *controlnet_new(const controlnet_config *c, ws_source *ws) {
    controlnet *cn = calloc(1, sizeof *cn);
    if (!cn) { ocd_fail("out of memory"); return NULL; }
    cn->cfg = *c;
    const unet_config *u = &c->trunk;
    const int C0 = u->block_out[0], ne = c->n_embed;
    if (!(cn->trunk = unet_new_trunk(u, ws))) goto fail;
    if (!(cn->e_in_w = ws_get(ws, "controlnet_cond_embedding.conv_in.weight", WS_SHAPE4(c->embed[0], c->cond_channels, 3, 3))) ||
        !(cn->e_in_b = ws_get(ws, "controlnet_cond_embedding.conv_in.bias", WS_SHAPE1(c->embed[0]))))
        goto fail;
    for (int i = 0; i + 1 < ne; i++) {
        const int a = c->embed[i], b = c->embed[i + 1];
        if (!(cn->e_w[2 * i] = ws_getf(ws, WS_SHAPE4(a, a, 3, 3), "controlnet_cond_embedding.blocks.%d.weight", 2 * i)) ||
            !(cn->e_b[2 * i] = ws_getf(ws, WS_SHAPE1(a), "controlnet_cond_embedding.blocks.%d.bias", 2 * i)) ||
            !(cn->e_w[2 * i + 1] = ws_getf(ws, WS_SHAPE4(b, a, 3, 3), "controlnet_cond_embedding.blocks.%d.weight", 2 * i + 1)) ||
            !(cn->e_b[2 * i + 1] = ws_getf(ws, WS_SHAPE1(b), "controlnet_cond_embedding.blocks.%d.bias", 2 * i + 1)))
            goto fail;
    }
    if (!(cn->e_out_w = ws_get(ws, "controlnet_cond_embedding.conv_out.weight", WS_SHAPE4(C0, c->embed[ne - 1], 3, 3))) ||
        !(cn->e_out_b = ws_get(ws, "controlnet_cond_embedding.conv_out.bias", WS_SHAPE1(C0))))
        goto fail;
    /* skip channels in push order: conv_in, each down resnet(/attention), each downsampler */
    int n = 0;
    cn->skip_c[n++] = C0;
    for (int i = 0; i < u->n_levels; i++) {
        for (int j = 0; j < u->layers_per_block; j++) cn->skip_c[n++] = u->block_out[i];
        if (i < u->n_levels - 1) cn->skip_c[n++] = u->block_out[i];
    }
    cn->n_skips = n;
    for (int i = 0; i < n; i++) {
        const int ch = cn->skip_c[i];
        if (!(cn->zc_w[i] = ws_getf(ws, WS_SHAPE2(ch, ch), "controlnet_down_blocks.%d.weight", i)) ||
            !(cn->zc_b[i] = ws_getf(ws, WS_SHAPE1(ch), "controlnet_down_blocks.%d.bias", i)))
            goto fail;
    }
    const int Cm = u->block_out[u->n_levels - 1];
    if (!(cn->mid_w = ws_get(ws, "controlnet_mid_block.weight", WS_SHAPE2(Cm, Cm))) ||
        !(cn->mid_b = ws_get(ws, "controlnet_mid_block.bias", WS_SHAPE1(Cm))))
        goto fail;
    return cn;
fail:
    controlnet_free(cn);
    return NULL;
}

void controlnet_free(controlnet *cn) {
    if (!cn) return;
    unet_free(cn->trunk);
    free(cn->ws);
    free(cn);
}

const controlnet_config *controlnet_get_config(const controlnet *cn) { return &cn->cfg; }
int controlnet_set_precision(controlnet *cn, int bf16) { return unet_set_precision(cn->trunk, bf16); }

double controlnet_last_flops(const controlnet *cn) { return cn->flops; }

/* ------------------------------------------------------------------ residual buffers */

int controlnet_out_alloc(controlnet_out *o, const controlnet *cn, int B, int h, int w) {
    memset(o, 0, sizeof *o);
    const unet_config *u = &cn->cfg.trunk;
    if (B < 1 || h < 1 || w < 1) return ocd_fail("controlnet: empty batch or latent");
    o->B = B;
    int n = 0;
#define ADD(ch) (o->c[n] = (ch), o->h[n] = h, o->w[n] = w, n++)
    ADD(u->block_out[0]);
    for (int i = 0; i < u->n_levels; i++) {
        for (int j = 0; j < u->layers_per_block; j++) ADD(u->block_out[i]);
        if (i < u->n_levels - 1) {
            h = (h - 1) / 2 + 1, w = (w - 1) / 2 + 1;
            ADD(u->block_out[i]);
        }
    }
#undef ADD
    o->n = n;
    o->mid_c = u->block_out[u->n_levels - 1], o->mid_h = h, o->mid_w = w;
    for (int i = 0; i < n; i++)
        if (!(o->down[i] = ocd_malloc(sizeof(float) * B * o->c[i] * o->h[i] * o->w[i]))) goto fail;
    if (!(o->mid = ocd_malloc(sizeof(float) * B * o->mid_c * o->mid_h * o->mid_w))) goto fail;
    return 0;
fail:
    controlnet_out_free(o);
    return -1;
}

void controlnet_out_free(controlnet_out *o) {
    for (int i = 0; i < o->n; i++) free(o->down[i]);
    free(o->mid);
    memset(o, 0, sizeof *o);
}

void controlnet_out_copy_item(controlnet_out *dst, int b2, const controlnet_out *src, int b) {
    for (int i = 0; i < src->n; i++) {
        size_t sz = (size_t)src->c[i] * src->h[i] * src->w[i];
        memcpy(dst->down[i] + b2 * sz, src->down[i] + b * sz, sizeof(float) * sz);
    }
    size_t sz = (size_t)src->mid_c * src->mid_h * src->mid_w;
    memcpy(dst->mid + b2 * sz, src->mid + b * sz, sizeof(float) * sz);
}

void controlnet_out_residuals(const controlnet_out *o, unet_residuals *r) {
    memset(r, 0, sizeof *r);
    r->n_down = o->n;
    for (int i = 0; i < o->n; i++) r->down[i] = o->down[i];
    r->mid = o->mid;
}

/* ------------------------------------------------------------------ forward */

static float *workspace(controlnet *cn, size_t floats) {
    if (floats > cn->ws_cap) {
        free(cn->ws);
        cn->ws_cap = 0;
        if (!(cn->ws = ocd_malloc(sizeof(float) * floats))) return NULL;
        cn->ws_cap = floats;
    }
    return cn->ws;
}

/* y [co, ho, wo] = conv3x3(x [ci, h, w]), pad 1; returns ho/wo through the pointers. */
static void conv3(controlnet *cn, float *y, const float *x, const float *w, const float *b, int ci, int h, int wd, int co,
                  int stride, float *scratch, int *ho, int *wo) {
    k_conv_shape s = {.ci = ci, .h = h, .w = wd, .co = co, .kh = 3, .kw = 3, .stride = stride,
                      .pad_t = 1, .pad_b = 1, .pad_l = 1, .pad_r = 1};
    k_conv2d(y, x, w, b, &s, scratch);
    *ho = k_conv_out_h(&s), *wo = k_conv_out_w(&s);
    cn->flops += 2.0 * co * ci * 9 * *ho * *wo;
}

/* emb [C0, h, w] = cond_embedding(cond [cond_ch, H, W]) for one item. */
static int cond_embed(controlnet *cn, const float *cond, int H, int W, float *emb, int h_want, int w_want) {
    const controlnet_config *c = &cn->cfg;
    const int ne = c->n_embed, C0 = c->trunk.block_out[0];
    /* sizes: the largest activation and conv scratch over the convolutions as they will run */
    size_t big = 0, scr = 0;
    int h = H, w = W;
#define SIZE_CONV(ci_, co_, stride_) do { \
        k_conv_shape s_ = {.ci = (ci_), .h = h, .w = w, .co = (co_), .kh = 3, .kw = 3, .stride = (stride_), \
                           .pad_t = 1, .pad_b = 1, .pad_l = 1, .pad_r = 1}; \
        scr = OCD_MAX(scr, k_conv2d_scratch_floats(&s_)); \
        h = k_conv_out_h(&s_), w = k_conv_out_w(&s_); \
        big = OCD_MAX(big, (size_t)(co_) * h * w); } while (0)
    SIZE_CONV(c->cond_channels, c->embed[0], 1);
    for (int i = 0; i + 1 < ne; i++) {
        SIZE_CONV(c->embed[i], c->embed[i], 1);
        SIZE_CONV(c->embed[i], c->embed[i + 1], 2);
    }
    const int he = h, we = w;
    SIZE_CONV(c->embed[ne - 1], C0, 1);
#undef SIZE_CONV
    if (he != h_want || we != w_want)
        return ocd_fail("controlnet: condition %dx%d gives a %dx%d embedding, the latent is %dx%d (the condition must be "
                        "%dx%d pixels)", W, H, we, he, w_want, h_want, w_want * controlnet_cond_factor(c),
                        h_want * controlnet_cond_factor(c));
    float *ws = workspace(cn, 2 * big + scr + (size_t)c->cond_channels * H * W);
    if (!ws) return -1;
    float *a = ws, *b = ws + big, *scratch = ws + 2 * big, *flip = scratch + scr;  /* a, b: [e, h, w] ping-pong */
    const float *in = cond;
    if (c->bgr) { /* the network wants BGR: reverse the channels */
        const size_t plane = (size_t)H * W;
        for (int ch = 0; ch < c->cond_channels; ch++)
            memcpy(flip + ch * plane, cond + (size_t)(c->cond_channels - 1 - ch) * plane, sizeof(float) * plane);
        in = flip;
    }
    int ho, wo;
    h = H, w = W;
    conv3(cn, a, in, cn->e_in_w, cn->e_in_b, c->cond_channels, h, w, c->embed[0], 1, scratch, &ho, &wo);
    k_silu(a, (size_t)c->embed[0] * h * w);
    for (int i = 0; i + 1 < ne; i++) {
        const int e0 = c->embed[i], e1 = c->embed[i + 1];
        conv3(cn, b, a, cn->e_w[2 * i], cn->e_b[2 * i], e0, h, w, e0, 1, scratch, &ho, &wo);
        k_silu(b, (size_t)e0 * h * w);
        conv3(cn, a, b, cn->e_w[2 * i + 1], cn->e_b[2 * i + 1], e0, h, w, e1, 2, scratch, &ho, &wo);
        h = ho, w = wo;
        k_silu(a, (size_t)e1 * h * w);
    }
    conv3(cn, emb, a, cn->e_out_w, cn->e_out_b, c->embed[ne - 1], h, w, C0, 1, scratch, &ho, &wo);
    return 0;
}

/* y [B, c, hw] = scale * (W [c, c] x [B, c, hw] + b); global_pool: averaged over hw and broadcast. */
static void zero_conv(controlnet *cn, float *y, const float *x, const float *w, const float *b, int B, int c, int hw,
                      float scale) {
    for (int i = 0; i < B; i++) {
        float *yi = y + (size_t)i * c * hw;
        k_gemm(0, 0, c, hw, c, 1.0f, w, c, x + (size_t)i * c * hw, hw, 0.0f, yi, hw);
        for (int ch = 0; ch < c; ch++) {
            float *p = yi + (size_t)ch * hw;
            for (int k = 0; k < hw; k++) p[k] = (p[k] + b[ch]) * scale;
            if (cn->cfg.global_pool) {
                double s = 0;
                for (int k = 0; k < hw; k++) s += p[k];
                for (int k = 0; k < hw; k++) p[k] = (float)(s / hw);
            }
        }
    }
    cn->flops += 2.0 * B * c * c * hw;
}

int controlnet_forward(controlnet *cn, const float *x, const float *t, const float *ctx, int n_ctx, int B, int h, int w,
                       const float *cond, float scale, int norm_frames, controlnet_out *out) {
    const controlnet_config *c = &cn->cfg;
    const int C0 = c->trunk.block_out[0], f = controlnet_cond_factor(c), H = f * h, W = f * w;
    if (out->B != B || out->n != cn->n_skips || out->h[0] != h || out->w[0] != w)
        return ocd_fail("controlnet: output buffers were allocated for another batch or size");
    if (norm_frames > 1 && B % norm_frames) return ocd_fail("controlnet: batch %d is not a multiple of %d frames", B, norm_frames);
#ifdef UNET_HAS_NORM_FRAMES
    const unet_attn_hook hook = {.norm_frames = norm_frames}, *hk = norm_frames > 1 ? &hook : NULL;
#else
    const unet_attn_hook *hk = NULL;
    if (norm_frames > 1) return ocd_fail("controlnet: clip-wide GroupNorm needs UNet support (unet_attn_hook.norm_frames)");
#endif
    cn->flops = 0;
    /* the condition embedding, added after the trunk's conv_in */
    float *emb = ocd_malloc(sizeof(float) * B * C0 * h * w);   /* [B, C0, h, w] */
    if (!emb) return -1;
    for (int b = 0; b < B; b++)
        if (cond_embed(cn, cond + (size_t)b * c->cond_channels * H * W, H, W, emb + (size_t)b * C0 * h * w, h, w)) {
            free(emb);
            return -1;
        }
    double fl = cn->flops;
    unet_feats ft;
    int rc = unet_trunk_forward(cn->trunk, x, t, ctx, n_ctx, B, h, w, hk, emb, &ft);
    free(emb);
    if (rc) { unet_release(cn->trunk); return ocd_fail_context("controlnet"); }
    cn->flops = fl + unet_last_flops(cn->trunk);
    if (ft.n != cn->n_skips) { unet_release(cn->trunk); return ocd_fail("controlnet: %d skips, expected %d", ft.n, cn->n_skips); }
    for (int i = 0; i < ft.n; i++)
        zero_conv(cn, out->down[i], ft.x[i], cn->zc_w[i], cn->zc_b[i], B, ft.c[i], ft.h[i] * ft.w[i], scale);
    zero_conv(cn, out->mid, ft.mid, cn->mid_w, cn->mid_b, B, ft.mid_c, ft.mid_h * ft.mid_w, scale);
    unet_release(cn->trunk);
    return 0;
}

/* ------------------------------------------------------------------ loading */

/* Single files keep the diffusers config in their metadata under various prefixes. */
static char *single_file_config(const char *path) {
    static const char *const keys[] = {"tiny_controlnet.diffusers_config", "ocd.controlnet_config", "controlnet_config",
                                       "diffusers_config", "diffusers.controlnet_config", "config", NULL};
    st_file *f = st_open(path);
    if (!f) return NULL;
    char *out = NULL;
    for (int i = 0; keys[i] && !out; i++) {
        const char *v = st_metadata(f, keys[i]);
        if (v && strchr(v, '{')) out = strdup(v);
    }
    st_close(f);
    return out;
}

int controlnet_load(controlnet_model *m, const char *path, uint64_t seed) {
    memset(m, 0, sizeof *m);
    if (!strncmp(path, "random:", 7)) {
        m->files.kind = MODEL_RANDOM;
        m->config_source = "preset";
        if (!(m->files.path = strdup(path)) || !(m->files.unet = ws_random(seed, "random:controlnet"))) {
            ocd_fail("out of memory");
            goto fail;
        }
        if (controlnet_config_preset(&m->cfg, path + 7)) goto fail;
    } else {
        if (controlnet_files_open(&m->files, path)) goto fail;
        char *cfg = m->files.unet_config;
        m->config_source = m->files.kind == MODEL_DIFFUSERS ? "config.json" : "file metadata";
        if (!cfg && m->files.kind == MODEL_LDM_FILE) cfg = m->files.unet_config = single_file_config(path);
        if (cfg ? controlnet_config_from_json(&m->cfg, cfg) : controlnet_config_infer(&m->cfg, m->files.unet)) goto fail;
        if (!cfg) m->config_source = "inferred from shapes";
    }
    if (!(m->net = controlnet_new(&m->cfg, m->files.unet))) goto fail;
    return 0;
fail:
    ocd_fail_context("loading ControlNet %s", path);
    controlnet_model_free(m);
    return -1;
}

void controlnet_model_free(controlnet_model *m) {
    controlnet_free(m->net);
    model_files_close(&m->files);
    memset(m, 0, sizeof *m);
}

int64_t controlnet_params(const controlnet_model *m) { return m->files.unet ? ws_params_loaded(m->files.unet) : 0; }

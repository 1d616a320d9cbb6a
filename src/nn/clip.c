#include "nn/clip.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/kernels.h"

int clip_config_from_json(clip_config *c, const char *json_text) {
    json_error_t err;
    json_t *j = json_loads(json_text, 0, &err);
    if (!j) return ocd_fail("text encoder config: invalid JSON (%s)", err.text);
    *c = (clip_config){.vocab = 49408, .n_pos = 77, .hidden = 768, .inter = 3072, .heads = 12, .layers = 12,
                       .eps = 1e-5f, .quick_gelu = 1};
    json_t *v;
#define GETI(key, field) if ((v = json_object_get(j, key)) && json_is_integer(v)) c->field = (int)json_integer_value(v)
    GETI("vocab_size", vocab);
    GETI("max_position_embeddings", n_pos);
    GETI("hidden_size", hidden);
    GETI("intermediate_size", inter);
    GETI("num_attention_heads", heads);
    GETI("num_hidden_layers", layers);
#undef GETI
    if ((v = json_object_get(j, "layer_norm_eps")) && json_is_number(v)) c->eps = (float)json_number_value(v);
    if ((v = json_object_get(j, "hidden_act")) && json_is_string(v)) {
        const char *a = json_string_value(v);
        if (strcmp(a, "quick_gelu") == 0) c->quick_gelu = 1;
        else if (strcmp(a, "gelu") == 0) c->quick_gelu = 0;
        else { json_decref(j); return ocd_fail("text encoder config: unsupported hidden_act \"%s\"", a); }
    }
    json_decref(j);
    if (c->vocab < 1 || c->vocab > 1000000 || c->n_pos < 1 || c->n_pos > 4096 || c->hidden < 1 || c->hidden > 16384 ||
        c->inter < 1 || c->inter > 65536 || c->heads < 1 || c->hidden % c->heads || c->layers < 1 || c->layers > 128)
        return ocd_fail("text encoder config: implausible sizes (hidden %d, heads %d, layers %d)", c->hidden, c->heads,
                        c->layers);
    return 0;
}

int clip_config_infer(clip_config *c, ws_source *ws) {
    int64_t s[8];
    *c = (clip_config){.eps = 1e-5f, .quick_gelu = 1};
    if (ws_shape(ws, "text_model.embeddings.token_embedding.weight", s) != 2)
        return ocd_fail("%s: cannot infer the text encoder: no token_embedding", ws_label(ws));
    c->vocab = (int)s[0];
    c->hidden = (int)s[1];
    if (ws_shape(ws, "text_model.embeddings.position_embedding.weight", s) != 2)
        return ocd_fail("%s: no position_embedding", ws_label(ws));
    c->n_pos = (int)s[0];
    if (ws_shape(ws, "text_model.encoder.layers.0.mlp.fc1.weight", s) != 2) return ocd_fail("%s: no layer 0", ws_label(ws));
    c->inter = (int)s[0];
    char name[128];
    for (c->layers = 0; c->layers < 128; c->layers++) {
        snprintf(name, sizeof name, "text_model.encoder.layers.%d.mlp.fc1.weight", c->layers);
        if (!ws_has(ws, name)) break;
    }
    c->heads = c->hidden % 64 == 0 ? c->hidden / 64 : 1;
    return 0;
}

#define W2(name, a, b) ws_getf(ws, WS_SHAPE2(a, b), "text_model.%s", name)
#define W1(name, a) ws_getf(ws, WS_SHAPE1(a), "text_model.%s", name)

clip_text *clip_new(const clip_config *c, ws_source *ws) {
    clip_text *m = calloc(1, sizeof *m);
    if (!m || !(m->layer = calloc(c->layers, sizeof *m->layer))) { free(m); ocd_fail("out of memory"); return NULL; }
    m->cfg = *c;
    arena_init(&m->arena);
    const int H = c->hidden, I = c->inter;
    int ok = (m->tok_emb = W2("embeddings.token_embedding.weight", c->vocab, H)) &&
             (m->pos_emb = W2("embeddings.position_embedding.weight", c->n_pos, H)) &&
             (m->lnf_g = W1("final_layer_norm.weight", H)) && (m->lnf_b = W1("final_layer_norm.bias", H));
    char p[160];
    for (int l = 0; ok && l < c->layers; l++) {
        clip_layer *L = &m->layer[l];
#define LW2(field, sub, a, b) (snprintf(p, sizeof p, "encoder.layers.%d.%s", l, sub), (L->field = W2(p, a, b)) != NULL)
#define LW1(field, sub, a) (snprintf(p, sizeof p, "encoder.layers.%d.%s", l, sub), (L->field = W1(p, a)) != NULL)
        ok = LW1(ln1_g, "layer_norm1.weight", H) && LW1(ln1_b, "layer_norm1.bias", H) &&
             LW2(wq, "self_attn.q_proj.weight", H, H) && LW1(bq, "self_attn.q_proj.bias", H) &&
             LW2(wk, "self_attn.k_proj.weight", H, H) && LW1(bk, "self_attn.k_proj.bias", H) &&
             LW2(wv, "self_attn.v_proj.weight", H, H) && LW1(bv, "self_attn.v_proj.bias", H) &&
             LW2(wo, "self_attn.out_proj.weight", H, H) && LW1(bo, "self_attn.out_proj.bias", H) &&
             LW1(ln2_g, "layer_norm2.weight", H) && LW1(ln2_b, "layer_norm2.bias", H) &&
             LW2(fc1_w, "mlp.fc1.weight", I, H) && LW1(fc1_b, "mlp.fc1.bias", I) &&
             LW2(fc2_w, "mlp.fc2.weight", H, I) && LW1(fc2_b, "mlp.fc2.bias", H);
#undef LW1
#undef LW2
    }
    if (!ok) { clip_free(m); return NULL; }
    return m;
}

void clip_free(clip_text *m) {
    if (!m) return;
    arena_free(&m->arena);
    free(m->layer);
    free(m); /* weights belong to the ws_source */
}

int clip_encode(clip_text *m, const int32_t *ids, int B, float *out) {
    const clip_config *c = &m->cfg;
    const int N = c->n_pos, H = c->hidden, I = c->inter, dh = H / c->heads;
    for (int i = 0; i < B * N; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab) return ocd_fail("token id %d outside the vocabulary (%d)", ids[i], c->vocab);
    ocd_arena *a = &m->arena;
    float *h = arena_floats(a, (size_t)N * H);      /* [N, H] normed input */
    float *q = arena_floats(a, (size_t)N * H);      /* [N, H] */
    float *k = arena_floats(a, (size_t)N * H);
    float *v = arena_floats(a, (size_t)N * H);
    float *att = arena_floats(a, (size_t)N * H);
    float *mlp = arena_floats(a, (size_t)N * I);    /* [N, I] */
    float *scratch = arena_floats(a, k_attention_scratch_floats(N, N));
    if (!h || !q || !k || !v || !att || !mlp || !scratch) { arena_reset(a); return -1; }
    for (int b = 0; b < B; b++) {
        float *x = out + (size_t)b * N * H;          /* [N, H] residual stream */
        for (int n = 0; n < N; n++)
            for (int j = 0; j < H; j++)
                x[(size_t)n * H + j] = m->tok_emb[(size_t)ids[b * N + n] * H + j] + m->pos_emb[(size_t)n * H + j];
        for (int l = 0; l < c->layers; l++) {
            const clip_layer *L = &m->layer[l];
            k_layer_norm(h, x, L->ln1_g, L->ln1_b, N, H, c->eps);
            k_linear(q, h, L->wq, L->bq, N, H, H);
            k_linear(k, h, L->wk, L->bk, N, H, H);
            k_linear(v, h, L->wv, L->bv, N, H, H);
            k_attention(att, H, q, H, k, H, v, H, N, N, c->heads, dh, 1.0f / sqrtf((float)dh), 1, scratch);
            k_linear(h, att, L->wo, L->bo, N, H, H);
            k_add(x, h, (size_t)N * H);
            k_layer_norm(h, x, L->ln2_g, L->ln2_b, N, H, c->eps);
            k_linear(mlp, h, L->fc1_w, L->fc1_b, N, H, I);
            if (c->quick_gelu) k_quick_gelu(mlp, (size_t)N * I); else k_gelu_erf(mlp, (size_t)N * I);
            k_linear(h, mlp, L->fc2_w, L->fc2_b, N, I, H);
            k_add(x, h, (size_t)N * H);
        }
        k_layer_norm(x, x, m->lnf_g, m->lnf_b, N, H, c->eps);
    }
    return arena_reset(a);
}

double clip_flops(const clip_config *c, int B) {
    double N = c->n_pos, H = c->hidden, I = c->inter;
    double per_layer = 2 * N * H * H * 4 + 2 * N * H * I * 2 + 2 * 2 * N * N * H;
    return B * c->layers * per_layer;
}

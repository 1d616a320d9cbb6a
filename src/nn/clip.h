/* CLIP text encoder (transformers CLIPTextModel), as SD 1.x uses it: token + position
 * embeddings, pre-LayerNorm blocks with causal self-attention and quick_gelu MLP, final
 * LayerNorm; output = last_hidden_state for all 77 positions (algorithms.md E.1). */
#ifndef OCD_NN_CLIP_H
#define OCD_NN_CLIP_H

#include <stdint.h>

#include "base/arena.h"
#include "nn/weights.h"

typedef struct {
    int vocab, n_pos, hidden, inter, heads, layers;
    float eps;
    int quick_gelu;      /* 1: x*sigmoid(1.702x) (SD 1.x); 0: exact GELU */
} clip_config;

/* transformers text_encoder/config.json text. */
int clip_config_from_json(clip_config *c, const char *json_text);
/* From tensor shapes (single files without a config); head dim 64 as in CLIP. */
int clip_config_infer(clip_config *c, ws_source *ws);

typedef struct {
    float *ln1_g, *ln1_b;        /* [hidden] */
    float *wq, *wk, *wv, *wo;    /* [hidden, hidden] */
    float *bq, *bk, *bv, *bo;    /* [hidden] */
    float *ln2_g, *ln2_b;        /* [hidden] */
    float *fc1_w, *fc1_b;        /* [inter, hidden], [inter] */
    float *fc2_w, *fc2_b;        /* [hidden, inter], [hidden] */
} clip_layer;

typedef struct {
    clip_config cfg;
    float *tok_emb;              /* [vocab, hidden] */
    float *pos_emb;              /* [n_pos, hidden] */
    clip_layer *layer;           /* [layers] */
    float *lnf_g, *lnf_b;        /* [hidden] */
    ocd_arena arena;
} clip_text;

clip_text *clip_new(const clip_config *c, ws_source *ws);
void clip_free(clip_text *m);
/* ids [B, n_pos] -> out [B, n_pos, hidden]. Ids outside the vocabulary are an error. */
int clip_encode(clip_text *m, const int32_t *ids, int B, float *out);
double clip_flops(const clip_config *c, int B);

#endif

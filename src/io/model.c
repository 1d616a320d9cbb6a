/* Weight sources (nn/weights.h) over safetensors files, LDM single files and random
 * weights, and the model-folder / single-file opener. */
#include "io/model.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "io/ldm_names.h"
#include "io/safetensors.h"

/* ------------------------------------------------------------------ weight sources */

typedef struct {
    char *name;              /* diffusers name, relative to the network */
    const st_tensor *t;
} ws_entry;

struct ws_source {
    char label[256];
    st_file *file;           /* owned when own_file */
    int own_file;
    ws_entry *e;             /* sorted by name */
    int n;
    int random;
    uint64_t seed;
    void **owned;            /* buffers handed out (converted or generated) */
    int n_owned, cap_owned;
    int64_t params;
};

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const ws_entry *)a)->name, ((const ws_entry *)b)->name);
}

static const ws_entry *ws_lookup(const ws_source *ws, const char *name) {
    ws_entry key = {(char *)name, NULL};
    return ws->n ? bsearch(&key, ws->e, ws->n, sizeof *ws->e, cmp_entry) : NULL;
}

static int ws_add(ws_source *ws, const char *name, const st_tensor *t) {
    ws_entry *e = realloc(ws->e, (ws->n + 1) * sizeof *e);
    if (!e) return ocd_fail("out of memory");
    ws->e = e;
    if (!(ws->e[ws->n].name = strdup(name))) return ocd_fail("out of memory");
    ws->e[ws->n++].t = t;
    return 0;
}

static int ws_own(ws_source *ws, void *p) {
    if (ws->n_owned == ws->cap_owned) {
        int cap = ws->cap_owned ? ws->cap_owned * 2 : 256;
        void **o = realloc(ws->owned, cap * sizeof *o);
        if (!o) return ocd_fail("out of memory");
        ws->owned = o;
        ws->cap_owned = cap;
    }
    ws->owned[ws->n_owned++] = p;
    return 0;
}

static void ws_sort(ws_source *ws) {
    if (ws->n > 1) qsort(ws->e, ws->n, sizeof *ws->e, cmp_entry);
}

static ws_source *ws_new(const char *label) {
    ws_source *ws = calloc(1, sizeof *ws);
    if (!ws) { ocd_fail("out of memory"); return NULL; }
    snprintf(ws->label, sizeof ws->label, "%s", label ? label : "weights");
    return ws;
}

void ws_free(ws_source *ws) {
    if (!ws) return;
    for (int i = 0; i < ws->n; i++) free(ws->e[i].name);
    for (int i = 0; i < ws->n_owned; i++) free(ws->owned[i]);
    free(ws->e);
    free(ws->owned);
    if (ws->own_file) st_close(ws->file);
    free(ws);
}

const char *ws_label(const ws_source *ws) { return ws->label; }
int64_t ws_params_loaded(const ws_source *ws) { return ws->params; }

/* Shapes match when equal after dropping trailing 1s (a Linear [C,C] stored as a 1x1
 * conv [C,C,1,1] is the same tensor). */
static int shape_matches(int nd_a, const int64_t *a, int nd_b, const int64_t *b) {
    while (nd_a > 1 && a[nd_a - 1] == 1) nd_a--;
    while (nd_b > 1 && b[nd_b - 1] == 1) nd_b--;
    if (nd_a != nd_b) return 0;
    for (int i = 0; i < nd_a; i++) if (a[i] != b[i]) return 0;
    return 1;
}

static void shape_str(char *buf, size_t cap, int nd, const int64_t *s) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < nd && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)s[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) { h ^= (uint8_t)*s++; h *= 1099511628211ull; }
    return h;
}

static int ends(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Random weights with the statistics of the fixtures' tiny model, so activations stay O(1). */
static float *random_tensor(ws_source *ws, const char *name, int ndim, const int64_t *shape, int64_t numel) {
    float *p = ocd_malloc((size_t)numel * sizeof *p);
    if (!p) return NULL;
    /* Benchmark weights need the right scale, not exact Gaussians, and SD 1.5 has a billion of
     * them: an Irwin-Hall sum of four 16-bit uniforms from one SplitMix64 hash per element
     * (mean 0, variance 1, bounded at +-3.46) is ~30x cheaper than Box-Muller. Element i
     * depends only on (seed, name, i), so any thread split gives the same weights. */
    const uint64_t stream = name_hash(name) ^ (ws->seed * 0x9E3779B97F4A7C15ull);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < numel; i++) {
        uint64_t z = stream + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float sum = (float)(z & 0xffff) + (float)((z >> 16) & 0xffff) + (float)((z >> 32) & 0xffff) + (float)(z >> 48);
        p[i] = (sum / 65536.0f - 2.0f) * 1.7320508f; /* 4 U(0,1): mean 2, variance 1/3 */
    }
    float scale, offset = 0;
    if (strstr(name, "token_embedding")) scale = 1.0f;
    else if (strstr(name, "position_embedding")) scale = 0.5f;
    else if (ndim >= 2) {
        int64_t fan_in = 1;
        for (int d = 1; d < ndim; d++) fan_in *= shape[d];
        scale = 1.0f / sqrtf((float)fan_in);
    } else if (ends(name, ".bias")) scale = strstr(name, "norm") ? 0.1f : 0.05f;
    else { scale = 0.1f; offset = 1.0f; } /* norm gains */
    for (int64_t i = 0; i < numel; i++) p[i] = offset + scale * p[i];
    return p;
}

float *ws_get(ws_source *ws, const char *name, int ndim, const int64_t *shape) {
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    float *p;
    if (ws->random) {
        if (!(p = random_tensor(ws, name, ndim, shape, numel))) return NULL;
    } else {
        const ws_entry *e = ws_lookup(ws, name);
        if (!e) { ocd_fail("%s: missing tensor \"%s\"", ws->label, name); return NULL; }
        const st_tensor *t = e->t;
        if (!shape_matches(ndim, shape, t->ndim, t->shape)) {
            char a[96], b[96];
            shape_str(a, sizeof a, t->ndim, t->shape);
            shape_str(b, sizeof b, ndim, shape);
            ocd_fail("%s: tensor \"%s\" has shape %s, expected %s", ws->label, name, a, b);
            return NULL;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
            ocd_fail("%s: tensor \"%s\" has dtype %s, expected F32/F16/BF16", ws->label, name, st_dtype_name(t->dtype));
            return NULL;
        }
        if (!(p = st_to_f32(t))) return NULL;
    }
    if (ws_own(ws, p)) { free(p); return NULL; }
    ws->params += numel;
    return p;
}

float *ws_getf(ws_source *ws, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return ws_get(ws, name, ndim, shape);
}

int ws_has(ws_source *ws, const char *name) { return ws->random ? 1 : ws_lookup(ws, name) != NULL; }

int ws_shape(ws_source *ws, const char *name, int64_t *shape) {
    if (ws->random) return -1;
    const ws_entry *e = ws_lookup(ws, name);
    if (!e) return -1;
    for (int d = 0; d < e->t->ndim; d++) shape[d] = e->t->shape[d];
    return e->t->ndim;
}

ws_source *ws_random(uint64_t seed, const char *label) {
    ws_source *ws = ws_new(label);
    if (ws) { ws->random = 1; ws->seed = seed; }
    return ws;
}

/* Every key of a diffusers component file, legacy attention names translated. */
static ws_source *ws_over_file(st_file *f, int own, const char *label) {
    ws_source *ws = ws_new(label);
    if (!ws) { if (own) st_close(f); return NULL; }
    ws->file = f;
    ws->own_file = own;
    char alias[512];
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        const char *name = diffusers_legacy_name(alias, sizeof alias, t->name) ? alias : t->name;
        if (ws_add(ws, name, t)) { ws_free(ws); return NULL; }
    }
    ws_sort(ws);
    return ws;
}

ws_source *ws_open_file(const char *path, const char *label) {
    st_file *f = st_open(path);
    return f ? ws_over_file(f, 1, label ? label : path) : NULL;
}

/* ------------------------------------------------------------------ model files */

static char *read_text_if_exists(const char *dir, const char *rel) {
    char p[4096];
    ocd_path_join(p, sizeof p, dir, rel);
    return ocd_file_exists(p) ? ocd_read_file(p, NULL) : NULL;
}

static char *strdup_or_fail(const char *s) {
    char *d = strdup(s);
    if (!d) ocd_fail("out of memory");
    return d;
}

static int has_suffix_ci(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

static int refuse_pickle(const char *path) {
    return ocd_fail("%s: PyTorch pickle checkpoints (.ckpt/.bin/.pt) are not loaded, since unpickling can run "
                    "arbitrary code; convert it once to safetensors (e.g. with diffusers' "
                    "convert_original_stable_diffusion_to_diffusers.py --to_safetensors, or "
                    "safetensors.torch.save_file(torch.load(f)['state_dict'], 'model.safetensors'))", path);
}

/* One component of a diffusers folder: its safetensors file (refusing .bin). */
static int open_component(model_files *m, const char *dir, const char *sub, const char *const files[],
                          ws_source **ws_out, char **config_out) {
    char p[4096], label[512];
    for (int i = 0; files[i]; i++) {
        char rel[512];
        snprintf(rel, sizeof rel, "%s/%s", sub, files[i]);
        ocd_path_join(p, sizeof p, dir, rel);
        if (!ocd_file_exists(p)) continue;
        if (has_suffix_ci(p, ".bin")) return refuse_pickle(p);
        snprintf(label, sizeof label, "%s", p);
        st_file *f = st_open(p);
        if (!f) return -1;
        m->n_keys += st_count(f);
        for (int k = 0; k < st_count(f); k++) {
            m->file_bytes += (int64_t)st_at(f, k)->nbytes;
            m->dtype_count[st_at(f, k)->dtype]++;
            if (strstr(st_at(f, k)->name, "position_ids")) m->n_ignored_keys++;
        }
        if (!(*ws_out = ws_over_file(f, 1, label))) return -1;
        char rel_cfg[512];
        snprintf(rel_cfg, sizeof rel_cfg, "%s/config.json", sub);
        *config_out = read_text_if_exists(dir, rel_cfg);
        return 0;
    }
    return 0; /* component absent */
}

static int open_folder(model_files *m, const char *dir) {
    static const char *const unet_files[] = {"diffusion_pytorch_model.safetensors",
                                             "diffusion_pytorch_model.fp16.safetensors",
                                             "diffusion_pytorch_model.bin", NULL};
    static const char *const text_files[] = {"model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", NULL};
    if (open_component(m, dir, "unet", unet_files, &m->unet, &m->unet_config) ||
        open_component(m, dir, "vae", unet_files, &m->vae, &m->vae_config) ||
        open_component(m, dir, "text_encoder", text_files, &m->text, &m->text_config))
        return -1;
    if (!m->unet && !m->vae && !m->text)
        return ocd_fail("%s: no unet/, vae/ or text_encoder/ with a safetensors file: not a diffusers model folder", dir);
    m->scheduler_config = read_text_if_exists(dir, "scheduler/scheduler_config.json");
    char p[4096];
    ocd_path_join(p, sizeof p, dir, "tokenizer/vocab.json");
    if (ocd_file_exists(p)) {
        char q[4096];
        ocd_path_join(q, sizeof q, dir, "tokenizer/merges.txt");
        if (ocd_file_exists(q)) {
            if (!(m->vocab_path = strdup_or_fail(p)) || !(m->merges_path = strdup_or_fail(q))) return -1;
        }
    }
    return 0;
}

/* Metadata value whose key ends with `suffix` (e.g. "tiny_sd.unet_config"). */
static const char *meta_suffix(const st_file *f, const char *suffix) {
    static const char *const prefixes[] = {"tiny_sd.", "ocd.", "diffusers.", ""};
    char key[256];
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        snprintf(key, sizeof key, "%s%s", prefixes[i], suffix);
        const char *v = st_metadata(f, key);
        if (v) return v;
    }
    return NULL;
}

static int json_int_field(const char *json_text, const char *field, int dflt) {
    if (!json_text) return dflt;
    json_t *j = json_loads(json_text, 0, NULL);
    int v = dflt;
    if (j && json_is_integer(json_object_get(j, field))) v = (int)json_integer_value(json_object_get(j, field));
    json_decref(j);
    return v;
}

static int json_array_len(const char *json_text, const char *field, int dflt) {
    if (!json_text) return dflt;
    json_t *j = json_loads(json_text, 0, NULL);
    int v = dflt;
    if (j && json_is_array(json_object_get(j, field))) v = (int)json_array_size(json_object_get(j, field));
    json_decref(j);
    return v;
}

static int open_single_file(model_files *m, const char *path, int controlnet) {
    st_file *f = st_open(path);
    if (!f) return -1;
    m->n_keys = st_count(f);
    for (int k = 0; k < st_count(f); k++) {
        m->file_bytes += (int64_t)st_at(f, k)->nbytes;
        m->dtype_count[st_at(f, k)->dtype]++;
    }
    const char *ucfg = meta_suffix(f, controlnet ? "controlnet_config" : "unet_config");
    const char *vcfg = meta_suffix(f, "vae_config"), *tcfg = meta_suffix(f, "text_encoder_config");
    if ((ucfg && !(m->unet_config = strdup_or_fail(ucfg))) || (vcfg && !(m->vae_config = strdup_or_fail(vcfg))) ||
        (tcfg && !(m->text_config = strdup_or_fail(tcfg)))) {
        st_close(f);
        return -1;
    }
    /* Name mapping needs two facts the keys also tell: resnets per level and VAE levels. */
    int L = json_int_field(m->unet_config, "layers_per_block", -1);
    const char *uprefix = controlnet ? LDM_PREFIX_CONTROL : LDM_PREFIX_UNET;
    if (L < 0) {
        char key[256];
        for (int n = 1; n < 16 && L < 0; n++) {
            snprintf(key, sizeof key, "%sinput_blocks.%d.0.op.weight", uprefix, n);
            if (st_find(f, key)) L = n - 1;
        }
        if (L < 0) L = 2;
    }
    int vae_levels = json_array_len(m->vae_config, "block_out_channels", -1);
    if (vae_levels < 0) {
        vae_levels = 0;
        char key[256];
        for (int n = 0; n < 8; n++) {
            snprintf(key, sizeof key, "%sdecoder.up.%d.block.0.conv1.weight", LDM_PREFIX_VAE, n);
            if (st_find(f, key)) vae_levels = n + 1;
        }
    }
    char lbl[4200];
    ws_source *u = NULL, *v = NULL, *t = NULL;
    snprintf(lbl, sizeof lbl, "%s:%s", path, controlnet ? "controlnet" : "unet");
    u = ws_new(lbl);
    snprintf(lbl, sizeof lbl, "%s:vae", path);
    v = ws_new(lbl);
    snprintf(lbl, sizeof lbl, "%s:text_encoder", path);
    t = ws_new(lbl);
    if (!u || !v || !t) goto fail;
    u->file = f;
    u->own_file = 1; /* the UNet source owns the file; the others borrow it */
    v->file = t->file = f;
    char name[512];
    size_t lu = strlen(uprefix), lv = strlen(LDM_PREFIX_VAE), lt = strlen(LDM_PREFIX_TEXT);
    for (int k = 0; k < st_count(f); k++) {
        const st_tensor *te = st_at(f, k);
        const char *key = te->name;
        int used = 0;
        if (strncmp(key, uprefix, lu) == 0 && ldm_unet_name(name, sizeof name, key + lu, L, controlnet))
            used = !ws_add(u, name, te) ? 1 : -1;
        else if (!controlnet && strncmp(key, LDM_PREFIX_VAE, lv) == 0 && ldm_vae_name(name, sizeof name, key + lv, vae_levels))
            used = !ws_add(v, name, te) ? 1 : -1;
        else if (!controlnet && strncmp(key, LDM_PREFIX_TEXT, lt) == 0 && !strstr(key, "position_ids") &&
                 ldm_text_name(name, sizeof name, key + lt))
            used = !ws_add(t, name, te) ? 1 : -1;
        if (used < 0) goto fail;
        if (!used) m->n_ignored_keys++;
    }
    ws_sort(u);
    ws_sort(v);
    ws_sort(t);
    if (u->n == 0 && v->n == 0 && t->n == 0) {
        ocd_fail("%s: no %s keys found: not an SD 1.x %s checkpoint", path,
                 controlnet ? "control_model.*" : "model.diffusion_model.* / first_stage_model.* / cond_stage_model.*",
                 controlnet ? "ControlNet" : "single-file");
        goto fail;
    }
    m->unet = u;
    if (v->n) m->vae = v; else ws_free(v);
    if (t->n) m->text = t; else ws_free(t);
    return 0;
fail:
    if (u) ws_free(u); else st_close(f);
    ws_free(v);
    ws_free(t);
    return -1;
}

static int model_open_any(model_files *m, const char *path, int controlnet) {
    memset(m, 0, sizeof *m);
    if (!(m->path = strdup_or_fail(path))) return -1;
    int rc;
    if (ocd_is_dir(path)) {
        m->kind = MODEL_DIFFUSERS;
        if (controlnet) {
            static const char *const files[] = {"diffusion_pytorch_model.safetensors",
                                                "diffusion_pytorch_model.fp16.safetensors",
                                                "diffusion_pytorch_model.bin", NULL};
            rc = open_component(m, path, ".", files, &m->unet, &m->unet_config);
            if (!rc && !m->unet) rc = ocd_fail("%s: no diffusion_pytorch_model.safetensors: not a ControlNet folder", path);
        } else rc = open_folder(m, path);
    } else if (!ocd_file_exists(path)) {
        rc = ocd_fail("%s: no such file or folder", path);
    } else if (has_suffix_ci(path, ".ckpt") || has_suffix_ci(path, ".bin") || has_suffix_ci(path, ".pt") ||
               has_suffix_ci(path, ".pth")) {
        rc = refuse_pickle(path);
    } else {
        m->kind = MODEL_LDM_FILE;
        rc = open_single_file(m, path, controlnet);
    }
    if (rc) model_files_close(m);
    return rc;
}

int model_files_open(model_files *m, const char *path) { return model_open_any(m, path, 0); }
int controlnet_files_open(model_files *m, const char *path) { return model_open_any(m, path, 1); }

/* Configs of the random presets: SD 1.5's published ones, and the fixtures' tiny model. */
static const char k_sd15_unet[] =
    "{\"block_out_channels\":[320,640,1280,1280],\"layers_per_block\":2,\"attention_head_dim\":8,"
    "\"cross_attention_dim\":768,\"norm_num_groups\":32,\"norm_eps\":1e-5,\"in_channels\":4,\"out_channels\":4,"
    "\"down_block_types\":[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"DownBlock2D\"],"
    "\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\"],"
    "\"flip_sin_to_cos\":true,\"freq_shift\":0,\"sample_size\":64}";
static const char k_sd15_vae[] =
    "{\"block_out_channels\":[128,256,512,512],\"layers_per_block\":2,\"latent_channels\":4,\"norm_num_groups\":32,"
    "\"in_channels\":3,\"out_channels\":3,\"scaling_factor\":0.18215}";
static const char k_sd15_text[] =
    "{\"hidden_size\":768,\"intermediate_size\":3072,\"num_attention_heads\":12,\"num_hidden_layers\":12,"
    "\"max_position_embeddings\":77,\"vocab_size\":49408,\"hidden_act\":\"quick_gelu\",\"layer_norm_eps\":1e-5}";
static const char k_tiny_unet[] =
    "{\"block_out_channels\":[16,32,32,32],\"layers_per_block\":2,\"attention_head_dim\":8,"
    "\"cross_attention_dim\":32,\"norm_num_groups\":8,\"norm_eps\":1e-5,\"in_channels\":4,\"out_channels\":4,"
    "\"down_block_types\":[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"DownBlock2D\"],"
    "\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\"],"
    "\"flip_sin_to_cos\":true,\"freq_shift\":0,\"sample_size\":8}";
static const char k_tiny_vae[] =
    "{\"block_out_channels\":[8,16,32,32],\"layers_per_block\":2,\"latent_channels\":4,\"norm_num_groups\":4,"
    "\"in_channels\":3,\"out_channels\":3,\"scaling_factor\":0.18215}";
static const char k_tiny_text[] =
    "{\"hidden_size\":32,\"intermediate_size\":128,\"num_attention_heads\":4,\"num_hidden_layers\":3,"
    "\"max_position_embeddings\":77,\"vocab_size\":49408,\"hidden_act\":\"quick_gelu\",\"layer_norm_eps\":1e-5}";

int model_files_random(model_files *m, const char *preset, uint64_t seed) {
    memset(m, 0, sizeof *m);
    int sd15 = strcmp(preset, "sd15") == 0;
    if (!sd15 && strcmp(preset, "tiny") != 0) return ocd_fail("unknown --random preset \"%s\" (sd15 or tiny)", preset);
    m->kind = MODEL_RANDOM;
    char lbl[64];
    snprintf(lbl, sizeof lbl, "random-%s", preset);
    if (!(m->path = strdup_or_fail(lbl)) || !(m->unet = ws_random(seed, "random:unet")) ||
        !(m->vae = ws_random(seed + 1, "random:vae")) || !(m->text = ws_random(seed + 2, "random:text_encoder")) ||
        !(m->unet_config = strdup_or_fail(sd15 ? k_sd15_unet : k_tiny_unet)) ||
        !(m->vae_config = strdup_or_fail(sd15 ? k_sd15_vae : k_tiny_vae)) ||
        !(m->text_config = strdup_or_fail(sd15 ? k_sd15_text : k_tiny_text))) {
        model_files_close(m);
        return -1;
    }
    return 0;
}

void model_files_close(model_files *m) {
    /* The VAE/text sources of a single file borrow the UNet source's file: free them first. */
    ws_free(m->vae);
    ws_free(m->text);
    ws_free(m->unet);
    free(m->unet_config);
    free(m->vae_config);
    free(m->text_config);
    free(m->scheduler_config);
    free(m->vocab_path);
    free(m->merges_path);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* ocd probe KIND: runs one network (or sampler case) on the inputs of a golden-format
 * file and writes the outputs under the golden's names, so that any golden is checked
 * with one command and ../shared/tools/compare.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/probe_pipeline.h"
#include "app/probe_control.h"
#include "app/probe_fatezero.h"
#include "app/probe_sched.h"
#include "app/probe_tome.h"
#include "base/error.h"
#include "io/safetensors.h"

static const opt_spec k_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--in", 1, "input file (golden format)"},
    {"--out", 1, "output .safetensors"},
    {"--threads", 1, "threads (default: all cores)"},
    {"--controlnet", 1, "ControlNet folder or .safetensors (controlnet, controlvideo)"},
    {"--staged", 0, "fatezero: start each stage from the golden's own values"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

static float *input_f32(st_file *in, const char *name, int min_dims, const st_tensor **t_out) {
    const st_tensor *t = st_find(in, name);
    if (!t) { ocd_fail("%s: input tensor \"%s\" missing", st_path(in), name); return NULL; }
    if (t->ndim < min_dims) { ocd_fail("%s: \"%s\" has %d dims, expected %d", st_path(in), name, t->ndim, min_dims); return NULL; }
    *t_out = t;
    return st_to_f32(t);
}

static int probe_tokenize(sd_model *m, st_file *in, st_writer *w) {
    const st_tensor *u = st_find(in, "prompt_utf8"), *o = st_find(in, "prompt_offsets");
    if (!u || !o || o->ndim != 1 || o->numel < 2) return ocd_fail("tokenize needs prompt_utf8 and prompt_offsets [n+1]");
    int n = (int)o->numel - 1, rc = -1;
    int32_t *off = malloc(sizeof(int32_t) * o->numel), *ids = malloc(sizeof(int32_t) * n * 77);
    int32_t *len = malloc(sizeof(int32_t) * n), *nbpe = malloc(sizeof(int32_t) * n);
    int32_t *bpe = NULL;
    size_t nb = 0, cap = 0;
    if (!off || !ids || !len || !nbpe || st_read_i32(o, off)) goto done;
    for (int i = 0; i < n; i++) {
        if (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > u->numel) { ocd_fail("prompt_offsets out of range"); goto done; }
        int L = off[i + 1] - off[i];
        char *s = malloc(L + 1);
        if (!s) { ocd_fail("out of memory"); goto done; }
        memcpy(s, (const char *)u->data + off[i], L);
        s[L] = 0;
        int k = 0;
        if (cap - nb < 4096) {
            cap = cap * 2 + 8192;
            int32_t *nbp = realloc(bpe, cap * sizeof *bpe);
            if (!nbp) { free(s); ocd_fail("out of memory"); goto done; }
            bpe = nbp;
        }
        int ok = !tokenizer_encode(m->tok, s, ids + i * 77, &len[i]) &&
                 !tokenizer_bpe(m->tok, s, bpe + nb, (int)(cap - nb), &k);
        free(s);
        if (!ok) { ocd_fail_context("prompt %d", i); goto done; }
        nbpe[i] = k;
        nb += k;
    }
    rc = st_writer_add(w, "ids", ST_I32, 2, (int64_t[]){n, 77}, ids) ||
         st_writer_add(w, "length", ST_I32, 1, (int64_t[]){n}, len) ||
         st_writer_add(w, "n_bpe", ST_I32, 1, (int64_t[]){n}, nbpe) ||
         st_writer_add(w, "bpe_ids", ST_I32, 1, (int64_t[]){(int64_t)nb}, bpe) ? -1 : 0;
done:
    free(off); free(ids); free(len); free(nbpe); free(bpe);
    return rc;
}

static int probe_text(sd_model *m, st_file *in, st_writer *w) {
    if (!m->text) return ocd_fail("the model has no text encoder");
    const st_tensor *t = st_find(in, "ids");
    if (!t || t->ndim != 2 || t->shape[1] != m->clip_cfg.n_pos) return ocd_fail("text needs ids [n, %d]", m->clip_cfg.n_pos);
    int B = (int)t->shape[0], H = m->clip_cfg.hidden, N = m->clip_cfg.n_pos, rc = -1;
    int32_t *ids = malloc(sizeof(int32_t) * t->numel);
    float *out = malloc(sizeof(float) * B * N * H);
    if (ids && out && !st_read_i32(t, ids) && !clip_encode(m->text, ids, B, out))
        rc = st_writer_add_f32(w, "last_hidden_state", 3, (int64_t[]){B, N, H}, out);
    free(ids);
    free(out);
    return rc;
}

static int probe_unet(sd_model *m, st_file *in, st_writer *w) {
    if (!m->unet) return ocd_fail("the model has no UNet");
    const st_tensor *lt, *tt, *ct;
    float *lat = input_f32(in, "latent", 4, &lt), *ts = lat ? input_f32(in, "timestep", 1, &tt) : NULL;
    float *ctx = ts ? input_f32(in, "context", 3, &ct) : NULL, *eps = NULL;
    int rc = -1;
    if (!ctx) goto done;
    int B = (int)lt->shape[0], C = (int)lt->shape[1], H = (int)lt->shape[2], W = (int)lt->shape[3];
    if (C != m->unet_cfg.in_ch || tt->numel != B || ct->shape[0] != B || ct->shape[2] != m->unet_cfg.cross_dim) {
        ocd_fail("unet inputs disagree: latent [%d,%d,..], %lld timesteps, context [%lld,..,%lld]; the model wants %d channels, "
                 "cross dim %d", B, C, (long long)tt->numel, (long long)ct->shape[0], (long long)ct->shape[2],
                 m->unet_cfg.in_ch, m->unet_cfg.cross_dim);
        goto done;
    }
    if (!(eps = malloc(sizeof(float) * B * m->unet_cfg.out_ch * H * W))) { ocd_fail("out of memory"); goto done; }
    if (unet_forward(m->unet, lat, ts, ctx, (int)ct->shape[1], B, H, W, NULL, eps)) goto done;
    rc = st_writer_add_f32(w, "eps", 4, (int64_t[]){B, m->unet_cfg.out_ch, H, W}, eps);
done:
    free(lat); free(ts); free(ctx); free(eps);
    return rc;
}

static int probe_vae(sd_model *m, st_file *in, st_writer *w, int encode) {
    if (!m->vae) return ocd_fail("the model has no VAE");
    const st_tensor *t;
    float *x = input_f32(in, encode ? "image" : "z", 4, &t), *o1 = NULL, *o2 = NULL;
    if (!x) return -1;
    int rc = -1, B = (int)t->shape[0], C = (int)t->shape[1], H = (int)t->shape[2], W = (int)t->shape[3];
    const vae_config *c = &m->vae_cfg;
    int f = 1 << (c->n_levels - 1);
    if (encode) {
        if (C != c->in_channels || H % f || W % f) {
            ocd_fail("vae-encode needs image [B, %d, H, W] with H, W multiples of %d", c->in_channels, f);
            goto done;
        }
        size_t n = (size_t)c->latent_channels * (H / f) * (W / f);
        if (!(o1 = malloc(sizeof(float) * B * n)) || !(o2 = malloc(sizeof(float) * B * n))) { ocd_fail("out of memory"); goto done; }
        for (int b = 0; b < B; b++)
            if (vae_encode(m->vae, x + (size_t)b * C * H * W, H, W, o1 + b * n, o2 + b * n)) goto done;
        int64_t sh[4] = {B, c->latent_channels, H / f, W / f};
        rc = st_writer_add_f32(w, "mean", 4, sh, o1) || st_writer_add_f32(w, "logvar", 4, sh, o2) ? -1 : 0;
    } else {
        if (C != c->latent_channels) { ocd_fail("vae-decode needs z [B, %d, h, w]", c->latent_channels); goto done; }
        size_t n = (size_t)c->out_channels * H * f * W * f;
        if (!(o1 = malloc(sizeof(float) * B * n))) { ocd_fail("out of memory"); goto done; }
        for (int b = 0; b < B; b++)
            if (vae_decode(m->vae, x + (size_t)b * C * H * W, H, W, o1 + b * n)) goto done;
        rc = st_writer_add_f32(w, "image", 4, (int64_t[]){B, c->out_channels, H * f, W * f}, o1);
    }
done:
    free(x); free(o1); free(o2);
    return rc;
}

int cmd_probe(int argc, char **argv) {
    args a;
    if (args_parse(&a, k_opts, argc, argv)) return -1;
    if (args_has(&a, "--help") || a.n_pos != 1) {
        args_usage(k_opts, "ocd probe KIND --model M --in IN.safetensors --out OUT.safetensors\n"
                           "  KIND: tokenize text unet vae-encode vae-decode sched_tables sched_ddim_step\n"
                           "        sched_ddim_trajectory sched_dpmpp_2m pipeline_txt2img pipeline_ddim_inversion fatezero\n"
                           "        canny controlnet controlvideo (the last two with --controlnet CN)");
        return args_has(&a, "--help") ? 0 : ocd_fail("probe needs exactly one KIND");
    }
    const char *kind = a.pos[0], *inp = args_str(&a, "--in", NULL), *outp = args_str(&a, "--out", NULL);
    if (!inp || !outp) return ocd_fail("probe needs --in and --out");
    if (app_set_threads(&a)) return -1;
    if (probe_sched_handles(kind)) return probe_sched(kind, inp, outp);
    if (!strcmp(kind, "tome")) return probe_tome(inp, outp);
    if (!strcmp(kind, "fatezero")) return probe_fatezero(&a, inp, outp, args_has(&a, "--staged"));
    if (probe_pipeline_handles(kind)) return probe_pipeline(kind, &a, inp, outp);
    if (probe_control_handles(kind)) return probe_control(kind, &a, inp, outp);
    static const char *const kinds[] = {"tokenize", "text", "unet", "vae-encode", "vae-decode"};
    int k = -1;
    for (int i = 0; i < 5; i++) if (strcmp(kind, kinds[i]) == 0) k = i;
    if (k < 0) return ocd_fail("unknown probe kind \"%s\"", kind);
    st_file *in = st_open(inp);
    if (!in) return -1;
    sd_model m;
    int rc = -1;
    st_writer *w = NULL;
    if (k == 0 && !args_has(&a, "--model") && !args_has(&a, "--random")) {
        memset(&m, 0, sizeof m);
        if (!(m.tok = tokenizer_new_builtin())) goto out;
    } else if (app_load_model(&a, &m)) goto out;
    if (!(w = st_writer_new())) goto out_model;
    switch (k) {
    case 0: rc = probe_tokenize(&m, in, w); break;
    case 1: rc = probe_text(&m, in, w); break;
    case 2: rc = probe_unet(&m, in, w); break;
    default: rc = probe_vae(&m, in, w, k == 3); break;
    }
    if (!rc) rc = st_writer_save(w, outp);
    st_writer_free(w);
out_model:
    sd_model_free(&m);
out:
    st_close(in);
    return rc;
}

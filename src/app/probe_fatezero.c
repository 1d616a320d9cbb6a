/* FateZero golden probe (see probe_fatezero.h). */
#include "app/probe_fatezero.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "base/error.h"
#include "edit/fatezero.h"
#include "edit/p2p.h"
#include "diffusion/schedule.h"
#include "io/safetensors.h"

/* A prompt from a U8 tensor (malloc'd, NUL-terminated). */
static char *input_text(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_U8 || t->ndim != 1) { ocd_fail("input '%s' (U8 [n]) missing", name); return NULL; }
    char *s = ocd_malloc((size_t)t->numel + 1);
    if (!s) return NULL;
    memcpy(s, t->data, (size_t)t->numel);
    s[t->numel] = 0;
    return s;
}

static float *golden_tensor(const st_file *f, const char *name, size_t n) {
    const st_tensor *t = st_find(f, name);
    if (!t || (size_t)t->numel != n) { ocd_fail("golden tensor '%s' missing or of the wrong size", name); return NULL; }
    return st_to_f32(t);
}

int probe_fatezero(const args *a, const char *in_path, const char *out_path, int staged) {
    st_file *in = st_open(in_path);
    if (!in) return -1;
    sd_model m;
    memset(&m, 0, sizeof m);
    int rc = -1, loaded = 0;
    json_t *spec = NULL;
    st_writer *w = NULL;
    fz_ctx *c = NULL;
    char *src = NULL, *tgt = NULL, wbuf[1024];
    float *frames = NULL, *z0 = NULL, *traj = NULL, *zT = NULL, *etraj = NULL, *zr = NULL, *img = NULL, *g = NULL;
    float *mask = NULL, *emb = NULL;
    const char *meta = st_metadata(in, "spec");
    json_error_t err;
    if (!meta || !(spec = json_loads(meta, 0, &err))) { ocd_fail("%s: no readable __metadata__.spec", in_path); goto done; }
    const json_t *params = json_object_get(spec, "params");
    const st_tensor *fu = st_find(in, "frames_u8");
    if (!fu || fu->dtype != ST_U8 || fu->ndim != 4 || fu->shape[3] != 3) { ocd_fail("frames_u8 [F, H, W, 3] U8 missing"); goto done; }
    const int F = (int)fu->shape[0], H = (int)fu->shape[1], W = (int)fu->shape[2];
    if (!(src = input_text(in, "source_prompt_utf8")) || !(tgt = input_text(in, "target_prompt_utf8"))) goto done;
    fz_params p;
    fz_default_params(&p);
    p.least_sc_channel = 0;
    if (fz_params_from_json(&p, params, wbuf, sizeof wbuf)) goto done;
    p.source = src, p.target = tgt;
    p.store_dtype = AS_F32; /* parity run: keep the source attention exact */
    if (app_load_model(a, &m)) goto done;
    loaded = 1;
    if (!(c = fz_new(&m, &p, F, H, W))) goto done;
    const int N = p.steps, h = H / 8, wl = W / 8, hid = m.clip_cfg.hidden;
    const size_t lat = (size_t)4 * h * wl, n = (size_t)F * lat, img_n = (size_t)F * 3 * H * W;
    frames = malloc(sizeof(float) * img_n);
    z0 = malloc(sizeof(float) * n), zT = malloc(sizeof(float) * n), zr = malloc(sizeof(float) * n);
    traj = malloc(sizeof(float) * (N + 1) * n), etraj = malloc(sizeof(float) * N * n);
    img = malloc(sizeof(float) * img_n), emb = malloc(sizeof(float) * 77 * hid);
    mask = malloc(sizeof(float) * F * h * wl);
    if (!frames || !z0 || !zT || !zr || !traj || !etraj || !img || !emb || !mask || !(w = st_writer_new())) { ocd_fail("out of memory"); goto done; }
    const uint8_t *u8 = fu->data;
    for (int f = 0; f < F; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int ch = 0; ch < 3; ch++)
                    frames[(((size_t)f * 3 + ch) * H + y) * W + x] = u8[(((size_t)f * H + y) * W + x) * 3 + ch] / 255.0f * 2.0f - 1.0f;
    /* text */
    const char *names[3] = {"text_emb_uncond", "text_emb_source", "text_emb_target"};
    const char *prompts[3] = {"", src, tgt};
    for (int i = 0; i < 3; i++)
        if (fz_text_embedding(c, prompts[i], emb) || st_writer_add_f32(w, names[i], 3, (int64_t[]){1, 77, hid}, emb)) goto done;
    int32_t ts[OCD_MAX_STEPS];
    const int *t = fz_timesteps(c);
    for (int i = 0; i < N; i++) ts[i] = t[N - 1 - i];
    if (st_writer_add(w, "inversion_timesteps", ST_I32, 1, (int64_t[]){N}, ts)) goto done;
    for (int i = 0; i < N; i++) ts[i] = t[i];
    if (st_writer_add(w, "edit_timesteps", ST_I32, 1, (int64_t[]){N}, ts)) goto done;
    /* encode + invert */
    const int64_t lsh[4] = {F, 4, h, wl};
    if (fz_encode(c, frames, z0) || st_writer_add_f32(w, "z0", 4, lsh, z0)) goto done;
    if (staged) { free(g); if (!(g = golden_tensor(in, "z0", n))) goto done; memcpy(z0, g, sizeof(float) * n); }
    if (fz_invert(c, z0, traj, zT) ||
        st_writer_add_f32(w, "inversion_trajectory", 5, (int64_t[]){N + 1, F, 4, h, wl}, traj) ||
        st_writer_add_f32(w, "inverted_latent", 4, lsh, zT))
        goto done;
    if (staged) { free(g); if (!(g = golden_tensor(in, "inverted_latent", n))) goto done; memcpy(zT, g, sizeof(float) * n); }
    /* controller tables */
    const p2p_tables *tb = fz_tables(c, tgt);
    if (!tb) goto done;
    float alpha[(P2P_MAX_STEPS + 1) * P2P_T];
    for (int r = 0; r <= N; r++) memcpy(alpha + r * P2P_T, tb->cross_alpha[r], sizeof(float) * P2P_T);
    if (st_writer_add_f32(w, "ctrl_cross_replace_alpha", 2, (int64_t[]){N + 1, 77}, alpha) ||
        st_writer_add(w, "ctrl_refine_mapper", ST_I32, 1, (int64_t[]){77}, tb->mapper) ||
        st_writer_add_f32(w, "ctrl_refine_alphas", 1, (int64_t[]){77}, tb->refine_alphas) ||
        st_writer_add_f32(w, "ctrl_equalizer", 1, (int64_t[]){77}, tb->equalizer) ||
        st_writer_add_f32(w, "ctrl_blend_word_alpha", 2, (int64_t[]){2, 77}, &tb->blend_alpha[0][0]))
        goto done;
    /* blend masks of the self-replacement steps at each hooked grid (20x20, 10x10, 5x5 here) */
    if (tb->has_blend && tb->self_hi > tb->self_lo) {
        const int S = tb->self_hi - tb->self_lo;
        int gh = h, gw = wl;
        for (int lvl = 0; lvl < unet_get_config(m.unet)->n_levels - 1; lvl++) {
            gh = (gh - 1) / 2 + 1, gw = (gw - 1) / 2 + 1; /* the UNet's levels below the latent */
            float *all = malloc(sizeof(float) * S * F * gh * gw);
            if (!all) { ocd_fail("out of memory"); goto done; }
            int bad = 0;
            for (int s = 0; s < S && !bad; s++) bad = fz_blend_mask(c, tb->self_lo + s, gh, gw, all + (size_t)s * F * gh * gw);
            char nm[64];
            snprintf(nm, sizeof nm, "blend_mask_%dx%d", gh, gw);
            if (bad || st_writer_add_f32(w, nm, 4, (int64_t[]){S, F, gh, gw}, all)) { free(all); goto done; }
            free(all);
        }
    }
    /* edit, reconstruction */
    if (fz_edit_latents(c, tgt, zT, etraj, zr) ||
        st_writer_add_f32(w, "edit_trajectory", 5, (int64_t[]){N, F, 4, h, wl}, etraj) ||
        st_writer_add_f32(w, "edited_latents", 4, lsh, zr))
        goto done;
    if (staged) { free(g); if (!(g = golden_tensor(in, "edited_latents", n))) goto done; memcpy(zr, g, sizeof(float) * n); }
    if (fz_decode(c, zr, img)) goto done;
    for (size_t i = 0; i < img_n; i++) {
        float v = img[i] / 2.0f + 0.5f;
        img[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    if (st_writer_add_f32(w, "edited_frames", 4, (int64_t[]){F, 3, H, W}, img)) goto done;
    if (fz_edit_latents(c, src, zT, NULL, zr) || st_writer_add_f32(w, "recon_latents", 4, lsh, zr)) goto done;
    const fz_report *r = fz_get_report(c);
    fprintf(stderr, "fatezero probe%s: encode %.2fs invert %.2fs edit %.2fs decode %.2fs, %d UNet calls; store %zu B RAM + %zu B disk (%zu entries, %zu as Q/K)\n",
            staged ? " (staged)" : "", r->t_encode, r->t_invert, r->t_edit, r->t_decode, r->unet_calls, r->store_ram_bytes,
            r->store_disk_bytes, r->store_entries, r->store_recompute_entries);
    rc = st_writer_save(w, out_path);
done:
    st_writer_free(w);
    fz_free(c);
    if (loaded) sd_model_free(&m);
    json_decref(spec);
    st_close(in);
    free(src); free(tgt); free(frames); free(z0); free(traj); free(zT); free(etraj); free(zr); free(img); free(g);
    free(mask); free(emb);
    return rc;
}

#include "nn/sd_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/kernels.h"

/* VAE configuration from tensor shapes, for single files without a config. GroupNorm
 * groups, eps and the scaling factor cannot be read from shapes: SD 1.x values. */
static int vae_config_infer(vae_config *c, ws_source *ws) {
    int64_t s[8];
    char name[160];
    vae_config_sd15(c);
    int n = 0;
    for (; n < 8; n++) {
        snprintf(name, sizeof name, "encoder.down_blocks.%d.resnets.0.conv1.weight", n);
        if (ws_shape(ws, name, s) != 4) break;
        c->block_out[n] = (int)s[0];
    }
    if (!n) return ocd_fail("%s: cannot infer the VAE: no encoder.down_blocks", ws_label(ws));
    c->n_levels = n;
    for (c->layers_per_block = 0; c->layers_per_block < 8; c->layers_per_block++) {
        snprintf(name, sizeof name, "encoder.down_blocks.0.resnets.%d.conv1.weight", c->layers_per_block);
        if (!ws_has(ws, name)) break;
    }
    if (ws_shape(ws, "post_quant_conv.weight", s) >= 2) c->latent_channels = (int)s[0];
    if (ws_shape(ws, "encoder.conv_in.weight", s) == 4) c->in_channels = (int)s[1];
    if (ws_shape(ws, "decoder.conv_out.weight", s) == 4) c->out_channels = (int)s[0];
    return 0;
}

int sd_model_load(sd_model *m, const char *path, uint64_t seed) {
    memset(m, 0, sizeof *m);
    int rc = strncmp(path, "random:", 7) == 0 ? model_files_random(&m->files, path + 7, seed)
                                              : model_files_open(&m->files, path);
    if (rc) return -1;
    model_files *f = &m->files;
    const char *src = f->kind == MODEL_RANDOM ? "preset" : f->kind == MODEL_DIFFUSERS ? "config.json" : "file metadata";
    m->tok = f->vocab_path ? tokenizer_load(f->vocab_path, f->merges_path) : tokenizer_new_builtin();
    if (!m->tok) goto fail;
    if (f->text) {
        m->config_source[0] = f->text_config ? src : "inferred from shapes";
        if ((f->text_config ? clip_config_from_json(&m->clip_cfg, f->text_config) : clip_config_infer(&m->clip_cfg, f->text)) ||
            !(m->text = clip_new(&m->clip_cfg, f->text)))
            goto fail;
    }
    if (f->unet) {
        m->config_source[1] = f->unet_config ? src : "inferred from shapes";
        if ((f->unet_config ? unet_config_from_json(&m->unet_cfg, f->unet_config) : unet_config_infer(&m->unet_cfg, f->unet)) ||
            !(m->unet = unet_new(&m->unet_cfg, f->unet)))
            goto fail;
    }
    if (f->vae) {
        m->config_source[2] = f->vae_config ? src : "inferred from shapes";
        if ((f->vae_config ? vae_config_from_json(&m->vae_cfg, f->vae_config) : vae_config_infer(&m->vae_cfg, f->vae)) ||
            !(m->vae = vae_new(&m->vae_cfg, f->vae)))
            goto fail;
    }
    return 0;
fail:
    ocd_fail_context("loading %s", path);
    sd_model_free(m);
    return -1;
}

void sd_model_free(sd_model *m) {
    clip_free(m->text);
    unet_free(m->unet);
    vae_free(m->vae);
    tokenizer_free(m->tok);
    model_files_close(&m->files);
    memset(m, 0, sizeof *m);
}

int sd_model_encode_prompt(sd_model *m, const char *prompt, float *emb) {
    if (!m->text) return ocd_fail("this model has no text encoder");
    int32_t ids[TOKENIZER_CONTEXT];
    int len;
    if (tokenizer_encode(m->tok, prompt, ids, &len)) return -1;
    return clip_encode(m->text, ids, 1, emb);
}

int64_t sd_model_params(const sd_model *m) {
    int64_t n = 0;
    if (m->files.unet) n += ws_params_loaded(m->files.unet);
    if (m->files.vae) n += ws_params_loaded(m->files.vae);
    if (m->files.text) n += ws_params_loaded(m->files.text);
    return n;
}

int sd_precision_wants_bf16(const char *precision) {
    const char *p = precision ? precision : "auto";
    if (strcmp(p, "auto") && strcmp(p, "fp32") && strcmp(p, "bf16"))
        return ocd_fail("precision \"%s\" is not auto, fp32 or bf16", p);
    return !strcmp(p, "bf16") || (!strcmp(p, "auto") && k_bf16_available());
}

int sd_model_set_precision(sd_model *m, const char *precision) {
    const int bf = sd_precision_wants_bf16(precision);
    if (bf < 0) return -1;
    if ((m->unet && unet_set_precision(m->unet, bf)) || (m->vae && vae_set_precision(m->vae, bf))) return -1;
    return m->unet ? unet_precision_bf16(m->unet) : bf && k_bf16_available();
}

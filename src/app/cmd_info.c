/* ocd info: what a model is, as loaded. */
#include <stdio.h>

#include "app/app.h"
#include "base/error.h"
#include "base/util.h"

static const opt_spec k_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny: random weights with that architecture"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

int cmd_info(int argc, char **argv) {
    args a;
    if (args_parse(&a, k_opts, argc, argv)) return -1;
    if (args_has(&a, "--help")) { args_usage(k_opts, "ocd info MODEL | --model MODEL | --random sd15"); return 0; }
    const char *model_pos = a.n_pos ? a.pos[0] : NULL;
    sd_model m;
    double t0 = ocd_now();
    if (model_pos && !args_has(&a, "--model")) {
        if (sd_model_load(&m, model_pos, 0)) return -1;
    } else if (app_load_model(&a, &m)) return -1;
    double t_load = ocd_now() - t0;
    const model_files *f = &m.files;
    static const char *const kinds[] = {"diffusers folder", "single-file LDM checkpoint", "random weights"};
    printf("model       %s\nkind        %s\n", f->path, kinds[f->kind]);
    if (f->kind != MODEL_RANDOM) {
        printf("tensors     %d in file(s), %d ignored (EMA copies, schedule buffers, position_ids, ...)\n", f->n_keys,
               f->n_ignored_keys);
        printf("dtypes     ");
        for (int d = 0; d < ST_DTYPE_COUNT; d++)
            if (f->dtype_count[d]) printf(" %s x%d", st_dtype_name((st_dtype)d), f->dtype_count[d]);
        printf("\nfile data   %.1f MiB\n", f->file_bytes / 1048576.0);
    }
    printf("tokenizer   %s\n", f->vocab_path ? f->vocab_path : "built-in CLIP BPE (49408 tokens)");
    if (m.text) {
        const clip_config *c = &m.clip_cfg;
        printf("text        CLIP: hidden %d, %d layers, %d heads, mlp %d, %s, %d positions (%s); %.2fM params\n", c->hidden,
               c->layers, c->heads, c->inter, c->quick_gelu ? "quick_gelu" : "gelu", c->n_pos, m.config_source[0],
               ws_params_loaded(f->text) / 1e6);
    }
    if (m.unet) {
        const unet_config *c = &m.unet_cfg;
        printf("unet        channels");
        for (int i = 0; i < c->n_levels; i++) printf(" %d%s", c->block_out[i], c->down_attn[i] ? "+attn" : "");
        printf(", %d resnets/level, heads %d, cross %d, groups %d, eps %g (%s); %.2fM params, %d attention layers\n",
               c->layers_per_block, c->heads[0], c->cross_dim, c->groups, c->eps, m.config_source[1],
               ws_params_loaded(f->unet) / 1e6, unet_n_attn_layers(m.unet));
    }
    if (m.vae) {
        const vae_config *c = &m.vae_cfg;
        printf("vae         channels");
        for (int i = 0; i < c->n_levels; i++) printf(" %d", c->block_out[i]);
        printf(", %d resnets/level, latent %d, groups %d, scaling %g (%s); %.2fM params\n", c->layers_per_block,
               c->latent_channels, c->groups, c->scaling_factor, m.config_source[2], ws_params_loaded(f->vae) / 1e6);
    }
    printf("weights     %.2fM params, %.1f MiB as float32 in memory\n", sd_model_params(&m) / 1e6,
           sd_model_params(&m) * 4.0 / 1048576.0);
    printf("load        %.2f s, peak RSS %.1f MiB\n", t_load, ocd_peak_rss_bytes() / 1048576.0);
    sd_model_free(&m);
    return 0;
}

/* Broken models: missing tensors, wrong shapes, wrong dtypes, absurd configs, pickles,
 * empty folders. Each must fail to load with one clear line naming the problem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/util.h"
#include "io/safetensors.h"
#include "nn/sd_model.h"
#include "testlib.h"

static char g_dir[256];

/* Writes DIR/sub/file as a copy of the tiny model's component with one change:
 * drop = name to leave out; reshape = name stored with a flattened shape; as_int = name stored as I32. */
static void write_component(const char *sub, const char *src_file, const char *drop, const char *reshape,
                            const char *as_int) {
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/%s/%s", TINY_SD, sub, src_file);
    snprintf(dst, sizeof dst, "%s/%s", g_dir, sub);
    mkdir(dst, 0755);
    snprintf(dst, sizeof dst, "%s/%s/%s", g_dir, sub, src_file);
    st_file *f = st_open(src);
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        if (drop && !strcmp(t->name, drop)) continue;
        if (reshape && !strcmp(t->name, reshape)) {
            int64_t n = t->numel;
            st_writer_add(w, t->name, t->dtype, 1, &n, t->data);
        } else if (as_int && !strcmp(t->name, as_int)) {
            st_writer_add(w, t->name, ST_I32, t->ndim, t->shape, t->data);
        } else st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    st_writer_save(w, dst);
    st_writer_free(w);
    st_close(f);
    char cfg_src[512], cfg_dst[512];
    snprintf(cfg_src, sizeof cfg_src, "%s/%s/config.json", TINY_SD, sub);
    snprintf(cfg_dst, sizeof cfg_dst, "%s/%s/config.json", g_dir, sub);
    char *cfg = ocd_read_file(cfg_src, NULL);
    FILE *o = fopen(cfg_dst, "w");
    fputs(cfg, o);
    fclose(o);
    free(cfg);
}

static void write_text(const char *rel, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    FILE *o = fopen(p, "w");
    fputs(text, o);
    fclose(o);
}

static void reset_dir(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    if (system(cmd)) fprintf(stderr, "cannot reset %s\n", g_dir);
}

static void expect_load_error(const char *label, const char *path, const char *needle) {
    sd_model m;
    ocd_clear_error();
    int rc = sd_model_load(&m, path, 0);
    if (!rc) { sd_model_free(&m); t_check(0, label, "loaded"); return; }
    const char *msg = ocd_last_error();
    t_check(!strchr(msg, '\n') && (!needle || strstr(msg, needle)), label, "-> %s", msg);
}

#define UNET_FILE "diffusion_pytorch_model.safetensors"

int main(int argc, char **argv) {
    (void)argc;
    snprintf(g_dir, sizeof g_dir, "/tmp/ocd_badmodel_%d", (int)getpid());

    reset_dir();
    write_component("unet", UNET_FILE, "down_blocks.1.attentions.0.proj_in.weight", NULL, NULL);
    expect_load_error("missing UNet tensor", g_dir, "down_blocks.1.attentions.0.proj_in.weight");

    reset_dir();
    write_component("unet", UNET_FILE, NULL, "mid_block.resnets.0.conv1.weight", NULL);
    expect_load_error("wrong UNet tensor shape", g_dir, "has shape");

    reset_dir();
    write_component("unet", UNET_FILE, NULL, NULL, "conv_in.weight");
    expect_load_error("integer weights", g_dir, "dtype I32");

    reset_dir();
    write_component("vae", UNET_FILE, "decoder.conv_out.bias", NULL, NULL);
    expect_load_error("missing VAE tensor", g_dir, "decoder.conv_out.bias");

    reset_dir();
    write_component("text_encoder", "model.safetensors", NULL, "text_model.encoder.layers.1.mlp.fc1.weight", NULL);
    expect_load_error("wrong text tensor shape", g_dir, "layers.1.mlp.fc1.weight");

    reset_dir();
    write_component("unet", UNET_FILE, NULL, NULL, NULL);
    write_text("unet/config.json", "{\"block_out_channels\": \"many\"}");
    expect_load_error("absurd unet config", g_dir, "block_out_channels");

    write_text("unet/config.json", "{\"block_out_channels\": [16, 32, 32, 32], \"norm_num_groups\": 7}");
    expect_load_error("groups not dividing channels", g_dir, "divisible");

    write_text("unet/config.json", "{\"block_out_channels\": [16, 32, 32, 32], \"layers_per_block\": 3, \"norm_num_groups\": 8, \"cross_attention_dim\": 32}");
    expect_load_error("config disagrees with weights", g_dir, "missing tensor");

    write_text("unet/config.json", "{not json");
    expect_load_error("unet config not JSON", g_dir, "JSON");

    reset_dir();
    write_component("text_encoder", "model.safetensors", NULL, NULL, NULL);
    write_text("text_encoder/config.json", "{\"hidden_size\": 32, \"num_attention_heads\": 5}");
    expect_load_error("text heads not dividing hidden", g_dir, "implausible");

    reset_dir();
    write_component("vae", UNET_FILE, NULL, NULL, NULL);
    write_text("vae/config.json", "[1,2,3]");
    expect_load_error("vae config is an array", g_dir, "vae config");

    reset_dir();
    expect_load_error("empty folder", g_dir, "not a diffusers model folder");

    char p[512];
    snprintf(p, sizeof p, "%s/model.ckpt", g_dir);
    write_text("model.ckpt", "PK\x03\x04 pickle");
    expect_load_error("pickle checkpoint refused", p, "convert");

    snprintf(p, sizeof p, "%s/other.safetensors", g_dir);
    {
        st_writer *w = st_writer_new();
        float x = 1;
        st_writer_add_f32(w, "some.other.weight", 1, (int64_t[]){1}, &x);
        st_writer_save(w, p);
        st_writer_free(w);
    }
    expect_load_error("safetensors of something else", p, "not an SD 1.x");
    expect_load_error("missing path", "/nonexistent/model", "no such file");
    snprintf(p, sizeof p, "%s/trunc.safetensors", g_dir);
    {
        size_t len;
        char *whole = ocd_read_file(TINY_SD_LDM, &len);
        FILE *o = fopen(p, "wb");
        fwrite(whole, 1, len / 2, o);
        fclose(o);
        free(whole);
    }
    expect_load_error("truncated single file", p, "outside");
    expect_load_error("unknown random preset", "random:sd99", "sd15");

    reset_dir();
    rmdir(g_dir);
    return t_summary(argv[0]);
}

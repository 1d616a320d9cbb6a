/* The one place where checkpoint namings meet: original LDM/CompVis single-file keys
 * (SD 1.4/1.5 .safetensors, ControlNet's control_model.*) are translated to the diffusers
 * names the networks ask for (algorithms.md E.4). Older diffusers spellings of the VAE
 * attention (query/key/value/proj_attn) are translated here too. */
#include "io/ldm_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a non-negative decimal at *s and advances; -1 if none. */
static int read_index(const char **s) {
    if (**s < '0' || **s > '9') return -1;
    int v = 0;
    while (**s >= '0' && **s <= '9') v = v * 10 + (*(*s)++ - '0');
    return v;
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Resnet sub-names, LDM openaimodel -> diffusers. */
static const char *const k_resnet_map[][2] = {
    {"in_layers.0.", "norm1."}, {"in_layers.2.", "conv1."},  {"emb_layers.1.", "time_emb_proj."},
    {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
};

static int map_resnet(char *out, size_t cap, const char *prefix, const char *rest) {
    for (size_t i = 0; i < sizeof k_resnet_map / sizeof k_resnet_map[0]; i++)
        if (starts(rest, k_resnet_map[i][0]))
            return snprintf(out, cap, "%s%s%s", prefix, k_resnet_map[i][1], rest + strlen(k_resnet_map[i][0])) < (int)cap;
    return 0;
}

int ldm_unet_name(char *out, size_t cap, const char *key, int layers_per_block, int controlnet) {
    const int L = layers_per_block;
    char pre[128];
    const char *s = key;
    if (starts(s, "time_embed.0.")) return snprintf(out, cap, "time_embedding.linear_1.%s", s + 13) < (int)cap;
    if (starts(s, "time_embed.2.")) return snprintf(out, cap, "time_embedding.linear_2.%s", s + 13) < (int)cap;
    if (starts(s, "out.0.")) return snprintf(out, cap, "conv_norm_out.%s", s + 6) < (int)cap;
    if (starts(s, "out.2.")) return snprintf(out, cap, "conv_out.%s", s + 6) < (int)cap;
    if (starts(s, "input_blocks.")) {
        s += 13;
        int n = read_index(&s);
        if (n < 0 || *s++ != '.') return 0;
        if (n == 0) return starts(s, "0.") && snprintf(out, cap, "conv_in.%s", s + 2) < (int)cap;
        int i = (n - 1) / (L + 1), j = (n - 1) % (L + 1);
        if (j == L) /* downsampler */
            return starts(s, "0.op.") && snprintf(out, cap, "down_blocks.%d.downsamplers.0.conv.%s", i, s + 5) < (int)cap;
        if (starts(s, "0.")) {
            snprintf(pre, sizeof pre, "down_blocks.%d.resnets.%d.", i, j);
            return map_resnet(out, cap, pre, s + 2);
        }
        if (starts(s, "1.")) return snprintf(out, cap, "down_blocks.%d.attentions.%d.%s", i, j, s + 2) < (int)cap;
        return 0;
    }
    if (starts(s, "middle_block.")) {
        s += 13;
        int n = read_index(&s);
        if (*s++ != '.') return 0;
        if (n == 0 || n == 2) {
            snprintf(pre, sizeof pre, "mid_block.resnets.%d.", n / 2);
            return map_resnet(out, cap, pre, s);
        }
        if (n == 1) return snprintf(out, cap, "mid_block.attentions.0.%s", s) < (int)cap;
        return 0;
    }
    if (!controlnet && starts(s, "output_blocks.")) {
        s += 14;
        int n = read_index(&s);
        if (n < 0 || *s++ != '.') return 0;
        int i = n / (L + 1), j = n % (L + 1);
        int k = read_index(&s);
        if (k < 0 || *s++ != '.') return 0;
        if (k == 0) {
            snprintf(pre, sizeof pre, "up_blocks.%d.resnets.%d.", i, j);
            return map_resnet(out, cap, pre, s);
        }
        /* An upsampler is `.1.conv` in blocks without attention, `.2.conv` otherwise. */
        if (starts(s, "conv.")) return snprintf(out, cap, "up_blocks.%d.upsamplers.0.conv.%s", i, s + 5) < (int)cap;
        if (k == 1) return snprintf(out, cap, "up_blocks.%d.attentions.%d.%s", i, j, s) < (int)cap;
        return 0;
    }
    if (controlnet) {
        if (starts(s, "input_hint_block.")) {
            s += 17;
            int n = read_index(&s);
            if (*s++ != '.') return 0;
            if (n == 0) return snprintf(out, cap, "controlnet_cond_embedding.conv_in.%s", s) < (int)cap;
            if (n == 14) return snprintf(out, cap, "controlnet_cond_embedding.conv_out.%s", s) < (int)cap;
            if (n >= 2 && n <= 12 && n % 2 == 0)
                return snprintf(out, cap, "controlnet_cond_embedding.blocks.%d.%s", n / 2 - 1, s) < (int)cap;
            return 0;
        }
        if (starts(s, "zero_convs.")) {
            s += 11;
            int n = read_index(&s);
            return n >= 0 && starts(s, ".0.") && snprintf(out, cap, "controlnet_down_blocks.%d.%s", n, s + 3) < (int)cap;
        }
        if (starts(s, "middle_block_out.0."))
            return snprintf(out, cap, "controlnet_mid_block.%s", s + 19) < (int)cap;
    }
    return 0;
}

static const char *const k_vae_attn_map[][2] = {
    {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."},
};

int ldm_vae_name(char *out, size_t cap, const char *key, int n_levels) {
    const char *s = key;
    const char *part = starts(s, "encoder.") ? "encoder" : starts(s, "decoder.") ? "decoder" : NULL;
    if (!part) {
        if (starts(s, "quant_conv.") || starts(s, "post_quant_conv.")) return snprintf(out, cap, "%s", s) < (int)cap;
        return 0;
    }
    s += 8;
    char body[256];
    const char *rest;
    if (starts(s, "down.") || starts(s, "up.")) {
        int up = s[0] == 'u';
        s += up ? 3 : 5;
        int i = read_index(&s);
        if (i < 0 || *s++ != '.') return 0;
        int level = up ? n_levels - 1 - i : i;
        if (level < 0) return 0;
        if (starts(s, "block.")) {
            s += 6;
            int j = read_index(&s);
            if (j < 0 || *s++ != '.') return 0;
            snprintf(body, sizeof body, "%s_blocks.%d.resnets.%d.", up ? "up" : "down", level, j);
            rest = s;
        } else if (starts(s, "downsample.conv.") || starts(s, "upsample.conv.")) {
            snprintf(body, sizeof body, "%s_blocks.%d.%s.0.conv.", up ? "up" : "down", level,
                     up ? "upsamplers" : "downsamplers");
            rest = strchr(s, '.') + 6; /* after "<x>sample.conv." */
        } else return 0;
    } else if (starts(s, "mid.block_1.") || starts(s, "mid.block_2.")) {
        snprintf(body, sizeof body, "mid_block.resnets.%d.", s[10] - '1');
        rest = s + 12;
    } else if (starts(s, "mid.attn_1.")) {
        s += 11;
        for (size_t i = 0; i < sizeof k_vae_attn_map / sizeof k_vae_attn_map[0]; i++)
            if (starts(s, k_vae_attn_map[i][0]))
                return snprintf(out, cap, "%s.mid_block.attentions.0.%s%s", part, k_vae_attn_map[i][1],
                                s + strlen(k_vae_attn_map[i][0])) < (int)cap;
        return 0;
    } else if (starts(s, "norm_out.")) {
        snprintf(body, sizeof body, "conv_norm_out.");
        rest = s + 9;
    } else if (starts(s, "conv_in.") || starts(s, "conv_out.")) {
        body[0] = 0;
        rest = s;
    } else return 0;
    if (starts(rest, "nin_shortcut.")) return snprintf(out, cap, "%s.%sconv_shortcut.%s", part, body, rest + 13) < (int)cap;
    return snprintf(out, cap, "%s.%s%s", part, body, rest) < (int)cap;
}

int ldm_text_name(char *out, size_t cap, const char *key) {
    if (starts(key, "text_model.")) return snprintf(out, cap, "%s", key) < (int)cap;
    return snprintf(out, cap, "text_model.%s", key) < (int)cap; /* some old files omit text_model. */
}

int diffusers_legacy_name(char *out, size_t cap, const char *name) {
    static const char *const map[][2] = {
        {".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char *p = strstr(name, map[i][0]);
        if (p && strstr(name, "attentions.")) {
            int n = (int)(p - name);
            return snprintf(out, cap, "%.*s%s%s", n, name, map[i][1], p + strlen(map[i][0])) < (int)cap;
        }
    }
    return 0;
}

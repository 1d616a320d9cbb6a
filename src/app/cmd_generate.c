/* ocd generate / ocd reconstruct: single images.
 *   generate:    prompt -> seeded noise -> DDIM or DPM-Solver++(2M) with CFG -> VAE decode -> PNG/JPEG
 *   reconstruct: image -> VAE encode (posterior mean x scaling) -> DDIM inversion with the prompt
 *                (no CFG) -> DDIM regeneration (--cfg, default 1) -> decode -> file, + PSNR vs the input
 * Every argument is checked before the model is loaded, so bad input fails at once with one
 * line and no output file (images are written atomically at the very end). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/util.h"
#include "diffusion/pipeline.h"
#include "io/image.h"

#define MAX_SIDE 4096   /* pixels; larger is certainly a typo on a CPU */

static const opt_spec k_gen_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--prompt", 1, "text prompt (\"\" allowed)"},
    {"--negative", 1, "negative prompt (default \"\")"},
    {"--sampler", 1, "ddim | dpmpp-2m (default ddim)"},
    {"--steps", 1, "sampling steps, 1..1000 (default 50)"},
    {"--cfg", 1, "guidance scale (default 7.5; 1 = no unconditional pass)"},
    {"--seed", 1, "noise seed (default 0)"},
    {"--size", 1, "WxH in pixels, multiples of 8 (default: the UNet's sample size x 8, else 512x512)"},
    {"--out", 1, "output image (.png, or .jpg/.jpeg)"},
    {"--threads", 1, "threads (default: all cores)"},
    APP_OPT_PRECISION,
    {"--quiet", 0, "no progress line"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

static const opt_spec k_rec_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--image", 1, "input image (PNG or JPEG)"},
    {"--prompt", 1, "prompt describing the image (\"\" allowed)"},
    {"--negative", 1, "negative prompt for --cfg != 1 (default \"\")"},
    {"--steps", 1, "inversion and regeneration steps, 1..1000 (default 50)"},
    {"--cfg", 1, "guidance of the regeneration (default 1: none)"},
    {"--size", 1, "WxH to resize to before the multiple-of-8 centre crop (default: the image's own)"},
    {"--out", 1, "output image (.png, or .jpg/.jpeg)"},
    {"--threads", 1, "threads (default: all cores)"},
    APP_OPT_PRECISION,
    {"--quiet", 0, "no progress line"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

/* "WxH" -> *w, *h in 1..MAX_SIDE; multiple (> 1) = both must divide by it. */
static int parse_size(const char *s, int multiple, int *w, int *h) {
    char *end;
    long a = strtol(s, &end, 10), b;
    if (end == s || (*end != 'x' && *end != 'X')) return ocd_fail("--size \"%s\": expected WxH, e.g. 512x512", s);
    const char *s2 = end + 1;
    b = strtol(s2, &end, 10);
    if (end == s2 || *end) return ocd_fail("--size \"%s\": expected WxH, e.g. 512x512", s);
    if (a < 1 || b < 1 || a > MAX_SIDE || b > MAX_SIDE) return ocd_fail("--size %ldx%ld: sides must be in 1..%d", a, b, MAX_SIDE);
    if (multiple > 1 && (a % multiple || b % multiple))
        return ocd_fail("--size %ldx%ld: width and height must be multiples of %d", a, b, multiple);
    *w = (int)a;
    *h = (int)b;
    return 0;
}

/* The output's folder must exist: checked before any work is done. */
static int check_out(const char *out) {
    if (!out) return ocd_fail("no output: give --out FILE.png");
    const char *slash = strrchr(out, '/');
    if (!slash) return 0;
    char dir[4096];
    size_t n = (size_t)(slash - out);
    if (n == 0) return 0;
    if (n >= sizeof dir) return ocd_fail("--out: path too long");
    memcpy(dir, out, n);
    dir[n] = 0;
    if (!ocd_is_dir(dir)) return ocd_fail("--out %s: folder %s does not exist", out, dir);
    return 0;
}

/* Options both commands share: steps, guidance, prompts, output. */
typedef struct {
    const char *prompt, *negative, *out;
    long steps;
    double cfg;
    int quiet;
} common_opts;

static int parse_common(const args *a, double cfg_default, common_opts *o) {
    o->prompt = args_str(a, "--prompt", NULL);
    o->negative = args_str(a, "--negative", "");
    o->out = args_str(a, "--out", NULL);
    o->quiet = args_has(a, "--quiet");
    if (!o->prompt) return ocd_fail("no prompt: give --prompt TEXT (--prompt \"\" for none)");
    if (args_int(a, "--steps", 50, 1, OCD_MAX_STEPS, &o->steps) || args_double(a, "--cfg", cfg_default, 0, 100, &o->cfg))
        return -1;
    return check_out(o->out);
}

/* The UNet config's sample_size (latent side), 0 when absent. */
static int unet_sample_size(const sd_model *m) {
    if (!m->files.unet_config) return 0;
    json_t *o = json_loads(m->files.unet_config, 0, NULL);
    json_t *v = json_object_get(o, "sample_size");
    int s = json_is_integer(v) ? (int)json_integer_value(v) : 0;
    json_decref(o);
    return s > 0 && s <= MAX_SIDE / 8 ? s : 0;
}

/* Text embeddings [2, 77, D] = [negative, prompt]; the negative only when guidance is used. */
static float *encode_prompts(pipe_ctx *p, const common_opts *o) {
    size_t ne = (size_t)p->m->clip_cfg.n_pos * p->m->clip_cfg.hidden;
    float *emb = malloc(sizeof(float) * 2 * ne);
    if (!emb) { ocd_fail("out of memory"); return NULL; }
    if ((o->cfg != 1 && pipe_encode_prompt(p, o->negative, emb)) || pipe_encode_prompt(p, o->prompt, emb + ne)) {
        free(emb);
        return NULL;
    }
    return emb;
}

/* [3, H, W] in [-1, 1] -> 8-bit file. */
static int write_image(const char *path, const float *img, int W, int H) {
    uint8_t *rgb = malloc((size_t)3 * W * H);
    if (!rgb) return ocd_fail("out of memory");
    image_from_f32(img, W, H, rgb);
    int rc = image_write_rgb(path, rgb, W, H);
    free(rgb);
    return rc;
}

/* t_cmd: when the command started (the total includes loading the model). */
static void summary(const char *what, const pipe_ctx *p, const ocd_progress *pr, double t_cmd) {
    printf("%s: %.2f s total (%.2f s after loading the model), %ld UNet calls, peak RSS %.1f MB\n", what,
           ocd_now() - t_cmd, progress_elapsed(pr), p->unet_calls, ocd_peak_rss_bytes() / 1048576.0);
}

int cmd_generate(int argc, char **argv) {
    double t_cmd = ocd_now();
    args a;
    if (args_parse(&a, k_gen_opts, argc, argv)) return -1;
    if (args_has(&a, "--help")) {
        args_usage(k_gen_opts, "ocd generate --model M --prompt P [--negative N] [--sampler ddim|dpmpp-2m] [--steps S]\n"
                               "       [--cfg G] [--seed X] [--size WxH] --out img.png");
        return 0;
    }
    if (a.n_pos) return ocd_fail("unexpected argument \"%s\" (see --help)", a.pos[0]);
    common_opts o;
    long seed;
    int W = 0, H = 0;
    if (parse_common(&a, 7.5, &o) || args_int(&a, "--seed", 0, 0, 0x7fffffffffffffffL, &seed)) return -1;
    const char *sname = args_str(&a, "--sampler", "ddim");
    ocd_solver solver;
    if (!strcmp(sname, "ddim")) solver = OCD_SOLVER_DDIM;
    else if (!strcmp(sname, "dpmpp-2m") || !strcmp(sname, "dpm++2m")) solver = OCD_SOLVER_DPMPP_2M;
    else return ocd_fail("unknown sampler \"%s\" (ddim or dpmpp-2m)", sname);
    if (args_has(&a, "--size") && parse_size(args_str(&a, "--size", ""), 8, &W, &H)) return -1;
    if (app_set_threads(&a)) return -1;

    sd_model m;
    if (app_load_model(&a, &m)) return -1;
    if (app_set_precision(&a, &m, NULL)) { sd_model_free(&m); return -1; }
    pipe_ctx p;
    ocd_progress pr;
    float *emb = NULL, *lat = NULL, *img = NULL;
    int rc = -1;
    if (pipe_init(&p, &m, NULL)) { sd_model_free(&m); return -1; }
    progress_init(&pr, o.steps, o.quiet);
    p.progress = &pr;
    int f = pipe_vae_factor(&p), C = pipe_latent_channels(&p);
    if (!W) {
        int s = unet_sample_size(&m);
        W = H = s ? s * f : 512;
    }
    if (W % f || H % f) { ocd_fail("--size %dx%d: width and height must be multiples of %d for this VAE", W, H, f); goto done; }
    int h = H / f, w = W / f;
    size_t n = (size_t)C * h * w;
    lat = malloc(sizeof(float) * n);              /* [C, h, w] */
    img = malloc(sizeof(float) * 3 * W * H);      /* [3, H, W] */
    if (!lat || !img) { ocd_fail("out of memory"); goto done; }
    if (!(emb = encode_prompts(&p, &o))) goto done;
    pipe_init_noise((uint64_t)seed, lat, n);
    pipe_loop L = {.solver = solver, .steps = (int)o.steps, .guidance = (float)o.cfg};
    size_t ne = (size_t)m.clip_cfg.n_pos * m.clip_cfg.hidden;
    if (pipe_sample(&p, &L, o.cfg != 1 ? emb : NULL, emb + ne, lat, h, w)) goto done;
    progress_end(&pr);
    if (pipe_vae_decode(&p, lat, h, w, img) || write_image(o.out, img, W, H)) goto done;
    printf("wrote %s (%dx%d, %s %ld steps, cfg %g, seed %ld)\n", o.out, W, H, sname, o.steps, o.cfg, seed);
    summary("generate", &p, &pr, t_cmd);
    rc = 0;
done:
    progress_end(&pr);
    free(emb); free(lat); free(img);
    pipe_free(&p);
    sd_model_free(&m);
    return rc;
}

/* PSNR in dB of two 8-bit buffers (peak 255; 99 when identical). */
static double psnr_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        se += d * d;
    }
    return se == 0 ? 99.0 : 10.0 * log10(255.0 * 255.0 * n / se);
}

int cmd_reconstruct(int argc, char **argv) {
    double t_cmd = ocd_now();
    args a;
    if (args_parse(&a, k_rec_opts, argc, argv)) return -1;
    if (args_has(&a, "--help")) {
        args_usage(k_rec_opts, "ocd reconstruct --model M --image in.png --prompt P [--steps S] [--cfg G] [--size WxH] --out recon.png");
        return 0;
    }
    if (a.n_pos) return ocd_fail("unexpected argument \"%s\" (see --help)", a.pos[0]);
    common_opts o;
    int rw = 0, rh = 0;
    const char *inp = args_str(&a, "--image", NULL);
    if (!inp) return ocd_fail("no input: give --image FILE (PNG or JPEG)");
    if (parse_common(&a, 1.0, &o)) return -1;
    if (args_has(&a, "--size") && parse_size(args_str(&a, "--size", ""), 0, &rw, &rh)) return -1;
    if (app_set_threads(&a)) return -1;
    ocd_image im;
    if (image_read(inp, &im)) return -1;
    float *src = malloc(sizeof(float) * 3 * im.w * im.h);   /* [3, h, w] */
    if (!src) { image_free(&im); return ocd_fail("out of memory"); }
    image_to_f32(im.rgb, im.w, im.h, src);
    if (!rw) { rw = im.w; rh = im.h; }

    sd_model m;
    pipe_ctx p;
    ocd_progress pr;
    float *x = NULL, *emb = NULL, *lat = NULL, *img = NULL;
    uint8_t *ref = NULL, *got = NULL;
    int rc = -1, H = 0, W = 0;
    if (app_load_model(&a, &m)) { free(src); image_free(&im); return -1; }
    if (app_set_precision(&a, &m, NULL)) { free(src); image_free(&im); sd_model_free(&m); return -1; }
    if (pipe_init(&p, &m, NULL)) { free(src); image_free(&im); sd_model_free(&m); return -1; }
    progress_init(&pr, 2 * o.steps, o.quiet);
    p.progress = &pr;
    int f = pipe_vae_factor(&p), C = pipe_latent_channels(&p);
    /* resize to the wanted size, centre-crop to the VAE's multiple (the UNet takes any latent size) */
    if (!(x = resize_crop_multiple(src, 3, im.h, im.w, rw, rh, f, &H, &W))) goto done;
    int h = H / f, w = W / f;
    size_t n = (size_t)C * h * w;
    lat = malloc(sizeof(float) * n);              /* [C, h, w] */
    img = malloc(sizeof(float) * 3 * W * H);      /* [3, H, W] */
    ref = malloc((size_t)3 * W * H);              /* [H, W, 3] the input as 8 bits */
    got = malloc((size_t)3 * W * H);              /* [H, W, 3] the result */
    if (!lat || !img || !ref || !got) { ocd_fail("out of memory"); goto done; }
    if (!(emb = encode_prompts(&p, &o))) goto done;
    size_t ne = (size_t)m.clip_cfg.n_pos * m.clip_cfg.hidden;
    if (pipe_vae_encode(&p, x, H, W, lat)) goto done;
    pipe_loop inv = {.solver = OCD_SOLVER_DDIM, .steps = (int)o.steps, .guidance = 1.0f};
    pipe_loop gen = {.solver = OCD_SOLVER_DDIM, .steps = (int)o.steps, .guidance = (float)o.cfg};
    if (pipe_invert(&p, &inv, NULL, emb + ne, lat, h, w) ||
        pipe_sample(&p, &gen, o.cfg != 1 ? emb : NULL, emb + ne, lat, h, w))
        goto done;
    progress_end(&pr);
    if (pipe_vae_decode(&p, lat, h, w, img)) goto done;
    image_from_f32(x, W, H, ref);
    image_from_f32(img, W, H, got);
    if (image_write_rgb(o.out, got, W, H)) goto done;
    printf("wrote %s (%dx%d from %dx%d, %ld inversion + %ld regeneration steps, cfg %g)\n", o.out, W, H, im.w, im.h,
           o.steps, o.steps, o.cfg);
    printf("PSNR vs input: %.2f dB\n", psnr_u8(ref, got, (size_t)3 * W * H));
    summary("reconstruct", &p, &pr, t_cmd);
    rc = 0;
done:
    progress_end(&pr);
    free(src); free(x); free(emb); free(lat); free(img); free(ref); free(got);
    image_free(&im);
    pipe_free(&p);
    sd_model_free(&m);
    return rc;
}

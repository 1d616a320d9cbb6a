/* Numerical kernels. They know nothing of models: plain float arrays, explicit sizes.
 *
 * Layout: activations NCHW row-major; "token" tensors [N, C] row-major (C fastest).
 * Linear weights use PyTorch's layout W[out, in]; conv weights W[Co, Ci, kh, kw].
 * Every fast kernel has a plain `_ref` twin kept forever beside it; tests compare them.
 * Threading: kernels parallelise internally with OpenMP (rows/channels split across
 * threads, never changing the order of any reduction, so results do not depend on the
 * thread count). They are reentrant but must not be called from inside an OpenMP
 * parallel region. */
#ifndef OCD_KERNELS_H
#define OCD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- GEMM (row-major), thin wrapper over cblas_sgemm ----
 * C[M,N] = alpha * op(A) op(B) + beta * C, with lda/ldb/ldc the row strides. */
void k_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
            const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void k_gemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- Linear: y[M,N] = x[M,K] W[N,K]^T + b[N] (b may be NULL). y must not alias x. ---- */
void k_linear(float *y, const float *x, const float *w, const float *b, int M, int K, int N);
void k_linear_ref(float *y, const float *x, const float *w, const float *b, int M, int K, int N);

/* ---- 2-D convolution, one image, NCHW ----
 * x[ci, h, w] -> y[co, ho, wo], ho = (h + pad_t + pad_b - kh) / stride + 1 (likewise wo).
 * Zero padding; pad_b/pad_r let the VAE's asymmetric (0,1,0,1) downsample padding be expressed. */
typedef struct {
    int ci, h, w;        /* input */
    int co, kh, kw;      /* weights */
    int stride;
    int pad_t, pad_b, pad_l, pad_r;
} k_conv_shape;
int k_conv_out_h(const k_conv_shape *s);
int k_conv_out_w(const k_conv_shape *s);
/* Scratch (in floats) that k_conv2d needs for this shape; bounded (row bands), never a full
 * im2col of a large image. */
size_t k_conv2d_scratch_floats(const k_conv_shape *s);
void k_conv2d(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s, float *scratch);
void k_conv2d_ref(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s);
/* Convolution of the nearest x2 upsampling of x[ci, h, w] (s->h, s->w: the stored,
 * low-resolution size), without materialising the upsampled [ci, 2h, 2w] plane:
 * y = conv(upsample2(x)). Output size k_conv_up2_out_h/w (2h x 2w for 3x3 pad 1). */
int k_conv_up2_out_h(const k_conv_shape *s);
int k_conv_up2_out_w(const k_conv_shape *s);
size_t k_conv2d_up2_scratch_floats(const k_conv_shape *s);
void k_conv2d_up2(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s, float *scratch);
void k_conv2d_up2_ref(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s);

/* Batched 2-D convolution: x [B, ci, h, w] -> y [B, co, ho, wo], one call for the batch so that
 * a 3x3 convolution can go by Winograd F(2x2, 3x3) across all images' tiles (below); other
 * shapes run k_conv2d per image. Scratch from k_conv2d_batch_scratch_floats(s, B). */
size_t k_conv2d_batch_scratch_floats(const k_conv_shape *s, int B);
void k_conv2d_batch(float *y, const float *x, int B, const float *w, const float *b, const k_conv_shape *s,
                    float *scratch);
/* Winograd F(2x2, 3x3) (winograd.c): 3x3, stride 1, padding 1 on every side, x [B, ci, h / up,
 * w / up] read as its nearest x`up` upsampling (up 1 or 2; s describes the h x w input).
 * 2.25x fewer multiply-adds than the direct sum; used by k_conv2d, k_conv2d_up2 and
 * k_conv2d_batch where k_conv3x3_wino_usable says it pays (enough tiles, AVX-512). Its plain
 * twin is k_conv2d_ref. */
int k_conv3x3_wino_usable(const k_conv_shape *s, int B);
/* Process-wide switch (default on), for tests and A/B benchmarks: off = the direct kernels.
 * Not thread-safe: set it before convolutions run. */
void k_conv_winograd_enable(int on);
size_t k_conv3x3_wino_scratch_floats(const k_conv_shape *s, int B);
void k_conv3x3_wino(float *y, const float *x, int B, const float *w, const float *b, const k_conv_shape *s, int up,
                    float *scratch);

/* ---- Normalisation ----
 * GroupNorm over x[C, HW] (one image): G groups of C/G channels, affine per channel, then
 * SiLU if `silu`. y may equal x. Statistics in double for accuracy. */
void k_group_norm(float *y, const float *x, const float *gamma, const float *beta,
                  int C, int HW, int G, float eps, int silu);
void k_group_norm_ref(float *y, const float *x, const float *gamma, const float *beta,
                      int C, int HW, int G, float eps, int silu);
/* LayerNorm of each row of x[N, C]. y may equal x. */
void k_layer_norm(float *y, const float *x, const float *gamma, const float *beta, int N, int C, float eps);

/* ---- Element-wise (in place) ---- */
void k_silu(float *x, size_t n);
void k_gelu_erf(float *x, size_t n);            /* exact GELU: 0.5 x (1 + erf(x / sqrt 2)) */
void k_quick_gelu(float *x, size_t n);          /* x * sigmoid(1.702 x) */
void k_add(float *y, const float *x, size_t n); /* y += x */
/* GEGLU: in[N, 2D] = [a | g] per row -> out[N, D] = a * gelu_erf(g). */
void k_geglu(float *out, const float *in, int N, int D);

/* ---- Attention ----
 * Multi-head scaled dot-product attention on token-major tensors:
 *   q[Nq, heads*dh] (row stride ldq), k[Nk, heads*dh] (ldk), v[Nk, heads*dh] (ldv)
 *   out[Nq, heads*dh] (ldo) = per head softmax(q_h k_h^T * scale [+ causal mask]) v_h
 * `causal`: query i attends to keys j <= i (CLIP text encoder).
 * Scores are computed in blocks of queries so that at most
 * k_attention_scratch_floats(Nq, Nk) floats are used. */
size_t k_attention_scratch_floats(int Nq, int Nk);
void k_attention(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                 const float *v, int ldv, int Nq, int Nk, int heads, int dh, float scale,
                 int causal, float *scratch);
void k_attention_ref(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                     const float *v, int ldv, int Nq, int Nk, int heads, int dh, float scale, int causal);
/* The same, non-causal, on the AMX tile unit (attention_bf16.c): k, v and the softmax weights
 * rounded to bf16, q as a sum of two bf16 parts, scores, softmax and sums in fp32. The same
 * scratch as k_attention. Without AMX-BF16, or for heads over 256 dims, it is k_attention.
 * Bit-identical for any thread count. The reference rounds k and v (not q, not the weights)
 * and sums in double. */
void k_attention_bf16(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                      const float *v, int ldv, int Nq, int Nk, int heads, int dh, float scale, float *scratch);
void k_attention_bf16_ref(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                          const float *v, int ldv, int Nq, int Nk, int heads, int dh, float scale);

/* ---- Resampling and layout ----
 * Nearest-neighbour resize of x[C, H, W] to y[C, Ho, Wo] with torch's legacy "nearest"
 * rule src = floor(dst * in / out) (exactly x2 when Ho = 2H; otherwise evaluated as torch
 * does, floorf(dst * ((float)in / out)), clamped to in - 1). */
void k_upsample_nearest(float *y, const float *x, int C, int H, int W, int Ho, int Wo);
/* x[C, HW] -> y[HW, C] and back. */
void k_transpose(float *y, const float *x, int rows, int cols);

/* ---- BF16 path (AMX-BF16 tile multiply, fp32 accumulation) ----
 * Weights are packed once into bf16 layouts made for the tile unit (k_bf16_pack_*);
 * activations are rounded to bf16 (nearest even) on the fly, accumulation is fp32.
 * Every output element is one fixed-order sum (tile k-steps in order), so results do not
 * depend on the thread count. Only CPUs with AMX-BF16 (and an OS granting the tile state)
 * run it: on this Sapphire Rapids a 512-bit vdpbf16ps runs at ~80 GFLOP/s per core,
 * below the fp32 FMA path (~175), so an AVX512-BF16 kernel would be a slowdown; callers
 * fall back to fp32 when k_bf16_available() is 0. */
int k_bf16_available(void);                 /* CPU + OS support, probed once; OCD_NO_AMX=1 says 0 */
uint16_t k_f32_to_bf16(float f);            /* round to nearest even (NaN payloads not kept) */
float k_bf16_to_f32(uint16_t h);

enum { K_BF16_LINEAR, K_BF16_CONV_TAPS, K_BF16_CONV_COLS };
typedef struct {
    int kind;          /* K_BF16_LINEAR: W[N, K]; _CONV_TAPS: stride-1 conv; _CONV_COLS: other strides */
    int rows, cols;    /* logical fp32 matrix: linear N x K; conv co x (ci kh kw) */
    int ci, kh, kw;    /* conv */
    int kp;            /* padded k extent per row (multiple of 32) */
    int rp;            /* padded row count (linear: N to 32; conv: co to 16) */
    uint16_t *p;       /* packed bf16 data, k_bf16_packed_elems() of them */
} k_bf16_weight;
/* Describes (no data yet) the packing of a linear W[N, K] or of conv weights W[co, ci, kh, kw]
 * used with this stride. */
k_bf16_weight k_bf16_linear_desc(int K, int N);
k_bf16_weight k_bf16_conv_desc(int co, int ci, int kh, int kw, int stride);
size_t k_bf16_packed_elems(const k_bf16_weight *d);
void k_bf16_pack(const k_bf16_weight *d, uint16_t *dst, const float *w);   /* w in PyTorch layout */
void k_bf16_unpack(const k_bf16_weight *d, float *w, const uint16_t *src);  /* back to fp32 (bf16 values) */

/* y[M, N] = x[M, K] W^T + b, W packed by k_bf16_linear_desc(K, N). */
void k_linear_bf16(float *y, const float *x, const k_bf16_weight *w, const float *b, int M, int K, int N);
void k_linear_bf16_ref(float *y, const float *x, const k_bf16_weight *w, const float *b, int M, int K, int N);
/* Convolutions as k_conv2d / k_conv2d_up2 with packed weights (k_bf16_conv_desc(..., s->stride)). */
size_t k_conv2d_bf16_scratch_floats(const k_conv_shape *s);
size_t k_conv2d_up2_bf16_scratch_floats(const k_conv_shape *s);
void k_conv2d_bf16(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s, float *scratch);
void k_conv2d_up2_bf16(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s,
                       float *scratch);
/* References: x rounded to bf16, weights unpacked, double accumulation. */
void k_conv2d_bf16_ref(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s);
void k_conv2d_up2_bf16_ref(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s);

/* A set of weights switched to bf16, keyed by their fp32 buffer. When the packing fits in
 * that buffer (every SD-sized tensor: it takes half) it is written there and the buffer's
 * unused tail pages go back to the OS, so weight memory halves; otherwise a buffer of its own
 * is allocated. The fp32 buffer must not be read as fp32 until k_bf16_set_clear(s, 1), which
 * writes the bf16 values back as fp32 (the rounding is not undone) and empties the set. */
typedef struct {
    float *key;
    size_t n;          /* fp32 elements of key */
    int inplace;
    k_bf16_weight d;   /* d.p: the packed data (== key when in place) */
} k_bf16_entry;
typedef struct {
    k_bf16_entry *e;
    int n, cap, sorted;
} k_bf16_set;
int k_bf16_set_add(k_bf16_set *s, float *w, k_bf16_weight d);   /* 0 / -1 (error set); a key twice: no-op */
const k_bf16_weight *k_bf16_set_find(k_bf16_set *s, const float *w);  /* NULL when absent */
void k_bf16_set_clear(k_bf16_set *s, int restore);  /* restore = 0: the fp32 buffers are about to be freed */
size_t k_bf16_set_bytes(const k_bf16_set *s);                    /* bf16 bytes held */

#endif

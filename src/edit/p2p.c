/* Prompt-to-prompt controller tables (prompt-to-prompt's seq_aligner / ptp_utils as FateZero
 * vendors them; algorithms.md A.7, A.8). */
#include "edit/p2p.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* tokenizer.encode(text): BOS + BPE + EOS, unpadded (capped at 77 like every framed prompt). */
static int encode_unpadded(const ocd_tokenizer *tok, const char *s, int32_t *ids, int *n) {
    if (tokenizer_encode(tok, s, ids, n)) return -1;
    return 0;
}

int p2p_refine_mapper(const int32_t *x, int nx, const int32_t *y, int ny, int32_t *mapper, float *alphas) {
    if (nx < 1 || ny < 1 || nx > P2P_T || ny > P2P_T) return ocd_fail("p2p_refine_mapper: bad lengths %d, %d", nx, ny);
    /* score and traceback [nx+1, ny+1]: 1 left (gap in x), 2 up (gap in y), 3 diagonal, 4 origin */
    static const int W = P2P_T + 1;
    int score[(P2P_T + 1) * (P2P_T + 1)];
    unsigned char tb[(P2P_T + 1) * (P2P_T + 1)];
    score[0] = 0, tb[0] = 4;
    for (int j = 1; j <= ny; j++) score[j] = 0, tb[j] = 1;          /* gap score 0 */
    for (int i = 1; i <= nx; i++) score[i * W] = 0, tb[i * W] = 2;
    for (int i = 1; i <= nx; i++)
        for (int j = 1; j <= ny; j++) {
            int left = score[i * W + j - 1], up = score[(i - 1) * W + j];
            int diag = score[(i - 1) * W + j - 1] + (x[i - 1] == y[j - 1] ? 1 : -1);
            int m = left > up ? left : up;
            if (diag > m) m = diag;
            score[i * W + j] = m;
            tb[i * W + j] = m == left ? 1 : m == up ? 2 : 3;   /* upstream's tie-break order */
        }
    /* traceback from the end: one entry per target token, in reverse */
    int32_t rev[P2P_T];
    int n = 0, i = nx, j = ny;
    while (i > 0 || j > 0) {
        int d = tb[i * W + j];
        if (d == 3) { i--, j--; rev[n++] = i; }
        else if (d == 1) { j--; rev[n++] = -1; }
        else if (d == 2) i--;
        else break;
    }
    for (int k = 0; k < P2P_T; k++) mapper[k] = k, alphas[k] = 1.0f;
    for (int k = 0; k < n; k++) {
        mapper[k] = rev[n - 1 - k];
        alphas[k] = mapper[k] == -1 ? 0.0f : 1.0f;
    }
    /* positions past the target's tokens: len(y) + arange (n == ny) */
    for (int k = n; k < P2P_T; k++) mapper[k] = ny + (k - n);
    return 0;
}

/* Splits s on single spaces into at most max words (pointers into buf). */
static int split_words(const char *s, char *buf, size_t cap, char **w, int max) {
    size_t L = strlen(s);
    if (L + 1 > cap) return ocd_fail("prompt too long (%zu bytes)", L);
    memcpy(buf, s, L + 1);
    int n = 0;
    char *p = buf;
    for (;;) {
        if (n == max) return ocd_fail("prompt has more than %d words", max);
        w[n++] = p;
        char *sp = strchr(p, ' ');
        if (!sp) break;
        *sp = 0;
        p = sp + 1;
    }
    return n;
}

/* prompt-to-prompt's get_replacement_mapper_ (equal word counts). */
static int replace_matrix(p2p_tables *t, const ocd_tokenizer *tok, const char *x, const char *y) {
    enum { MAXW = 128 };
    char bx[1024], by[1024], *wx[MAXW], *wy[MAXW];
    int nx = split_words(x, bx, sizeof bx, wx, MAXW), ny = split_words(y, by, sizeof by, wy, MAXW);
    if (nx < 0 || ny < 0) return -1;
    int src[MAXW][P2P_T], tgt[MAXW][P2P_T], ns[MAXW], nt[MAXW], nrep = 0;
    for (int k = 0; k < ny; k++) {
        if (!strcmp(wx[k], wy[k])) continue;
        ns[nrep] = tokenizer_word_positions_at(tok, x, k, src[nrep], P2P_T);
        nt[nrep] = tokenizer_word_positions_at(tok, y, k, tgt[nrep], P2P_T);
        if (ns[nrep] < 0 || nt[nrep] < 0) return -1;
        if (ns[nrep] == 0 || nt[nrep] == 0) return ocd_fail("replace controller: word %d has no tokens", k);
        nrep++;
    }
    memset(t->replace_mat, 0, sizeof t->replace_mat);
    int i = 0, j = 0, cur = 0;
    while (i < P2P_T && j < P2P_T) {
        if (cur < nrep && src[cur][0] == i) {
            if (ns[cur] == nt[cur])
                for (int a = 0; a < ns[cur]; a++) t->replace_mat[src[cur][a]][tgt[cur][a]] = 1.0f;
            else
                for (int b = 0; b < nt[cur]; b++)
                    for (int a = 0; a < ns[cur]; a++) t->replace_mat[src[cur][a]][tgt[cur][b]] = 1.0f / nt[cur];
            i += ns[cur], j += nt[cur], cur++;
        } else if (cur < nrep) {
            t->replace_mat[i][j] = 1.0f;
            i++, j++;
        } else {
            t->replace_mat[j][j] = 1.0f;   /* upstream writes [j, j] once past the last replaced word */
            i++, j++;
        }
    }
    return 0;
}

static int count_words(const char *s) {
    int n = 1;
    for (; *s; s++) n += *s == ' ';
    return n;
}

/* alpha[start:end, inds] = 1, elsewhere 0 (update_alpha_time_word). */
static void alpha_window(p2p_tables *t, double lo, double hi, const int *inds, int n_inds) {
    const int rows = t->steps + 1;
    const int start = (int)(lo * rows), end = (int)(hi * rows);
    for (int r = 0; r < rows; r++) {
        float v = r >= start && r < end ? 1.0f : 0.0f;
        if (inds)
            for (int k = 0; k < n_inds; k++) t->cross_alpha[r][inds[k]] = v;
        else
            for (int k = 0; k < P2P_T; k++) t->cross_alpha[r][k] = v;
    }
}

/* Sets row[pos] = 1 for the tokens of every space-separated word of `words` in `prompt`. */
static int word_indicator(const ocd_tokenizer *tok, const char *prompt, const char *words, float *row) {
    char buf[1024], *w[64];
    int n = split_words(words, buf, sizeof buf, w, 64);
    if (n < 0) return -1;
    for (int k = 0; k < n; k++) {
        if (!*w[k]) continue;
        int pos[P2P_T], np = tokenizer_word_positions(tok, prompt, w[k], pos, P2P_T);
        if (np < 0) return -1;
        for (int a = 0; a < np; a++) row[pos[a]] = 1.0f;
    }
    return 0;
}

int p2p_build(p2p_tables *t, const ocd_tokenizer *tok, const char *source, const char *target, const p2p_config *c) {
    if (!t || !tok || !source || !c) return ocd_fail("p2p_build: NULL argument");
    if (!target) target = source;
    if (c->steps < 1 || c->steps > P2P_MAX_STEPS) return ocd_fail("p2p_build: steps %d out of range", c->steps);
    memset(t, 0, sizeof *t);
    t->steps = c->steps;
    /* cross-replacement alpha [N+1, 77] */
    alpha_window(t, c->cross_lo, c->cross_hi, NULL, 0);
    for (int k = 0; k < c->n_cross_words; k++) {
        int pos[P2P_T], np = tokenizer_word_positions(tok, target, c->cross_word[k], pos, P2P_T);
        if (np < 0) return -1;
        if (np > 0) alpha_window(t, c->cross_word_lo[k], c->cross_word_hi[k], pos, np);
    }
    for (int r = 0; r <= t->steps; r++)
        for (int k = 0; k < P2P_T; k++) t->cross_active[r] |= t->cross_alpha[r][k] != 0.0f;
    t->self_lo = (int)(t->steps * c->self_lo);
    t->self_hi = (int)(t->steps * c->self_hi);
    /* Replace or Refine */
    int32_t xs[P2P_T], ys[P2P_T];
    int nx, ny;
    if (encode_unpadded(tok, source, xs, &nx) || encode_unpadded(tok, target, ys, &ny)) return -1;
    t->use_replace = c->replace_mode == 2 && count_words(source) == count_words(target);
    if (t->use_replace) {
        if (replace_matrix(t, tok, source, target)) return -1;
    }
    if (p2p_refine_mapper(xs, nx, ys, ny, t->mapper, t->refine_alphas)) return -1; /* reported either way */
    /* reweight on target tokens */
    for (int k = 0; k < P2P_T; k++) t->equalizer[k] = 1.0f;
    for (int k = 0; k < c->n_reweight; k++) {
        int pos[P2P_T], np = tokenizer_word_positions(tok, target, c->reweight_word[k], pos, P2P_T);
        if (np < 0) return -1;
        for (int a = 0; a < np; a++) t->equalizer[pos[a]] = c->reweight_value[k];
    }
    /* blend words */
    t->blend_th = c->blend_th;
    if (c->blend_words_src && *c->blend_words_src) {
        t->has_blend = 1;
        const char *tw = c->blend_words_tgt && *c->blend_words_tgt ? c->blend_words_tgt : c->blend_words_src;
        if (word_indicator(tok, source, c->blend_words_src, t->blend_alpha[0]) ||
            word_indicator(tok, target, tw, t->blend_alpha[1]))
            return -1;
    }
    return 0;
}

void p2p_cross_edit(const p2p_tables *t, int step, const float *S, float *A, int heads, int Nq) {
    const float *alpha = t->cross_alpha[step];
    const size_t rows = (size_t)heads * Nq;

    for (size_t r = 0; r < rows; r++) {
        const float *s = S + r * P2P_T;
        float *a = A + r * P2P_T;
        float R[P2P_T];
        if (t->use_replace) {
            for (int n = 0; n < P2P_T; n++) R[n] = 0.0f;
            for (int w = 0; w < P2P_T; w++) {
                const float sw = s[w];
                const float *m = t->replace_mat[w];
                for (int n = 0; n < P2P_T; n++) R[n] += sw * m[n];
            }
        } else {
            for (int n = 0; n < P2P_T; n++) {
                const float ra = t->refine_alphas[n];
                const float sv = t->mapper[n] >= 0 ? s[t->mapper[n]] : 0.0f;
                R[n] = sv * ra + a[n] * (1.0f - ra);
            }
        }
        for (int n = 0; n < P2P_T; n++) {
            const float r2 = R[n] * t->equalizer[n];
            a[n] = r2 * alpha[n] + (1.0f - alpha[n]) * a[n];
        }
    }
}

void p2p_self_blend(const float *M, const float *S, float *A, int heads, int Nq, int Nk) {
    for (int h = 0; h < heads; h++)
        for (int q = 0; q < Nq; q++) {
            const size_t o = ((size_t)h * Nq + q) * Nk;
            const float m = M ? M[q] : 0.0f;
            if (m == 1.0f) continue;
            for (int k = 0; k < Nk; k++) A[o + k] = m * A[o + k] + (1.0f - m) * S[o + k];
        }
}

void p2p_blend_score(const float *const *maps, int n_layers, int heads, int Nq0, const float *alpha, float *score,
                     int accumulate) {
    int wi[P2P_T], nw = 0;
    for (int n = 0; n < P2P_T; n++)
        if (alpha[n] != 0.0f) wi[nw++] = n;
    const float inv = 1.0f / (float)(n_layers * heads);
    for (int q = 0; q < Nq0; q++) {
        double acc = 0.0;
        for (int l = 0; l < n_layers; l++)
            for (int h = 0; h < heads; h++) {
                const float *row = maps[l] + ((size_t)h * Nq0 + q) * P2P_T;
                float s = 0.0f;
                for (int k = 0; k < nw; k++) s += row[wi[k]] * alpha[wi[k]];
                acc += s;
            }
        float v = (float)acc * inv;
        score[q] = accumulate ? score[q] + v : v;
    }
}

void p2p_blend_mask(const float *score, int F, int h0, int w0, int h, int w, float th, float *mask, float *scratch) {
    float *pooled = scratch, *rs = scratch + (size_t)F * h0 * w0;
    for (int f = 0; f < F; f++) {
        const float *s = score + (size_t)f * h0 * w0;
        float *p = pooled + (size_t)f * h0 * w0;
        for (int y = 0; y < h0; y++)
            for (int x = 0; x < w0; x++) {
                float m = -FLT_MAX;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int yy = y + dy, xx = x + dx;
                        if (yy < 0 || yy >= h0 || xx < 0 || xx >= w0) continue;
                        if (s[yy * w0 + xx] > m) m = s[yy * w0 + xx];
                    }
                p[y * w0 + x] = m;
            }
        /* nearest resize, torch's legacy rule floor(dst * (in / out)) in float, clamped */
        float *r = rs + (size_t)f * h * w;
        const float sy = (float)h0 / (float)h, sx = (float)w0 / (float)w;
        float mx = -FLT_MAX;
        for (int y = 0; y < h; y++) {
            int yy = (int)((float)y * sy);
            if (yy > h0 - 1) yy = h0 - 1;
            for (int x = 0; x < w; x++) {
                int xx = (int)((float)x * sx);
                if (xx > w0 - 1) xx = w0 - 1;
                r[y * w + x] = p[yy * w0 + xx];
                if (r[y * w + x] > mx) mx = r[y * w + x];
            }
        }
        for (int i = 0; i < h * w; i++) mask[(size_t)f * h * w + i] = r[i] / mx > th ? 1.0f : 0.0f;
    }
}

/* Cross-frame self-attention (algorithms.md A.3 item 4, C.2). */
#include "edit/xframe.h"

#include <string.h>

#include "base/error.h"
#include "kernels/kernels.h"

static const char *const k_names[] = {"mid", "first-prev", "all", "self"};

int xf_mode_parse(const char *s, xf_mode *m) {
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, k_names[i])) { *m = (xf_mode)i; return 0; }
    return ocd_fail("unknown cross-frame mode \"%s\" (mid, first-prev, all, self)", s ? s : "(null)");
}

const char *xf_mode_name(xf_mode m) { return (unsigned)m < 4 ? k_names[m] : "?"; }

int xf_kv_frames(xf_mode m, int least_sc_channel, int F, int f, int C, int *kv) {
    if (m == XF_SELF || C < least_sc_channel) { kv[0] = f; return 1; }
    switch (m) {
    case XF_MID: kv[0] = (F - 1) / 2; return 1;
    case XF_FIRST_PREV: kv[0] = f > 0 ? f - 1 : 0; kv[1] = 0; return 2; /* [-1, 'first'], clamped */
    case XF_ALL: {
        int n = F < XF_MAX_KV ? F : XF_MAX_KV;
        for (int i = 0; i < n; i++) kv[i] = i;
        return n;
    }
    default: kv[0] = f; return 1;
    }
}

int xf_max_kv(xf_mode m, int F) {
    switch (m) {
    case XF_FIRST_PREV: return 2;
    case XF_ALL: return F < XF_MAX_KV ? F : XF_MAX_KV;
    default: return 1;
    }
}

size_t xf_buffer_floats(xf_mode m, int F, size_t max_tokens_times_C) {
    int n = xf_max_kv(m, F);
    return n > 1 ? (size_t)n * max_tokens_times_C : 0;
}

int xf_gather_kv(const unet_attn_call *call, xf_mode m, int least_sc_channel, int F,
                 float *k_buf, float *v_buf, const float **k_ptr, const float **v_ptr) {
    if (F < 1 || call->batch % F) return ocd_fail("cross-frame attention: batch %d is not a multiple of %d frames", call->batch, F);
    if (m == XF_ALL && F > XF_MAX_KV) return ocd_fail("cross-frame attention: more than %d frames", XF_MAX_KV);
    int kv[XF_MAX_KV];
    const int base = call->b / F * F, f = call->b % F;
    const int n = xf_kv_frames(m, least_sc_channel, F, f, call->C, kv);
    const size_t blk = (size_t)call->Nk * call->C;
    if (n == 1) {
        *k_ptr = call->k + (size_t)(base + kv[0]) * blk;
        *v_ptr = call->v + (size_t)(base + kv[0]) * blk;
        return 1;
    }
    for (int i = 0; i < n; i++) {
        memcpy(k_buf + i * blk, call->k + (size_t)(base + kv[i]) * blk, blk * sizeof(float));
        memcpy(v_buf + i * blk, call->v + (size_t)(base + kv[i]) * blk, blk * sizeof(float));
    }
    *k_ptr = k_buf, *v_ptr = v_buf;
    return n;
}

int xf_attend(void *user, const unet_attn_call *call) {
    const xf_hook_state *st = user;
    if (call->is_cross) return unet_attend_plain(call);
    const float *k, *v;
    int n = xf_gather_kv(call, st->mode, st->least_sc_channel, st->F, st->k_buf, st->v_buf, &k, &v);
    if (n < 0) return -1;
    const size_t q_off = (size_t)call->b * call->Nq * call->C;
    unet_attention(call, call->q + q_off, k, v, n * call->Nk);
    return 0;
}

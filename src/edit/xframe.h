/* Cross-frame self-attention (algorithms.md A.3 item 4, C.2): which frames' keys/values the
 * self-attention (attn1) of a frame reads. The batch holds B = n_branch * F items; item b is
 * frame b % F of branch b / F (editing: [uncond F frames, cond F frames]); key frames are taken
 * within the item's own branch. */
#ifndef OCD_EDIT_XFRAME_H
#define OCD_EDIT_XFRAME_H

#include "nn/unet.h"

typedef enum {
    XF_MID,         /* FateZero ['mid']: frame (F-1)//2 on blocks with C >= least_sc_channel, own frame below */
    XF_FIRST_PREV,  /* FateZero's code default [-1, 'first']: previous frame (clamped) + first frame */
    XF_ALL,         /* ControlVideo: every frame of the branch, in frame order */
    XF_SELF         /* plain per-frame self-attention */
} xf_mode;

#define XF_MAX_KV 64   /* most key frames one query frame reads (XF_ALL: F <= 64) */

/* Parses "mid", "first-prev", "all", "self". -1 with the error set otherwise. */
int xf_mode_parse(const char *s, xf_mode *m);
const char *xf_mode_name(xf_mode m);

/* Key frames of frame f (0..F-1) in a block with C channels; returns their count (>= 1) and
 * writes the frame indices to kv[] (XF_MAX_KV), in concatenation order. Blocks with
 * C < least_sc_channel use their own frame in every mode (FateZero's empty index list);
 * least_sc_channel 0 = every block. */
int xf_kv_frames(xf_mode m, int least_sc_channel, int F, int f, int C, int *kv);

/* The most key frames any call reads (for unet_attn_hook.kv_frames_max). */
int xf_max_kv(xf_mode m, int F);

/* Item b's keys and values (self-attention call with F frames per branch, batch a multiple
 * of F). With one key frame *k_ptr / *v_ptr point into the call's own arrays; otherwise the
 * frames are copied into k_buf / v_buf [n_kv * Nk, C] and the pointers point there.
 * Returns n_kv, or -1. */
int xf_gather_kv(const unet_attn_call *call, xf_mode m, int least_sc_channel, int F,
                 float *k_buf, float *v_buf, const float **k_ptr, const float **v_ptr);
/* Floats of k_buf (and of v_buf) for calls of up to max_tokens x max_C. */
size_t xf_buffer_floats(xf_mode m, int F, size_t max_tokens_times_C);

/* A complete hook for plain cross-frame attention (no fusion): attention of item b over the
 * gathered K/V via k_attention. Cross attention (attn2) goes to unet_attend_plain. */
typedef struct {
    xf_mode mode;
    int least_sc_channel;
    int F;                 /* frames per branch */
    float *k_buf, *v_buf;  /* xf_buffer_floats() each, owned by the caller */
} xf_hook_state;
int xf_attend(void *user /* xf_hook_state */, const unet_attn_call *call);

#endif

/* Video clips in and out: any container FFmpeg can demux (mp4, webm, mov, mkv, gif, ...)
 * or a folder of .png/.jpg/.jpeg frames; written as .mp4 (H.264 when this FFmpeg has
 * libx264, else MPEG-4 part 2), .gif (own median-cut palette) or a folder of PNGs.
 * Frames are RGB8 [h, w, 3]; every writer goes through a temporary name + rename. */
#ifndef OCD_IO_VIDEO_H
#define OCD_IO_VIDEO_H

#include <stdint.h>

typedef struct {
    int n, w, h;
    double fps;       /* 0 = unknown (folders of frames) */
    uint8_t **frames; /* n x [h, w, 3] */
} ocd_video;

/* Reads frames start + i*stride for i < n (n = 0: every such frame to the end).
 * `path` is a file or a folder of frames sorted by name. Errors name the cause: missing
 * file, not a video, no video stream, truncated/corrupt data, or too few frames (with
 * the number the clip has). */
int video_read(const char *path, int start, int stride, int n, ocd_video *out);
/* By the name: "*.mp4" / ".mov" / ".mkv" (yuv420p; odd sizes are padded by repeating the
 * last row/column), "*.gif", or a folder ("dir/" or a name without extension:
 * 00000.png, 00001.png, ...; a folder left by an earlier run is replaced only if it
 * holds nothing but such frames). fps <= 0 takes v->fps, else 10. */
int video_write(const char *path, const ocd_video *v, double fps);
/* Whether video_write accepts this name (checked before long work); 0 or -1 with the error. */
int video_check_output(const char *path);
int video_alloc(ocd_video *v, int n, int w, int h); /* zeroed frames */
void video_free(ocd_video *v);
/* The name of the encoder video_write uses for .mp4 ("libx264" or "mpeg4"; the
 * environment variable OCD_MP4_ENCODER=mpeg4 forces the fallback). */
const char *video_mp4_encoder(void);

/* Tiles `count` clips with the same frame count into a grid of `cols` columns (cells
 * as large as the largest clip, black padding, clips centred); fps of the first. */
int video_grid(const ocd_video *const *vs, int count, int cols, ocd_video *out);
int video_side_by_side(const ocd_video *a, const ocd_video *b, ocd_video *out);

/* FateZero's input preprocessing (A.2) for every frame: x/255*2-1, short side -> size
 * (bilinear, antialias), centre crop. Returns malloc'd [n, 3, size, size], NULL + error. */
float *video_preprocess(const ocd_video *v, int size);

#endif

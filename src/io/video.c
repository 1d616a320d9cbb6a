#include "io/video.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "base/error.h"
#include "io/image.h"

/* ---------------------------------------------------------------- FFmpeg logging */

/* FFmpeg logs through one global callback. Ours prints nothing and keeps, per thread,
 * the last warning/error line (quoted in our single error message) and whether any line
 * said the input was cut short (matroska's "File ended prematurely" is only a warning). */
static _Thread_local char g_av_msg[256];
static _Thread_local int g_av_cut;

static void av_quiet_log(void *avcl, int level, const char *fmt, va_list vl) {
    (void)avcl;
    if (level > AV_LOG_WARNING) return;
    char line[256];
    vsnprintf(line, sizeof line, fmt, vl);
    line[strcspn(line, "\n")] = 0; /* first line only */
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = 0;
    if (n) memcpy(g_av_msg, line, n + 1);
    if (strstr(line, "prematurely") || strstr(line, "partial file")) g_av_cut = 1;
}

static void av_quiet(void) {
    static int done; /* idempotent; a race only sets the same callback twice */
    if (!done) {
        av_log_set_callback(av_quiet_log);
        done = 1;
    }
    g_av_msg[0] = 0;
    g_av_cut = 0;
}

/* "reason" from an AVERROR code, plus FFmpeg's own last error line when there is one. */
static const char *av_why(int err, char *buf, size_t cap) {
    char e[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror(err, e, sizeof e);
    if (g_av_msg[0]) snprintf(buf, cap, "%s; ffmpeg: %s", e, g_av_msg);
    else snprintf(buf, cap, "%s", e);
    return buf;
}

/* ---------------------------------------------------------------- basics */

int video_alloc(ocd_video *v, int n, int w, int h) {
    memset(v, 0, sizeof *v);
    if (n <= 0 || w <= 0 || h <= 0) return ocd_fail("invalid video size %d frames of %dx%d", n, w, h);
    v->frames = ocd_calloc((size_t)n, sizeof *v->frames);
    if (!v->frames) return -1;
    v->n = n;
    v->w = w;
    v->h = h;
    for (int i = 0; i < n; i++)
        if (!(v->frames[i] = ocd_calloc((size_t)w * h, 3))) {
            video_free(v);
            return -1;
        }
    return 0;
}

void video_free(ocd_video *v) {
    if (!v) return;
    if (v->frames)
        for (int i = 0; i < v->n; i++) free(v->frames[i]);
    free(v->frames);
    memset(v, 0, sizeof *v);
}

/* Appends one frame (taking ownership), growing the pointer array geometrically. */
static int video_push(ocd_video *v, int *cap, uint8_t *frame) {
    if (v->n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        uint8_t **f = realloc(v->frames, sizeof *f * (size_t)nc);
        if (!f) {
            free(frame);
            return ocd_fail("out of memory for %d frames", nc);
        }
        v->frames = f;
        *cap = nc;
    }
    v->frames[v->n++] = frame;
    return 0;
}

static int frames_needed(int start, int stride, int n) { return start + (n - 1) * stride + 1; }

static int too_few(const char *path, int have, int start, int stride, int n) {
    if (n > 0)
        return ocd_fail("%s: has only %d frames, but start %d, stride %d and %d frames need %d", path, have, start,
                        stride, n, frames_needed(start, stride, n));
    return ocd_fail("%s: has only %d frames, none at or after start %d", path, have, start);
}

/* ---------------------------------------------------------------- reading: folders */

static int is_frame_name(const char *s) {
    const char *dot = strrchr(s, '.');
    return s[0] != '.' && dot &&
           (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_folder(const char *path, int start, int stride, int n, ocd_video *out) {
    DIR *d = opendir(path);
    if (!d) return ocd_fail("%s: cannot open folder: %s", path, strerror(errno));
    char **names = NULL;
    int count = 0, cap = 0, others = 0, r = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_frame_name(e->d_name)) {
            others += e->d_name[0] != '.';
            continue;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, sizeof *nn * (size_t)cap);
            if (!nn) { ocd_fail("out of memory listing %s", path); goto done; }
            names = nn;
        }
        if (!(names[count] = strdup(e->d_name))) { ocd_fail("out of memory listing %s", path); goto done; }
        count++;
    }
    if (count == 0) {
        ocd_fail("%s: folder has no .png/.jpg/.jpeg frames%s", path,
                 others ? " (other files are there; only PNG and JPEG frames are read)" : "");
        goto done;
    }
    qsort(names, (size_t)count, sizeof *names, cmp_str);
    int want = n > 0 ? n : (count - start + stride - 1) / stride;
    if (start >= count || (n > 0 && frames_needed(start, stride, n) > count)) {
        too_few(path, count, start, stride, n);
        goto done;
    }
    if (!(out->frames = ocd_calloc((size_t)want, sizeof *out->frames))) goto done;
    out->n = want;
    for (int i = 0; i < want; i++) {
        char file[4096];
        ocd_image im;
        snprintf(file, sizeof file, "%s/%s", path, names[start + i * stride]);
        if (image_read(file, &im)) goto fail;
        if (i == 0) {
            out->w = im.w;
            out->h = im.h;
        } else if (im.w != out->w || im.h != out->h) {
            ocd_fail("%s: frame %s is %dx%d but the first frame is %dx%d", path, names[start + i * stride], im.w,
                     im.h, out->w, out->h);
            image_free(&im);
            goto fail;
        }
        out->frames[i] = im.rgb;
    }
    out->fps = 0;
    r = 0;
    goto done;
fail:
    video_free(out);
done:
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
    closedir(d);
    return r;
}

/* ---------------------------------------------------------------- reading: containers */

typedef struct {
    const char *path;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;
    int stream;
    int start, stride, n; /* selection */
    int decoded;          /* frames decoded so far (index of the next one) */
    int cap;              /* capacity of out->frames */
    ocd_video *out;
} reader;

static void reader_close(reader *r) {
    sws_freeContext(r->sws);
    av_frame_free(&r->frame);
    av_packet_free(&r->pkt);
    avcodec_free_context(&r->dec);
    avformat_close_input(&r->fmt);
}

static int reader_done(const reader *r) { return r->n > 0 && r->out->n == r->n; }

/* Converts the decoded frame to RGB24 when its index is selected. */
static int reader_take(reader *r) {
    AVFrame *f = r->frame;
    int k = r->decoded++;
    if (k < r->start || (k - r->start) % r->stride || reader_done(r)) return 0;
    ocd_video *v = r->out;
    if (v->n == 0) {
        v->w = f->width;
        v->h = f->height;
    } else if (f->width != v->w || f->height != v->h) {
        return ocd_fail("%s: frame %d is %dx%d but earlier frames are %dx%d", r->path, k, f->width, f->height, v->w,
                        v->h);
    }
    r->sws = sws_getCachedContext(r->sws, f->width, f->height, f->format, f->width, f->height, AV_PIX_FMT_RGB24,
                                  SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!r->sws) return ocd_fail("%s: cannot convert pixel format %s to RGB", r->path, av_get_pix_fmt_name(f->format));
    /* Honour the stream's YUV matrix and range when it states them (default BT.601). */
    int *inv, *tab, src_range, dst_range, bri, con, sat;
    if (sws_getColorspaceDetails(r->sws, &inv, &src_range, &tab, &dst_range, &bri, &con, &sat) >= 0) {
        const int *coef = f->colorspace != AVCOL_SPC_UNSPECIFIED ? sws_getCoefficients(f->colorspace) : inv;
        if (f->color_range == AVCOL_RANGE_JPEG) src_range = 1;
        else if (f->color_range == AVCOL_RANGE_MPEG) src_range = 0;
        sws_setColorspaceDetails(r->sws, coef, src_range, tab, dst_range, bri, con, sat);
    }
    uint8_t *rgb = malloc((size_t)v->w * v->h * 3);
    if (!rgb) return ocd_fail("out of memory for a %dx%d frame", v->w, v->h);
    uint8_t *dst[4] = {rgb, NULL, NULL, NULL};
    int stride[4] = {v->w * 3, 0, 0, 0};
    sws_scale(r->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, stride);
    return video_push(v, &r->cap, rgb);
}

/* Pulls every frame the decoder has ready. */
static int reader_drain(reader *r) {
    for (;;) {
        int e = avcodec_receive_frame(r->dec, r->frame);
        if (e == AVERROR(EAGAIN) || e == AVERROR_EOF) return 0;
        if (e < 0) {
            char why[400];
            return ocd_fail("%s: corrupt video data at frame %d (%s)", r->path, r->decoded, av_why(e, why, sizeof why));
        }
        int t = reader_take(r);
        av_frame_unref(r->frame);
        if (t) return -1;
    }
}

static int read_container(const char *path, int start, int stride, int n, ocd_video *out) {
    reader r = {.path = path, .start = start, .stride = stride, .n = n, .out = out};
    char why[400];
    int e = avformat_open_input(&r.fmt, path, NULL, NULL);
    if (e < 0) {
        ocd_fail("%s: not a video or image file FFmpeg can read, or truncated/corrupt (%s)", path,
                 av_why(e, why, sizeof why));
        goto fail;
    }
    if ((e = avformat_find_stream_info(r.fmt, NULL)) < 0) {
        ocd_fail("%s: corrupt or truncated file (%s)", path, av_why(e, why, sizeof why));
        goto fail;
    }
    r.stream = av_find_best_stream(r.fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (r.stream < 0) {
        ocd_fail("%s: the file has no video stream", path);
        goto fail;
    }
    AVStream *st = r.fmt->streams[r.stream];
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec) {
        ocd_fail("%s: this FFmpeg has no decoder for the video codec %s", path, avcodec_get_name(st->codecpar->codec_id));
        goto fail;
    }
    r.dec = avcodec_alloc_context3(codec);
    r.pkt = av_packet_alloc();
    r.frame = av_frame_alloc();
    if (!r.dec || !r.pkt || !r.frame) {
        ocd_fail("out of memory opening %s", path);
        goto fail;
    }
    if ((e = avcodec_parameters_to_context(r.dec, st->codecpar)) < 0 || (e = avcodec_open2(r.dec, codec, NULL)) < 0) {
        ocd_fail("%s: cannot open the %s decoder (%s)", path, codec->name, av_why(e, why, sizeof why));
        goto fail;
    }
    int eof = 0, npkt = 0;
    while (!eof && !reader_done(&r)) {
        e = av_read_frame(r.fmt, r.pkt);
        if (e == AVERROR_EOF) {
            eof = 1;
            e = avcodec_send_packet(r.dec, NULL); /* flush the decoder's delayed frames */
        } else if (e < 0) {
            ocd_fail("%s: corrupt or truncated file after %d frames (%s)", path, r.decoded, av_why(e, why, sizeof why));
            goto fail;
        } else if (r.pkt->stream_index != r.stream) {
            av_packet_unref(r.pkt);
            continue;
        } else {
            npkt++;
            if (r.pkt->flags & AV_PKT_FLAG_CORRUPT) {
                ocd_fail("%s: truncated or corrupt video data (packet %d of the video stream)", path, npkt);
                goto fail;
            }
            e = avcodec_send_packet(r.dec, r.pkt);
            av_packet_unref(r.pkt);
        }
        if (e < 0 && e != AVERROR(EAGAIN) && e != AVERROR_EOF) {
            ocd_fail("%s: corrupt video data after %d frames (%s)", path, r.decoded, av_why(e, why, sizeof why));
            goto fail;
        }
        if (reader_drain(&r)) goto fail;
    }
    /* A cut-off file can still demux to a clean EOF; the demuxer then only says so in its
     * log. (The sample count in an mp4 index is no proof: edit lists may drop samples.) */
    if (!reader_done(&r) && g_av_cut) {
        ocd_fail("%s: truncated file: it ends after %d frames (ffmpeg: %s)", path, r.decoded, g_av_msg);
        goto fail;
    }
    if (out->n == 0 || (n > 0 && out->n < n)) {
        if (r.decoded == 0)
            ocd_fail("%s: no video frame could be decoded (truncated or corrupt?%s%s)", path, g_av_msg[0] ? " ffmpeg: " : "",
                     g_av_msg);
        else too_few(path, r.decoded, start, stride, n);
        goto fail;
    }
    AVRational fr = av_guess_frame_rate(r.fmt, st, NULL);
    out->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    reader_close(&r);
    return 0;
fail:
    reader_close(&r);
    video_free(out);
    return -1;
}

int video_read(const char *path, int start, int stride, int n, ocd_video *out) {
    memset(out, 0, sizeof *out);
    if (start < 0 || stride < 1 || n < 0)
        return ocd_fail("%s: invalid frame selection (start %d, stride %d, n %d)", path, start, stride, n);
    struct stat sb;
    if (stat(path, &sb) != 0) return ocd_fail("%s: cannot open video: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return read_folder(path, start, stride, n, out);
    av_quiet();
    return read_container(path, start, stride, n, out);
}

/* ---------------------------------------------------------------- GIF palette */

/* Median cut over a 6-bit-per-channel histogram of the whole clip: one global palette of
 * at most 256 colours (box means), every pixel mapped through its histogram bin. */
#define QBITS 6
#define QBINS (1 << (3 * QBITS))

typedef struct {
    uint32_t key;    /* r<<12 | g<<6 | b at 6 bits */
    uint64_t cnt;
    uint64_t sum[3]; /* exact 8-bit sums, for the box means */
} qbin;
typedef struct {
    int lo, hi; /* bins [lo, hi) */
    uint64_t cnt;
    int axis, range;
} qbox;

static int qcoord(uint32_t key, int ch) { return (int)(key >> (QBITS * (2 - ch))) & ((1 << QBITS) - 1); }
static int cmp_r(const void *a, const void *b) { return qcoord(((const qbin *)a)->key, 0) - qcoord(((const qbin *)b)->key, 0); }
static int cmp_g(const void *a, const void *b) { return qcoord(((const qbin *)a)->key, 1) - qcoord(((const qbin *)b)->key, 1); }
static int cmp_b(const void *a, const void *b) { return qcoord(((const qbin *)a)->key, 2) - qcoord(((const qbin *)b)->key, 2); }

static void qbox_measure(const qbin *bins, qbox *b) {
    int mn[3] = {255, 255, 255}, mx[3] = {0, 0, 0};
    b->cnt = 0;
    for (int i = b->lo; i < b->hi; i++) {
        b->cnt += bins[i].cnt;
        for (int c = 0; c < 3; c++) {
            int v = qcoord(bins[i].key, c);
            mn[c] = v < mn[c] ? v : mn[c];
            mx[c] = v > mx[c] ? v : mx[c];
        }
    }
    b->axis = 0;
    for (int c = 1; c < 3; c++)
        if (mx[c] - mn[c] > mx[b->axis] - mn[b->axis]) b->axis = c;
    b->range = mx[b->axis] - mn[b->axis];
}

/* Fills pal (ncolors x RGB) and lut (bin -> palette index). */
static int gif_palette(const ocd_video *v, uint8_t pal[256][3], int *ncolors, uint8_t *lut /* [QBINS] */) {
    qbin *bins = ocd_calloc(QBINS, sizeof *bins);
    qbox *boxes = ocd_calloc(256, sizeof *boxes);
    if (!bins || !boxes) {
        free(bins);
        free(boxes);
        return -1;
    }
    const int sh = 8 - QBITS;
    for (int f = 0; f < v->n; f++) {
        const uint8_t *p = v->frames[f];
        if (!p) continue; /* the writer reports missing frames */
        for (size_t i = 0; i < (size_t)v->w * v->h; i++, p += 3) {
            uint32_t key = (uint32_t)(p[0] >> sh) << (2 * QBITS) | (uint32_t)(p[1] >> sh) << QBITS | (p[2] >> sh);
            qbin *b = &bins[key];
            b->cnt++;
            b->sum[0] += p[0], b->sum[1] += p[1], b->sum[2] += p[2];
        }
    }
    int nb = 0; /* compact the non-empty bins to the front, keeping their keys */
    for (uint32_t k = 0; k < QBINS; k++)
        if (bins[k].cnt) {
            bins[nb] = bins[k];
            bins[nb++].key = k;
        }
    int nbox = 1;
    boxes[0] = (qbox){.lo = 0, .hi = nb};
    qbox_measure(bins, &boxes[0]);
    while (nbox < 256) {
        int best = -1;
        double best_score = 0;
        for (int i = 0; i < nbox; i++) {
            double s = (double)boxes[i].cnt * boxes[i].range;
            if (boxes[i].hi - boxes[i].lo > 1 && boxes[i].range > 0 && s > best_score) best = i, best_score = s;
        }
        if (best < 0) break;
        qbox *b = &boxes[best];
        int (*cmp[3])(const void *, const void *) = {cmp_r, cmp_g, cmp_b};
        qsort(bins + b->lo, (size_t)(b->hi - b->lo), sizeof *bins, cmp[b->axis]);
        uint64_t half = b->cnt / 2, acc = 0;
        int cut = b->lo;
        while (cut < b->hi - 1 && acc + bins[cut].cnt <= half) acc += bins[cut++].cnt;
        if (cut == b->lo) cut++; /* both halves non-empty */
        boxes[nbox] = (qbox){.lo = cut, .hi = b->hi};
        b->hi = cut;
        qbox_measure(bins, b);
        qbox_measure(bins, &boxes[nbox]);
        nbox++;
    }
    for (int i = 0; i < nbox; i++) {
        uint64_t s[3] = {0, 0, 0}, c = 0;
        for (int j = boxes[i].lo; j < boxes[i].hi; j++) {
            c += bins[j].cnt;
            for (int ch = 0; ch < 3; ch++) s[ch] += bins[j].sum[ch];
        }
        for (int ch = 0; ch < 3; ch++) pal[i][ch] = (uint8_t)(c ? (s[ch] + c / 2) / c : 0);
    }
    /* Each used bin maps to the palette colour nearest its own mean. */
    for (int j = 0; j < nb; j++) {
        int m[3], bi = 0, bd = 1 << 30;
        for (int ch = 0; ch < 3; ch++) m[ch] = (int)((bins[j].sum[ch] + bins[j].cnt / 2) / bins[j].cnt);
        for (int i = 0; i < nbox; i++) {
            int d0 = m[0] - pal[i][0], d1 = m[1] - pal[i][1], d2 = m[2] - pal[i][2];
            int d = d0 * d0 + d1 * d1 + d2 * d2;
            if (d < bd) bd = d, bi = i;
        }
        lut[bins[j].key] = (uint8_t)bi;
    }
    *ncolors = nbox;
    free(bins);
    free(boxes);
    return 0;
}

/* ---------------------------------------------------------------- writing: encoders */

const char *video_mp4_encoder(void) {
    const char *force = getenv("OCD_MP4_ENCODER"); /* "mpeg4" forces the fallback (tests) */
    if (force && !strcmp(force, "mpeg4")) return "mpeg4";
    return avcodec_find_encoder_by_name("libx264") ? "libx264" : "mpeg4";
}

typedef struct {
    const char *path; /* final name, for messages */
    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
    uint8_t *pad;    /* [eh, ew, 3] edge-padded RGB when the size is odd */
    uint8_t *lut;    /* [QBINS] gif: bin -> palette index */
    int gif, header_written;
    double fps;
    int64_t npkt;
} writer;

static void writer_close(writer *w) {
    /* After a failure the muxer still holds state that only its trailer frees (gif's
     * held-back packet); the temporary file it writes to is deleted anyway. */
    if (w->header_written) av_write_trailer(w->oc);
    if (w->oc && w->oc->pb) avio_closep(&w->oc->pb);
    avformat_free_context(w->oc);
    avcodec_free_context(&w->enc);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    sws_freeContext(w->sws);
    free(w->pad);
    free(w->lut);
}

static int64_t gif_pts(double fps, int64_t i) { return llround((double)i * 100.0 / fps); } /* centiseconds */

static int writer_flush(writer *w, const AVFrame *f) {
    char why[400];
    int e = avcodec_send_frame(w->enc, f);
    if (e < 0) return ocd_fail("%s: encoding failed (%s)", w->path, av_why(e, why, sizeof why));
    for (;;) {
        e = avcodec_receive_packet(w->enc, w->pkt);
        if (e == AVERROR(EAGAIN) || e == AVERROR_EOF) return 0;
        if (e < 0) return ocd_fail("%s: encoding failed (%s)", w->path, av_why(e, why, sizeof why));
        /* gif: frames leave in order, each lasting until the next one's rounded time. */
        w->pkt->duration = w->gif ? gif_pts(w->fps, w->npkt + 1) - gif_pts(w->fps, w->npkt) : 1;
        w->npkt++;
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        e = av_interleaved_write_frame(w->oc, w->pkt);
        if (e < 0) return ocd_fail("%s: writing failed (%s)", w->path, av_why(e, why, sizeof why));
    }
}

static int encode_video(const char *path, const char *tmp, const ocd_video *v, double fps, int gif) {
    writer w = {.path = path, .gif = gif, .fps = fps};
    char why[400];
    int e, r = -1;
    const char *fmtname = gif ? "gif" : strcasecmp(strrchr(path, '.'), ".mkv") == 0 ? "matroska"
                                       : strcasecmp(strrchr(path, '.'), ".mov") == 0 ? "mov" : "mp4";
    const char *encname = gif ? "gif" : video_mp4_encoder();
    const AVCodec *codec = avcodec_find_encoder_by_name(encname);
    if (!codec) return ocd_fail("%s: this FFmpeg build has no %s encoder", path, encname);
    /* yuv420p subsamples chroma 2x2, so H.264/MPEG-4 need even sizes: repeat the edge. */
    int ew = gif ? v->w : (v->w + 1) & ~1, eh = gif ? v->h : (v->h + 1) & ~1;
    if ((e = avformat_alloc_output_context2(&w.oc, NULL, fmtname, tmp)) < 0 || !w.oc) {
        ocd_fail("%s: cannot set up the %s muxer (%s)", path, fmtname, av_why(e, why, sizeof why));
        goto done;
    }
    w.enc = avcodec_alloc_context3(codec);
    w.frame = av_frame_alloc();
    w.pkt = av_packet_alloc();
    if (!w.enc || !w.frame || !w.pkt) {
        ocd_fail("out of memory writing %s", path);
        goto done;
    }
    w.enc->width = ew;
    w.enc->height = eh;
    if (gif) {
        w.enc->pix_fmt = AV_PIX_FMT_PAL8;
        w.enc->time_base = (AVRational){1, 100};
    } else {
        w.enc->pix_fmt = AV_PIX_FMT_YUV420P;
        w.enc->time_base = av_d2q(1.0 / fps, 65535); /* mpeg4 caps the denominator at 2^16-1 */
        w.enc->framerate = av_d2q(fps, 65535);
        w.enc->gop_size = 12;
        w.enc->color_range = AVCOL_RANGE_MPEG; /* what swscale's default RGB->YUV produces */
        w.enc->colorspace = AVCOL_SPC_SMPTE170M;
        if (!strcmp(encname, "libx264")) {
            av_opt_set(w.enc->priv_data, "preset", "medium", 0);
            av_opt_set(w.enc->priv_data, "crf", "17", 0);
        } else {
            w.enc->flags |= AV_CODEC_FLAG_QSCALE;
            w.enc->global_quality = FF_QP2LAMBDA * 2;
        }
    }
    if (w.oc->oformat->flags & AVFMT_GLOBALHEADER) w.enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if ((e = avcodec_open2(w.enc, codec, NULL)) < 0) {
        ocd_fail("%s: cannot open the %s encoder (%s)", path, encname, av_why(e, why, sizeof why));
        goto done;
    }
    if (!(w.st = avformat_new_stream(w.oc, NULL)) || avcodec_parameters_from_context(w.st->codecpar, w.enc) < 0) {
        ocd_fail("out of memory writing %s", path);
        goto done;
    }
    w.st->time_base = w.enc->time_base;
    w.st->avg_frame_rate = gif ? av_d2q(fps, 65535) : w.enc->framerate;
    AVDictionary *opts = NULL;
    if (!gif && strcmp(fmtname, "matroska")) av_dict_set(&opts, "movflags", "+faststart", 0); /* index first */
    if ((e = avio_open(&w.oc->pb, tmp, AVIO_FLAG_WRITE)) >= 0) e = avformat_write_header(w.oc, &opts);
    av_dict_free(&opts);
    if (e < 0) {
        ocd_fail("%s: cannot start writing (%s)", path, av_why(e, why, sizeof why));
        goto done;
    }
    w.header_written = 1;
    w.frame->format = w.enc->pix_fmt;
    w.frame->width = ew;
    w.frame->height = eh;
    if ((e = av_frame_get_buffer(w.frame, 0)) < 0) {
        ocd_fail("out of memory writing %s", path);
        goto done;
    }
    uint8_t pal[256][3];
    int ncol = 0;
    if (gif) {
        if (!(w.lut = ocd_calloc(QBINS, 1)) || gif_palette(v, pal, &ncol, w.lut)) goto done;
    } else {
        w.sws = sws_getContext(ew, eh, AV_PIX_FMT_RGB24, ew, eh, AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND,
                               NULL, NULL, NULL);
        if (!w.sws || ((ew != v->w || eh != v->h) && !(w.pad = ocd_malloc((size_t)ew * eh * 3)))) {
            if (!w.sws) ocd_fail("%s: cannot set up RGB->YUV conversion", path);
            goto done;
        }
    }
    for (int i = 0; i < v->n; i++) {
        const uint8_t *rgb = v->frames[i];
        if (!rgb) {
            ocd_fail("%s: frame %d of %d is missing", path, i, v->n);
            goto done;
        }
        if ((e = av_frame_make_writable(w.frame)) < 0) {
            ocd_fail("out of memory writing %s", path);
            goto done;
        }
        if (gif) {
            uint32_t *fp = (uint32_t *)w.frame->data[1];
            for (int c = 0; c < 256; c++)
                fp[c] = c < ncol ? 0xFF000000u | (uint32_t)pal[c][0] << 16 | (uint32_t)pal[c][1] << 8 | pal[c][2] : 0xFF000000u;
            const int sh = 8 - QBITS;
            for (int y = 0; y < v->h; y++) {
                const uint8_t *p = rgb + (size_t)y * v->w * 3;
                uint8_t *d = w.frame->data[0] + (size_t)y * w.frame->linesize[0];
                for (int x = 0; x < v->w; x++, p += 3)
                    d[x] = w.lut[(uint32_t)(p[0] >> sh) << (2 * QBITS) | (uint32_t)(p[1] >> sh) << QBITS | (p[2] >> sh)];
            }
            w.frame->pts = gif_pts(fps, i);
        } else {
            if (w.pad) { /* copy, then repeat the last column and row */
                for (int y = 0; y < eh; y++) {
                    const uint8_t *s = rgb + (size_t)(y < v->h ? y : v->h - 1) * v->w * 3;
                    uint8_t *d = w.pad + (size_t)y * ew * 3;
                    memcpy(d, s, (size_t)v->w * 3);
                    if (ew > v->w) memcpy(d + (size_t)v->w * 3, s + (size_t)(v->w - 1) * 3, 3);
                }
                rgb = w.pad;
            }
            const uint8_t *src[4] = {rgb, NULL, NULL, NULL};
            int ls[4] = {ew * 3, 0, 0, 0};
            sws_scale(w.sws, src, ls, 0, eh, w.frame->data, w.frame->linesize);
            w.frame->pts = i;
        }
        if (writer_flush(&w, w.frame)) goto done;
    }
    if (writer_flush(&w, NULL)) goto done;
    w.header_written = 0;
    if ((e = av_write_trailer(w.oc)) < 0) {
        ocd_fail("%s: finishing the file failed (%s)", path, av_why(e, why, sizeof why));
        goto done;
    }
    if ((e = avio_closep(&w.oc->pb)) < 0) {
        ocd_fail("%s: writing failed (%s)", path, av_why(e, why, sizeof why));
        goto done;
    }
    r = 0;
done:
    writer_close(&w);
    return r;
}

/* ---------------------------------------------------------------- writing: PNG folders */

static int is_own_frame(const char *s) { /* "NNNNN.png" as written below */
    int i = 0;
    while (s[i] >= '0' && s[i] <= '9') i++;
    return i >= 5 && strcmp(s + i, ".png") == 0;
}

/* Removes a folder that holds only frames of an earlier run; anything else is kept. */
static int remove_old_frames(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return ocd_fail("%s: exists and cannot be opened: %s", dir, strerror(errno));
    struct dirent *e;
    int foreign = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !is_own_frame(e->d_name)) foreign = 1;
    if (foreign) {
        closedir(d);
        return ocd_fail("%s: folder exists and holds other files than NNNNN.png frames; not replacing it", dir);
    }
    rewinddir(d);
    char f[4096 + 512];
    while ((e = readdir(d)))
        if (is_own_frame(e->d_name)) {
            snprintf(f, sizeof f, "%s/%s", dir, e->d_name);
            unlink(f);
        }
    closedir(d);
    if (rmdir(dir) != 0) return ocd_fail("%s: cannot replace the existing folder: %s", dir, strerror(errno));
    return 0;
}

static int write_folder(const char *path, const ocd_video *v) {
    char dir[4096], tmp[4200], f[4300];
    size_t L = strlen(path);
    while (L > 1 && path[L - 1] == '/') L--;
    if (L >= sizeof dir) return ocd_fail("%s: path too long", path);
    memcpy(dir, path, L);
    dir[L] = 0;
    const char *slash = strrchr(dir, '/');
    if (slash) snprintf(tmp, sizeof tmp, "%.*s/.%s.XXXXXX", (int)(slash - dir), dir, slash + 1);
    else snprintf(tmp, sizeof tmp, ".%s.XXXXXX", dir);
    if (!mkdtemp(tmp)) return ocd_fail("%s: cannot create a folder there: %s", dir, strerror(errno));
    chmod(tmp, 0755);
    int written = 0;
    for (; written < v->n; written++) {
        if (!v->frames[written]) {
            ocd_fail("%s: frame %d of %d is missing", dir, written, v->n);
            goto fail;
        }
        snprintf(f, sizeof f, "%s/%05d.png", tmp, written);
        if (image_write_rgb(f, v->frames[written], v->w, v->h)) goto fail;
    }
    struct stat sb;
    if (lstat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) {
            ocd_fail("%s: exists and is not a folder", dir);
            goto fail;
        }
        if (remove_old_frames(dir)) goto fail;
    }
    if (rename(tmp, dir) != 0) {
        ocd_fail("%s: cannot move the finished frames into place: %s", dir, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    for (int i = 0; i < written; i++) {
        snprintf(f, sizeof f, "%s/%05d.png", tmp, i);
        unlink(f);
    }
    rmdir(tmp);
    return -1;
}

/* The output kind a name asks for: 0 folder, 1 mp4/mov/mkv, 2 gif; -1 (error set) otherwise. */
static int output_kind(const char *path) {
    if (!path || !*path) return ocd_fail("video_write: empty output path");
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *ext = strrchr(base, '.');
    if (!*base || !ext) return 0;
    if (!strcasecmp(ext, ".gif")) return 2;
    if (!strcasecmp(ext, ".mp4") || !strcasecmp(ext, ".mov") || !strcasecmp(ext, ".mkv")) return 1;
    return ocd_fail("%s: unsupported video output type '%s' (use .mp4, .mov, .mkv, .gif or a folder name)", path, ext);
}

int video_check_output(const char *path) { return output_kind(path) < 0 ? -1 : 0; }

int video_write(const char *path, const ocd_video *v, double fps) {
    const int kind = output_kind(path);
    if (kind < 0) return -1;
    if (!v || v->n <= 0 || v->w <= 0 || v->h <= 0 || !v->frames)
        return ocd_fail("%s: nothing to write (empty video)", path);
    if (!(fps > 0)) fps = v->fps > 0 ? v->fps : 10.0;
    if (kind == 0) return write_folder(path, v);
    const int gif = kind == 2;
    av_quiet();
    size_t cap = strlen(path) + 16;
    char *tmp = ocd_malloc(cap);
    if (!tmp) return -1;
    int fd = ocd_tmp_beside(path, tmp, (int)cap);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    close(fd); /* FFmpeg reopens it by name */
    int r = encode_video(path, tmp, v, fps, gif);
    if (r == 0) r = ocd_commit_tmp(tmp, path);
    else unlink(tmp);
    free(tmp);
    return r;
}

/* ---------------------------------------------------------------- grids, preprocessing */

int video_grid(const ocd_video *const *vs, int count, int cols, ocd_video *out) {
    memset(out, 0, sizeof *out);
    if (count <= 0 || !vs) return ocd_fail("video_grid: no videos");
    if (cols <= 0) cols = (int)ceil(sqrt((double)count));
    if (cols > count) cols = count;
    int n = vs[0]->n, cw = 0, ch = 0;
    for (int k = 0; k < count; k++) {
        if (vs[k]->n != n)
            return ocd_fail("video_grid: clip %d has %d frames but clip 0 has %d", k, vs[k]->n, n);
        cw = vs[k]->w > cw ? vs[k]->w : cw;
        ch = vs[k]->h > ch ? vs[k]->h : ch;
    }
    int rows = (count + cols - 1) / cols;
    if (video_alloc(out, n, cols * cw, rows * ch)) return -1;
    for (int k = 0; k < count; k++) {
        const ocd_video *v = vs[k];
        int x0 = (k % cols) * cw + (cw - v->w) / 2, y0 = (k / cols) * ch + (ch - v->h) / 2;
        for (int i = 0; i < n; i++)
            for (int y = 0; y < v->h; y++)
                memcpy(out->frames[i] + ((size_t)(y0 + y) * out->w + x0) * 3, v->frames[i] + (size_t)y * v->w * 3,
                       (size_t)v->w * 3);
    }
    out->fps = vs[0]->fps;
    return 0;
}

int video_side_by_side(const ocd_video *a, const ocd_video *b, ocd_video *out) {
    const ocd_video *vs[2] = {a, b};
    return video_grid(vs, 2, 2, out);
}

float *video_preprocess(const ocd_video *v, int size) {
    size_t per = (size_t)3 * size * size;
    float *out = ocd_malloc(sizeof(float) * per * (size_t)(v->n > 0 ? v->n : 1)); /* [n, 3, size, size] */
    float *x = ocd_malloc(sizeof(float) * 3 * (size_t)v->w * v->h);                /* [3, h, w] */
    if (!out || !x) goto fail;
    for (int i = 0; i < v->n; i++) {
        image_to_f32(v->frames[i], v->w, v->h, x);
        float *c = resize_short_center_crop(x, 3, v->h, v->w, size);
        if (!c) goto fail;
        memcpy(out + per * i, c, sizeof(float) * per);
        free(c);
    }
    free(x);
    return out;
fail:
    free(out);
    free(x);
    return NULL;
}

/* safetensors reader: valid files round-trip; every malformed header is one clear error,
 * never a crash; a random-mutation fuzz loop over a real header stays safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/rng.h"
#include "io/safetensors.h"
#include "testlib.h"

/* A file image with the given JSON header and `data_len` bytes of data. */
static uint8_t *make_file(const char *header, size_t data_len, size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

static int expect_error(const char *label, const uint8_t *buf, size_t len, const char *must_contain) {
    ocd_clear_error();
    st_file *f = st_open_memory(buf, len, label);
    if (f) { st_close(f); return t_check(0, label, "was accepted"); }
    const char *msg = ocd_last_error();
    int ok = strlen(msg) > 10 && !strchr(msg, '\n') && (!must_contain || strstr(msg, must_contain));
    return t_check(ok, label, "-> %s", msg);
}

static void malformed_headers(void) {
    static const struct { const char *label, *header; size_t data; const char *needle; } cases[] = {
        {"not json", "{this is not json", 0, "JSON"},
        {"no brace", "this is not json", 0, "{"},
        {"json array", "[1, 2, 3]", 0, NULL},
        {"truncated json", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]", 0, "JSON"},
        {"duplicate key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, NULL},
        {"entry not object", "{\"a\": 5}", 0, "not an object"},
        {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype"},
        {"dtype not string", "{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
        {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape"},
        {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape"},
        {"nine dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dims"},
        {"overflowing dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "large"},
        {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
        {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "data_offsets"},
        {"string offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 4, "data_offsets"},
        {"reversed offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "outside"},
        {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "outside"},
        {"offset past end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "outside"},
        {"size lies", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs"},
        {"dtype size lies", "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "needs"},
        {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
        {"identical ranges", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlap"},
        {"metadata not object", "{\"__metadata__\": [1]}", 0, "__metadata__"},
        {"metadata value not string", "{\"__metadata__\": {\"a\": 1}}", 0, "__metadata__"},
        {"empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty"},
        {"nul inside header", "{\"a\":\0}", 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *b = make_file(cases[i].header, cases[i].data, &len);
        char label[96];
        snprintf(label, sizeof label, "malformed: %s", cases[i].label);
        expect_error(label, b, len, cases[i].needle);
        free(b);
    }
    /* invalid UTF-8 inside a JSON string */
    {
        size_t len;
        uint8_t *b = make_file("{\"a\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &len);
        expect_error("malformed: invalid UTF-8 name", b, len, NULL);
        free(b);
    }
    /* length field problems */
    uint8_t small[7] = {0};
    expect_error("malformed: 7-byte file", small, sizeof small, "too short");
    expect_error("malformed: empty file", small, 0, "too short");
    size_t len;
    uint8_t *b = make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &len);
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    c[0] = 0xff; c[1] = 0xff; c[2] = 0xff;
    expect_error("malformed: header longer than file", c, len, "truncated");
    memset(c, 0xff, 8);
    expect_error("malformed: absurd header length", c, len, "limit");
    memcpy(c, b, len);
    memset(c, 0, 8);
    expect_error("malformed: zero header length", c, len, NULL);
    expect_error("malformed: file truncated in data", b, len - 2, "outside");
    expect_error("malformed: file truncated in header", b, 20, "truncated");
    free(c);
    free(b);
}

static void roundtrip(void) {
    char path[] = "/tmp/ocd_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    st_writer *w = st_writer_new();
    float x[6] = {1, -2, 3.5f, 0, 1e-8f, 65504};
    int32_t ids[3] = {49406, 7, 49407};
    st_writer_add_f32(w, "x", 2, (int64_t[]){2, 3}, x);
    st_writer_add(w, "ids", ST_I32, 1, (int64_t[]){3}, ids);
    uint16_t h[2] = {0x3c00, 0xc000}; /* 1.0, -2.0 in F16 */
    uint16_t bf[2] = {0x3f80, 0x4040}; /* 1.0, 3.0 in BF16 */
    st_writer_add(w, "h", ST_F16, 1, (int64_t[]){2}, h);
    st_writer_add(w, "bf", ST_BF16, 1, (int64_t[]){2}, bf);
    st_writer_meta(w, "note", "hello");
    int ok = st_writer_save(w, path) == 0;
    st_writer_free(w);
    st_file *f = ok ? st_open(path) : NULL;
    t_check(f != NULL, "roundtrip: write + open", "%s", f ? path : ocd_last_error());
    if (f) {
        float y[6], hh[2], bb[2];
        int32_t ii[3];
        st_read_f32(st_find(f, "x"), y);
        st_read_i32(st_find(f, "ids"), ii);
        st_read_f32(st_find(f, "h"), hh);
        st_read_f32(st_find(f, "bf"), bb);
        t_check(!memcmp(x, y, sizeof x) && !memcmp(ids, ii, sizeof ids) && hh[0] == 1 && hh[1] == -2 && bb[0] == 1 &&
                    bb[1] == 3 && st_metadata(f, "note") && !strcmp(st_metadata(f, "note"), "hello"),
                "roundtrip: values F32/I32/F16/BF16 + metadata", "ok");
        t_check(st_read_f32(st_find(f, "ids"), y) != 0, "roundtrip: ints are not floats", "%s", ocd_last_error());
        st_close(f);
    }
    /* a failed save leaves nothing behind */
    w = st_writer_new();
    st_writer_add_f32(w, "x", 1, (int64_t[]){1}, x);
    int bad = st_writer_save(w, "/nonexistent-dir/out.safetensors");
    st_writer_free(w);
    t_check(bad != 0, "writer: unwritable path is an error", "%s", ocd_last_error());
    unlink(path);
    ocd_clear_error();
    t_check(st_open("/nonexistent/file.safetensors") == NULL && strstr(ocd_last_error(), "cannot open"),
            "open: missing file", "%s", ocd_last_error());
}

/* Random byte mutations of a real header: any outcome but a crash is fine; count both. */
static void fuzz(void) {
    size_t len;
    char *buf = NULL;
    FILE *fp = fopen(GOLDEN_DIR "/unet_b1.safetensors", "rb");
    if (!fp) { t_check(0, "fuzz: read golden", "missing"); return; }
    fseek(fp, 0, SEEK_END);
    len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc(len);
    if (fread(buf, 1, len, fp) != len) len = 0;
    fclose(fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)buf[i];
    uint8_t *m = malloc(len);
    int n_ok = 0, n_err = 0, iters = t_quick() ? 300 : 3000;
    for (int it = 0; it < iters; it++) {
        memcpy(m, buf, len);
        int32_t r[8];
        rng_uniform_int(42, (uint64_t)it, (uint32_t)(hl + 8), r, 8);
        int nmut = 1 + (r[0] & 3);
        for (int k = 0; k < nmut; k++) m[r[1 + k]] = (uint8_t)(r[5 + (k & 1)] * 2654435761u >> 24);
        size_t cut = (it % 7 == 0) ? (size_t)r[7] % len : len; /* sometimes truncate too */
        st_file *f = st_open_memory(m, cut, "fuzz");
        if (f) {
            /* whatever parsed must be readable without touching memory outside the file */
            for (int i = 0; i < st_count(f); i++) {
                const st_tensor *t = st_at(f, i);
                volatile uint8_t s = 0;
                for (size_t j = 0; j < t->nbytes; j++) s ^= ((const uint8_t *)t->data)[j];
                (void)s;
            }
            st_close(f);
            n_ok++;
        } else n_err++;
    }
    t_check(n_err > 0, "fuzz: mutated headers", "%d mutations: %d still valid, %d rejected with an error, no crash",
            iters, n_ok, n_err);
    free(m);
    free(buf);
}

int main(int argc, char **argv) {
    (void)argc;
    malformed_headers();
    roundtrip();
    fuzz();
    return t_summary(argv[0]);
}

/* safetensors reader (mmap, every header field checked) and atomic writer. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

/* Real checkpoints have headers of a few hundred KiB; 100 MiB is the reference
 * implementation's limit too. */
#define ST_MAX_HEADER (100u << 20)
#define ST_MAX_TENSORS 1000000

typedef struct {
    char *key;
    char *value;
} st_meta;

struct st_file {
    char *path;
    const uint8_t *map; /* whole file */
    size_t map_len;
    int owns_map;
    int n;
    st_tensor *t;       /* [n], sorted by name for st_find */
    char *names;        /* storage for all names */
    int n_meta;
    st_meta *meta;
};

static const struct { const char *name; size_t size; } k_dtypes[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2},  [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};

size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? k_dtypes[t].size : 0; }
const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? k_dtypes[t].name : "?"; }

static int parse_dtype(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, k_dtypes[i].name) == 0) { *out = (st_dtype)i; return 0; }
    return -1;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* Parses and validates the header; fills f->t / f->meta. `data` is the data section. */
static int parse_header(st_file *f, const char *hdr, size_t hdr_len, const uint8_t *data, size_t data_len) {
    json_error_t jerr;
    json_t *root = json_loadb(hdr, hdr_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return ocd_fail("invalid JSON header (%s at offset %d)", jerr.text, jerr.position);
    int rc = -1;
    if (!json_is_object(root)) { ocd_fail("header is not a JSON object"); goto done; }
    size_t count = json_object_size(root);
    if (count > ST_MAX_TENSORS) { ocd_fail("header lists %zu entries (limit %d)", count, ST_MAX_TENSORS); goto done; }

    size_t names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) names_len += strlen(key) + 1;
    f->t = calloc(count ? count : 1, sizeof *f->t);
    f->names = malloc(names_len ? names_len : 1);
    if (!f->t || !f->names) { ocd_fail("out of memory reading header"); goto done; }

    char *np = f->names;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) { ocd_fail("__metadata__ is not an object"); goto done; }
            size_t m = json_object_size(val);
            f->meta = calloc(m ? m : 1, sizeof *f->meta);
            if (!f->meta) { ocd_fail("out of memory"); goto done; }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) { ocd_fail("__metadata__[\"%.64s\"] is not a string", mk); goto done; }
                f->meta[f->n_meta].key = strdup(mk);
                f->meta[f->n_meta].value = strdup(json_string_value(mv));
                if (!f->meta[f->n_meta].key || !f->meta[f->n_meta].value) { ocd_fail("out of memory"); goto done; }
                f->n_meta++;
            }
            continue;
        }
        if (key[0] == 0) { ocd_fail("tensor with an empty name"); goto done; }
        if (!json_is_object(val)) { ocd_fail("tensor \"%.64s\": entry is not an object", key); goto done; }
        st_tensor *t = &f->t[f->n];
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd) || parse_dtype(json_string_value(jd), &t->dtype)) {
            ocd_fail("tensor \"%.64s\": unknown or missing dtype %.16s", key,
                     json_is_string(jd) ? json_string_value(jd) : "(none)");
            goto done;
        }
        if (!json_is_array(js) || json_array_size(js) > ST_MAX_DIMS) {
            ocd_fail("tensor \"%.64s\": shape missing or has more than %d dims", key, ST_MAX_DIMS);
            goto done;
        }
        t->ndim = (int)json_array_size(js);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            json_t *e = json_array_get(js, d);
            if (!json_is_integer(e) || json_integer_value(e) < 0) {
                ocd_fail("tensor \"%.64s\": shape entry %d is not a non-negative integer", key, d);
                goto done;
            }
            t->shape[d] = json_integer_value(e);
            if (t->shape[d] > 0 && numel > (INT64_C(1) << 50) / t->shape[d]) {
                ocd_fail("tensor \"%.64s\": shape too large", key);
                goto done;
            }
            numel *= t->shape[d];
        }
        t->numel = numel;
        if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
            !json_is_integer(json_array_get(jo, 1))) {
            ocd_fail("tensor \"%.64s\": data_offsets must be [begin, end]", key);
            goto done;
        }
        json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
        if (b < 0 || e < b || (uint64_t)e > data_len) {
            ocd_fail("tensor \"%.64s\": data_offsets [%lld, %lld] outside the %zu-byte data section", key,
                     (long long)b, (long long)e, data_len);
            goto done;
        }
        uint64_t want = (uint64_t)numel * st_dtype_size(t->dtype);
        if ((uint64_t)(e - b) != want) {
            ocd_fail("tensor \"%.64s\": %lld bytes stored but shape x %s needs %llu", key, (long long)(e - b),
                     st_dtype_name(t->dtype), (unsigned long long)want);
            goto done;
        }
        t->data = data + b;
        t->nbytes = (size_t)(e - b);
        size_t kl = strlen(key) + 1;
        memcpy(np, key, kl);
        t->name = np;
        np += kl;
        f->n++;
    }

    /* No two tensors may share bytes (a lying header could alias weights). */
    st_tensor **byoff = malloc((f->n ? f->n : 1) * sizeof *byoff);
    if (!byoff) { ocd_fail("out of memory"); goto done; }
    for (int i = 0; i < f->n; i++) byoff[i] = &f->t[i];
    qsort(byoff, f->n, sizeof *byoff, cmp_tensor_offset);
    for (int i = 1; i < f->n; i++) {
        const st_tensor *p = byoff[i - 1], *q = byoff[i];
        if (p->nbytes && q->nbytes && (const uint8_t *)p->data + p->nbytes > (const uint8_t *)q->data) {
            ocd_fail("tensors \"%.64s\" and \"%.64s\" overlap in the data section", p->name, q->name);
            free(byoff);
            goto done;
        }
    }
    free(byoff);
    qsort(f->t, f->n, sizeof *f->t, cmp_tensor_name);
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static st_file *open_buffer(st_file *f, const uint8_t *buf, size_t len) {
    if (len < 8) { ocd_fail("%s: file too short (%zu bytes) for a safetensors header", f->path, len); goto fail; }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > ST_MAX_HEADER) { ocd_fail("%s: header length %llu exceeds the %u-byte limit", f->path, (unsigned long long)n, ST_MAX_HEADER); goto fail; }
    if (n < 2 || n > len - 8) {
        ocd_fail("%s: header length %llu does not fit in the %zu-byte file (truncated?)", f->path, (unsigned long long)n, len);
        goto fail;
    }
    if (buf[8] != '{') { ocd_fail("%s: header does not start with '{'", f->path); goto fail; }
    if (parse_header(f, (const char *)buf + 8, (size_t)n, buf + 8 + n, len - 8 - (size_t)n)) {
        ocd_fail_context("%s", f->path);
        goto fail;
    }
    return f;
fail:
    st_close(f);
    return NULL;
}

st_file *st_open_memory(const void *buf, size_t len, const char *label) {
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(label ? label : "(memory)"))) { free(f); ocd_fail("out of memory"); return NULL; }
    f->map = buf;
    f->map_len = len;
    return open_buffer(f, buf, len);
}

st_file *st_open(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { ocd_fail("%s: cannot open (%s)", path, strerror(errno)); return NULL; }
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        ocd_fail("%s: not a regular file", path);
        return NULL;
    }
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) { close(fd); free(f); ocd_fail("out of memory"); return NULL; }
    size_t len = (size_t)sb.st_size;
    if (len > 0) {
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            ocd_fail("%s: mmap failed (%s)", path, strerror(errno));
            st_close(f);
            return NULL;
        }
        f->map = m;
        f->map_len = len;
        f->owns_map = 1;
    }
    close(fd);
    return open_buffer(f, f->map, len);
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->owns_map && f->map) munmap((void *)f->map, f->map_len);
    for (int i = 0; i < f->n_meta; i++) { free(f->meta[i].key); free(f->meta[i].value); }
    free(f->meta);
    free(f->t);
    free(f->names);
    free(f->path);
    free(f);
}

int st_count(const st_file *f) { return f->n; }
const st_tensor *st_at(const st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }
const char *st_path(const st_file *f) { return f->path; }

const st_tensor *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(name, f->t[mid].name);
        if (!c) return &f->t[mid];
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

/* ---- conversion ---- */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | man << 13;
    else bits = sign | (exp + 112) << 23 | man << 13;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

int st_read_f32(const st_tensor *t, float *dst) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32: memcpy(dst, p, t->nbytes); return 0;
    case ST_F16:
        for (int64_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = half_to_float(h);
        }
        return 0;
    case ST_BF16:
        for (int64_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return 0;
    case ST_F64:
        for (int64_t i = 0; i < t->numel; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default: return ocd_fail("tensor \"%s\" has dtype %s, expected a float type", t->name, st_dtype_name(t->dtype));
    }
}

float *st_to_f32(const st_tensor *t) {
    float *p = ocd_malloc((size_t)t->numel * sizeof(float));
    if (p && st_read_f32(t, p)) { free(p); return NULL; }
    return p;
}

int st_read_i32(const st_tensor *t, int32_t *dst) {
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v;
        switch (t->dtype) {
        case ST_I64: { int64_t x; memcpy(&x, p + 8 * i, 8); v = x; break; }
        case ST_I32: { int32_t x; memcpy(&x, p + 4 * i, 4); v = x; break; }
        case ST_I16: { int16_t x; memcpy(&x, p + 2 * i, 2); v = x; break; }
        case ST_I8: v = (int8_t)p[i]; break;
        case ST_U8: case ST_BOOL: v = p[i]; break;
        case ST_F32: {
            float x;
            memcpy(&x, p + 4 * i, 4);
            if (!(x == (float)(int64_t)x)) return ocd_fail("tensor \"%s\" holds the non-integer %g", t->name, x);
            v = (int64_t)x;
            break;
        }
        default: return ocd_fail("tensor \"%s\" has dtype %s, expected integers", t->name, st_dtype_name(t->dtype));
        }
        if (v < INT32_MIN || v > INT32_MAX) return ocd_fail("tensor \"%s\": value %lld out of int32 range", t->name, (long long)v);
        dst[i] = (int32_t)v;
    }
    return 0;
}

float *st_get_f32(const st_file *f, const char *name, int ndim, const int64_t *shape) {
    const st_tensor *t = st_find(f, name);
    if (!t) { ocd_fail("%s: missing tensor \"%s\"", f->path, name); return NULL; }
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = shape[d] < 0 || shape[d] == t->shape[d];
    if (!ok) { ocd_fail("%s: tensor \"%s\" has an unexpected shape (%d dims)", f->path, name, t->ndim); return NULL; }
    return st_to_f32(t);
}

/* ---- writer ---- */

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    void *data;
    size_t nbytes;
} st_wtensor;

struct st_writer {
    int n, cap;
    st_wtensor *t;
    json_t *meta;
};

st_writer *st_writer_new(void) {
    st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->meta = json_object())) { free(w); ocd_fail("out of memory"); return NULL; }
    return w;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    if (ndim < 0 || ndim > ST_MAX_DIMS) return ocd_fail("st_writer_add: %d dims", ndim);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        st_wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return ocd_fail("out of memory");
        w->t = t;
        w->cap = cap;
    }
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) { t->shape[d] = shape[d]; numel *= (size_t)shape[d]; }
    t->ndim = ndim;
    t->dtype = dtype;
    t->nbytes = numel * st_dtype_size(dtype);
    t->name = strdup(name);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->name || !t->data) { free(t->name); free(t->data); return ocd_fail("out of memory"); }
    memcpy(t->data, data, t->nbytes);
    w->n++;
    return 0;
}

int st_writer_add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data) {
    return st_writer_add(w, name, ST_F32, ndim, shape, data);
}

int st_writer_meta(st_writer *w, const char *key, const char *value) {
    return json_object_set_new(w->meta, key, json_string(value)) ? ocd_fail("bad metadata value") : 0;
}

int st_writer_save(st_writer *w, const char *path) {
    json_t *root = json_object();
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        st_wtensor *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(root, t->name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype_name(t->dtype), "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes)));
        off += t->nbytes;
    }
    if (json_object_size(w->meta)) json_object_set(root, "__metadata__", w->meta);
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) return ocd_fail("out of memory");
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) { free(hdr); return ocd_fail("%s: cannot create (%s)", path, strerror(errno)); }
    FILE *fp = fdopen(fd, "wb");
    int ok = fp != NULL;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    ok = ok && fwrite(len8, 1, 8, fp) == 8 && fwrite(hdr, 1, hl, fp) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < w->n; i++) ok = fwrite(w->t[i].data, 1, w->t[i].nbytes, fp) == w->t[i].nbytes;
    free(hdr);
    if (fp) ok = (fclose(fp) == 0) && ok;
    else close(fd);
    if (!ok || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return ocd_fail("%s: write failed (%s)", path, strerror(e));
    }
    return 0;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) { free(w->t[i].name); free(w->t[i].data); }
    free(w->t);
    json_decref(w->meta);
    free(w);
}

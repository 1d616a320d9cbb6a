/* CLIP BPE tokenizer: vocabulary tables, the CLIP regex pre-split, greedy BPE by
 * merge rank, SD-1.x framing, and prompt-to-prompt's word -> token positions.
 * Symbols are vocabulary ids throughout: merging the pair (a, b) yields the id of
 * the string a+b, which is what the string-based Python code computes, because
 * the vocabulary maps each string to one id. */
#include "nn/tokenizer.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "nn/text_normalize.h"

#define MAX_MERGES (49152 - 256 - 2) /* what CLIP and HF read from merges.txt */
#define MAX_VOCAB (1 << 22)

/* The embedded data/clip/merges.txt (nn/clip_merges.c). */
extern const char ocd_clip_merges[], ocd_clip_merges_end[];

struct ocd_tokenizer {
    int n_vocab;           /* ids 0..n_vocab-1 */
    char *strs;            /* all token strings, each NUL-terminated */
    int64_t *str_off;      /* [n_vocab] offset into strs, -1 for an unused id */
    int32_t *str_len;      /* [n_vocab] byte length */
    int32_t *smap;         /* [smask+1] open-addressing table string -> id, -1 = empty */
    uint32_t smask;
    uint64_t *pkey;        /* [pmask+1] merge pair (a << 32 | b) + 1, 0 = empty */
    int32_t *prank;        /* [pmask+1] merge rank (line order) */
    int32_t *pres;         /* [pmask+1] id of the merged symbol */
    uint32_t pmask;
    int n_merges;
    int32_t byte_id[256];  /* id of the byte's symbol */
    int32_t byte_id_w[256];/* id of the byte's symbol + "</w>" (word end) */
    int16_t byte_of_cp[324];/* byte-level code point -> byte (decoding), -1 if none */
    int32_t bos, eos;
};

/* ---------------------------------------------------------------- byte <-> unicode */

/* GPT-2's bytes_to_unicode (F.2): printable bytes keep their code point, the other
 * 68 get 256, 257, ... in byte order. order[i] = the byte with base id i. */
static void bytes_to_unicode(uint32_t cp_of_byte[256], int order[256]) {
    int k = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable) { cp_of_byte[b] = (uint32_t)b; order[k++] = b; }
    }
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (!printable) { cp_of_byte[b] = 256 + (uint32_t)extra++; order[k++] = b; }
    }
}

static int put_utf8(uint32_t c, char *o) {
    unsigned char *u = (unsigned char *)o;
    if (c < 0x80) { u[0] = (unsigned char)c; return 1; }
    if (c < 0x800) { u[0] = (unsigned char)(0xC0 | (c >> 6)); u[1] = (unsigned char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (c >> 12)); u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | (c >> 18)); u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)); u[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------- hash tables */

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 0x100000001b3ULL; }
    return h;
}
#define FNV0 0xcbf29ce484222325ULL

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

static uint32_t table_mask(size_t n) {
    uint32_t cap = 64;
    while (cap < 2 * n) cap *= 2;
    return cap - 1;
}

/* id of the string a+b (b may be empty), -1 if absent. */
static int32_t lookup2(const ocd_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    uint32_t i = (uint32_t)fnv(fnv(FNV0, a, na), b, nb) & t->smask;
    for (;; i = (i + 1) & t->smask) {
        int32_t id = t->smap[i];
        if (id < 0) return -1;
        const char *s = t->strs + t->str_off[id];
        if ((size_t)t->str_len[id] == na + nb && !memcmp(s, a, na) && !memcmp(s + na, b, nb)) return id;
    }
}

static int32_t lookup(const ocd_tokenizer *t, const char *s) { return lookup2(t, s, strlen(s), "", 0); }

/* Inserts id under its string; a string seen before now maps to the later id
 * (Python's dict(zip(vocab, range(n))) keeps the last one). */
static void smap_insert(ocd_tokenizer *t, int32_t id) {
    const char *s = t->strs + t->str_off[id];
    size_t n = (size_t)t->str_len[id];
    uint32_t i = (uint32_t)fnv(FNV0, s, n) & t->smask;
    for (;; i = (i + 1) & t->smask) {
        int32_t o = t->smap[i];
        if (o < 0 || ((size_t)t->str_len[o] == n && !memcmp(t->strs + t->str_off[o], s, n))) {
            t->smap[i] = id;
            return;
        }
    }
}

static uint32_t pair_slot(const ocd_tokenizer *t, uint64_t key) {
    uint32_t i = (uint32_t)mix64(key) & t->pmask;
    while (t->pkey[i] && t->pkey[i] != key) i = (i + 1) & t->pmask;
    return i;
}

/* Rank of merging (a, b) and the merged id; INT_MAX if not a merge. */
static int32_t pair_rank(const ocd_tokenizer *t, int32_t a, int32_t b, int32_t *res) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = pair_slot(t, key);
    if (!t->pkey[i]) return INT32_MAX;
    *res = t->pres[i];
    return t->prank[i];
}

/* ---------------------------------------------------------------- construction */

typedef struct {
    const char *a, *b;  /* into the merges text */
    int na, nb;
} merge_t;

/* Splits merges.txt into at most MAX_MERGES pairs, skipping line 0 ("#version: 0.2")
 * like CLIP and HF do. *m is malloc'd. */
static int parse_merges(const char *txt, size_t len, merge_t **m, int *n) {
    *m = ocd_malloc(MAX_MERGES * sizeof **m);
    if (!*m) return -1;
    *n = 0;
    size_t i = 0;
    while (i < len && txt[i] != '\n') i++; /* header line */
    int line = 1;
    while (i < len && *n < MAX_MERGES) {
        i++; /* past '\n' */
        line++;
        size_t e = i;
        while (e < len && txt[e] != '\n') e++;
        /* whitespace-split the line [i, e) into exactly two fields */
        const char *f[3];
        int fl[3], nf = 0;
        for (size_t k = i; k < e;) {
            while (k < e && (txt[k] == ' ' || txt[k] == '\t' || txt[k] == '\r')) k++;
            if (k >= e) break;
            size_t s = k;
            while (k < e && txt[k] != ' ' && txt[k] != '\t' && txt[k] != '\r') k++;
            if (nf < 3) { f[nf] = txt + s; fl[nf] = (int)(k - s); }
            nf++;
        }
        if (nf == 0 && e >= len) break; /* trailing newline */
        if (nf != 2) {
            free(*m);
            *m = NULL;
            return ocd_fail("merges.txt line %d: expected two symbols, got %d", line, nf);
        }
        (*m)[*n] = (merge_t){f[0], f[1], fl[0], fl[1]};
        (*n)++;
        i = e;
    }
    return 0;
}

/* Appends string (a + b) for id into the string store. */
typedef struct {
    char *buf;
    size_t n, cap;
} strstore;

static int64_t store_add(strstore *s, const char *a, size_t na, const char *b, size_t nb) {
    if (s->n + na + nb + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 1 << 16;
        while (cap < s->n + na + nb + 1) cap *= 2;
        char *nbuf = realloc(s->buf, cap);
        if (!nbuf) return ocd_fail("out of memory building the tokenizer vocabulary");
        s->buf = nbuf;
        s->cap = cap;
    }
    int64_t off = (int64_t)s->n;
    memcpy(s->buf + s->n, a, na);
    memcpy(s->buf + s->n + na, b, nb);
    s->n += na + nb;
    s->buf[s->n++] = 0;
    return off;
}

static int alloc_vocab(ocd_tokenizer *t, int n_vocab) {
    t->n_vocab = n_vocab;
    t->str_off = ocd_malloc((size_t)n_vocab * sizeof *t->str_off);
    t->str_len = ocd_calloc((size_t)n_vocab, sizeof *t->str_len);
    if (!t->str_off || !t->str_len) return -1;
    for (int i = 0; i < n_vocab; i++) t->str_off[i] = -1;
    return 0;
}

static int set_token(ocd_tokenizer *t, strstore *st, int32_t id, const char *a, size_t na, const char *b, size_t nb) {
    int64_t off = store_add(st, a, na, b, nb);
    if (off < 0) return -1;
    t->str_off[id] = off;
    t->str_len[id] = (int32_t)(na + nb);
    return 0;
}

/* Vocabulary from the merges alone (F.2): 256 byte symbols, the same with "</w>",
 * one per merge, then <|startoftext|>, <|endoftext|>. */
static int vocab_from_merges(ocd_tokenizer *t, strstore *st, const merge_t *m, int nm) {
    uint32_t cp[256];
    int order[256];
    bytes_to_unicode(cp, order);
    if (alloc_vocab(t, 512 + nm + 2)) return -1;
    for (int i = 0; i < 256; i++) {
        char u[2];
        int l = put_utf8(cp[order[i]], u);
        if (set_token(t, st, i, u, (size_t)l, "", 0) || set_token(t, st, 256 + i, u, (size_t)l, "</w>", 4))
            return -1;
    }
    for (int r = 0; r < nm; r++)
        if (set_token(t, st, 512 + r, m[r].a, (size_t)m[r].na, m[r].b, (size_t)m[r].nb)) return -1;
    if (set_token(t, st, 512 + nm, "<|startoftext|>", 15, "", 0) ||
        set_token(t, st, 513 + nm, "<|endoftext|>", 13, "", 0))
        return -1;
    return 0;
}

static int vocab_from_json(ocd_tokenizer *t, strstore *st, const char *path) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) return ocd_fail("%s: line %d: %s", path, err.line, err.text);
    int rc = -1;
    if (!json_is_object(root)) { ocd_fail("%s: not a JSON object", path); goto done; }
    const char *key;
    json_t *val;
    json_int_t max_id = -1;
    json_object_foreach(root, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_VOCAB) {
            ocd_fail("%s: token \"%.40s\" has no valid id", path, key);
            goto done;
        }
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    if (max_id < 0) { ocd_fail("%s: empty vocabulary", path); goto done; }
    if (alloc_vocab(t, (int)max_id + 1)) goto done;
    json_object_foreach(root, key, val)
        if (set_token(t, st, (int32_t)json_integer_value(val), key, strlen(key), "", 0)) goto done;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* Everything after the id -> string table: string map, byte symbols, specials, merges. */
static int finish(ocd_tokenizer *t, const merge_t *m, int nm, const char *what) {
    t->smask = table_mask((size_t)t->n_vocab);
    t->smap = ocd_malloc(((size_t)t->smask + 1) * sizeof *t->smap);
    if (!t->smap) return -1;
    memset(t->smap, 0xff, ((size_t)t->smask + 1) * sizeof *t->smap);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->str_off[id] >= 0) smap_insert(t, id);

    uint32_t cp[256];
    int order[256];
    bytes_to_unicode(cp, order);
    for (int i = 0; i < 324; i++) t->byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) {
        char u[2];
        int l = put_utf8(cp[b], u);
        t->byte_of_cp[cp[b]] = (int16_t)b;
        t->byte_id[b] = lookup2(t, u, (size_t)l, "", 0);
        t->byte_id_w[b] = lookup2(t, u, (size_t)l, "</w>", 4);
        if (t->byte_id[b] < 0 || t->byte_id_w[b] < 0)
            return ocd_fail("%s: vocabulary lacks the symbol for byte 0x%02X", what, b);
    }
    t->bos = lookup(t, "<|startoftext|>");
    t->eos = lookup(t, "<|endoftext|>");
    if (t->bos < 0 || t->eos < 0) return ocd_fail("%s: vocabulary lacks <|startoftext|> / <|endoftext|>", what);

    t->pmask = table_mask((size_t)nm);
    size_t cap = (size_t)t->pmask + 1;
    t->pkey = ocd_calloc(cap, sizeof *t->pkey);
    t->prank = ocd_malloc(cap * sizeof *t->prank);
    t->pres = ocd_malloc(cap * sizeof *t->pres);
    if (!t->pkey || !t->prank || !t->pres) return -1;
    for (int r = 0; r < nm; r++) {
        int32_t a = lookup2(t, m[r].a, (size_t)m[r].na, "", 0);
        int32_t b = lookup2(t, m[r].b, (size_t)m[r].nb, "", 0);
        if (a < 0 || b < 0) continue; /* a symbol that can never occur: the merge never fires */
        int32_t res = lookup2(t, m[r].a, (size_t)m[r].na, m[r].b, (size_t)m[r].nb);
        if (res < 0)
            return ocd_fail("%s: merge %d \"%.*s %.*s\" gives a token missing from the vocabulary", what, r + 1,
                            m[r].na, m[r].a, m[r].nb, m[r].b);
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        uint32_t i = pair_slot(t, key);
        t->pkey[i] = key; /* a repeated pair keeps its last rank, like Python's dict */
        t->prank[i] = r;
        t->pres[i] = res;
    }
    t->n_merges = nm;
    return 0;
}

static ocd_tokenizer *build(const char *merges, size_t len, const char *vocab_json, const char *what) {
    ocd_tokenizer *t = ocd_calloc(1, sizeof *t);
    if (!t) return NULL;
    merge_t *m = NULL;
    int nm = 0;
    strstore st = {0};
    int rc = parse_merges(merges, len, &m, &nm);
    if (!rc) rc = vocab_json ? vocab_from_json(t, &st, vocab_json) : vocab_from_merges(t, &st, m, nm);
    t->strs = st.buf;
    if (!rc) rc = finish(t, m, nm, what);
    free(m);
    if (rc) {
        ocd_fail_context("tokenizer (%s)", what);
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

ocd_tokenizer *tokenizer_new_builtin(void) {
    return build(ocd_clip_merges, (size_t)(ocd_clip_merges_end - ocd_clip_merges), NULL, "built-in CLIP vocabulary");
}

ocd_tokenizer *tokenizer_load(const char *vocab_json_path, const char *merges_txt_path) {
    if (!vocab_json_path || !merges_txt_path) {
        ocd_fail("tokenizer_load: NULL path");
        return NULL;
    }
    size_t len;
    char *txt = ocd_read_file(merges_txt_path, &len);
    if (!txt) return NULL;
    ocd_tokenizer *t = build(txt, len, vocab_json_path, merges_txt_path);
    free(txt);
    return t;
}

ocd_tokenizer *tokenizer_for_model(const char *model_dir) {
    char v[4096], m[4096];
    if (model_dir && ocd_is_dir(model_dir)) {
        snprintf(v, sizeof v, "%s/tokenizer/vocab.json", model_dir);
        snprintf(m, sizeof m, "%s/tokenizer/merges.txt", model_dir);
        if (ocd_file_exists(v) && ocd_file_exists(m)) return tokenizer_load(v, m);
    }
    return tokenizer_new_builtin();
}

void tokenizer_free(ocd_tokenizer *t) {
    if (!t) return;
    free(t->strs);
    free(t->str_off);
    free(t->str_len);
    free(t->smap);
    free(t->pkey);
    free(t->prank);
    free(t->pres);
    free(t);
}

int tokenizer_vocab_size(const ocd_tokenizer *t) { return t->n_vocab; }

const char *tokenizer_token_str(const ocd_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab || t->str_off[id] < 0) return NULL;
    return t->strs + t->str_off[id];
}

int32_t tokenizer_token_id(const ocd_tokenizer *t, const char *token) { return lookup(t, token); }

int tokenizer_merge_rank(const ocd_tokenizer *t, const char *a, const char *b) {
    int32_t ia = lookup(t, a), ib = lookup(t, b), res;
    if (ia < 0 || ib < 0) return -1;
    int32_t r = pair_rank(t, ia, ib, &res);
    return r == INT32_MAX ? -1 : r;
}

/* ---------------------------------------------------------------- encoding */

typedef struct {
    int32_t *v;
    size_t n, cap;
} idvec;

static int iv_push(idvec *v, int32_t x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 128;
        int32_t *p = realloc(v->v, cap * sizeof *p);
        if (!p) return ocd_fail("out of memory in the tokenizer");
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}

/* BPE of one pre-split piece (its UTF-8 bytes): starts from byte symbols, the last
 * one with "</w>", and repeatedly merges every occurrence of the lowest-ranked
 * adjacent pair, left to right without overlap. sym is scratch of n entries. */
static int bpe_piece(const ocd_tokenizer *t, const unsigned char *bytes, size_t n, int32_t *sym, idvec *out) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) sym[i] = i + 1 < n ? t->byte_id[bytes[i]] : t->byte_id_w[bytes[i]];
    size_t m = n;
    while (m > 1) {
        int32_t best = INT32_MAX, a = -1, b = -1, res = -1;
        for (size_t i = 0; i + 1 < m; i++) {
            int32_t r_res, r = pair_rank(t, sym[i], sym[i + 1], &r_res);
            if (r < best) { best = r; a = sym[i]; b = sym[i + 1]; res = r_res; }
        }
        if (best == INT32_MAX) break;
        size_t k = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && sym[i] == a && sym[i + 1] == b) { sym[k++] = res; i += 2; }
            else sym[k++] = sym[i++];
        }
        m = k;
    }
    for (size_t i = 0; i < m; i++)
        if (iv_push(out, sym[i])) return -1;
    return 0;
}

static int match_ascii(const uint32_t *s, size_t n, size_t i, const char *lit) {
    for (size_t k = 0; lit[k]; k++)
        if (i + k >= n || s[i + k] != (uint32_t)(unsigned char)lit[k]) return 0;
    return 1;
}

/* Length of the regex match at s[i] (0 if none) and whether it is a special token:
 * <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (case-insensitive; the text is lower-case already, ſ folds to s). */
static size_t match_piece(const uint32_t *s, size_t n, size_t i, int32_t *special, const ocd_tokenizer *t) {
    *special = -1;
    uint32_t c = s[i];
    if (c == '<') {
        if (match_ascii(s, n, i, "<|startoftext|>")) { *special = t->bos; return 15; }
        if (match_ascii(s, n, i, "<|endoftext|>")) { *special = t->eos; return 13; }
    }
    if (c == '\'' && i + 1 < n) {
        uint32_t d = s[i + 1];
        if (d == 's' || d == 0x17F || d == 't' || d == 'm' || d == 'd') return 2;
        if (match_ascii(s, n, i, "'re") || match_ascii(s, n, i, "'ve") || match_ascii(s, n, i, "'ll")) return 3;
    }
    if (text_is_letter(c)) {
        size_t e = i + 1;
        while (e < n && text_is_letter(s[e])) e++;
        return e - i;
    }
    if (text_is_number(c)) return 1;
    if (text_is_space(c)) return 0;
    size_t e = i + 1;
    while (e < n && !text_is_space(s[e]) && !text_is_letter(s[e]) && !text_is_number(s[e])) e++;
    return e - i;
}

/* Normalises, splits and BPE-encodes utf8 into out (all ids, no BOS/EOS). */
static int encode_all(const ocd_tokenizer *t, const char *utf8, idvec *out) {
    if (!t) return ocd_fail("tokenizer is NULL");
    uint32_t *s;
    size_t n;
    if (text_clip_normalize(utf8, &s, &n)) return ocd_fail_context("tokenizer");
    unsigned char *bytes = ocd_malloc(4 * n + 1);
    int32_t *sym = ocd_malloc((4 * n + 1) * sizeof *sym);
    int rc = bytes && sym ? 0 : -1;
    for (size_t i = 0; i < n && !rc;) {
        int32_t special;
        size_t l = match_piece(s, n, i, &special, t);
        if (l == 0) { i++; continue; } /* whitespace between pieces */
        if (special >= 0) rc = iv_push(out, special);
        else {
            size_t nb = 0;
            for (size_t k = i; k < i + l; k++) nb += (size_t)put_utf8(s[k], (char *)bytes + nb);
            rc = bpe_piece(t, bytes, nb, sym, out);
        }
        i += l;
    }
    free(bytes);
    free(sym);
    free(s);
    return rc;
}

int tokenizer_bpe(const ocd_tokenizer *t, const char *utf8, int32_t *out, int cap, int *n_out) {
    idvec v = {0};
    if (n_out) *n_out = 0;
    if (encode_all(t, utf8, &v)) { free(v.v); return -1; }
    if (n_out) *n_out = (int)v.n;
    if (v.n > (size_t)(cap < 0 ? 0 : cap)) {
        free(v.v);
        return ocd_fail("tokenizer_bpe: %zu tokens do not fit in %d", v.n, cap);
    }
    if (v.n) memcpy(out, v.v, v.n * sizeof *out);
    free(v.v);
    return 0;
}

int tokenizer_encode(const ocd_tokenizer *t, const char *utf8, int32_t ids[TOKENIZER_CONTEXT], int *length_out) {
    idvec v = {0};
    if (encode_all(t, utf8, &v)) { free(v.v); return -1; }
    size_t keep = v.n < TOKENIZER_CONTEXT - 2 ? v.n : TOKENIZER_CONTEXT - 2;
    ids[0] = t->bos;
    for (size_t i = 0; i < keep; i++) ids[1 + i] = v.v[i];
    ids[1 + keep] = t->eos;
    for (size_t i = keep + 2; i < TOKENIZER_CONTEXT; i++) ids[i] = t->eos; /* SD-1.x pads with EOS */
    if (length_out) *length_out = (int)keep + 2;
    free(v.v);
    return 0;
}

/* ---------------------------------------------------------------- word positions */

/* Length in code points of HF's tokenizer.decode([id]).strip("#"): the token's bytes
 * decoded as UTF-8 with errors="replace" (one U+FFFD per maximal invalid subpart),
 * "</w>" -> " ", then strip() and strip("#"). */
static int decoded_len(const ocd_tokenizer *t, int32_t id) {
    const char *s = tokenizer_token_str(t, id);
    if (!s) return 0;
    uint32_t *cp;
    size_t n;
    if (text_utf8_decode(s, strlen(s), &cp, &n)) return 0; /* our own strings are valid UTF-8 */
    unsigned char *b = malloc(n + 1);
    uint32_t *d = malloc((n + 1) * sizeof *d);
    if (!b || !d) { free(cp); free(b); free(d); return 0; }
    size_t nb = 0, nd = 0;
    for (size_t i = 0; i < n; i++) /* special tokens are plain ASCII: bytes = chars */
        b[nb++] = cp[i] < 324 && t->byte_of_cp[cp[i]] >= 0 ? (unsigned char)t->byte_of_cp[cp[i]] : (unsigned char)cp[i];
    free(cp);
    for (size_t i = 0; i < nb;) {
        unsigned c = b[i];
        size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (need == 1) { d[nd++] = c; i++; continue; }
        if (need == 0) { d[nd++] = 0xFFFD; i++; continue; }
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        size_t k = 1;
        while (k < need && i + k < nb && b[i + k] >= (k == 1 ? lo : 0x80) && b[i + k] <= (k == 1 ? hi : 0xBF)) k++;
        d[nd++] = k == need ? 0x10000 /* any valid code point: only the count matters */ : 0xFFFD;
        i += k;
    }
    free(b);
    /* "</w>" -> " " */
    size_t m = 0;
    for (size_t i = 0; i < nd;) {
        if (i + 4 <= nd && d[i] == '<' && d[i + 1] == '/' && d[i + 2] == 'w' && d[i + 3] == '>') { d[m++] = ' '; i += 4; }
        else d[m++] = d[i++];
    }
    size_t lo = 0, hi = m;
    while (lo < hi && text_is_space(d[lo])) lo++;
    while (hi > lo && text_is_space(d[hi - 1])) hi--;
    while (lo < hi && d[lo] == '#') lo++;
    while (hi > lo && d[hi - 1] == '#') hi--;
    free(d);
    return (int)(hi - lo);
}

/* get_word_inds: match[w] says whether word w of prompt.split(" ") is wanted. */
static int word_positions(const ocd_tokenizer *t, const char *prompt, const char *word, int word_index, int *pos,
                          int cap) {
    if (!t || !prompt) return ocd_fail("tokenizer_word_positions: NULL argument");
    uint32_t *cp;
    size_t n;
    if (text_utf8_decode(prompt, strlen(prompt), &cp, &n)) return ocd_fail_context("tokenizer_word_positions");
    /* word lengths (code points) of prompt.split(" ") and which are wanted */
    size_t nw = 1;
    for (size_t i = 0; i < n; i++) nw += cp[i] == ' ';
    int *wlen = ocd_calloc(nw, sizeof *wlen);
    char *want = ocd_calloc(nw, 1);
    idvec v = {0};
    int count = -1;
    if (!wlen || !want) goto done;
    {
        size_t w = 0, start = 0; /* byte offset of the current word */
        size_t boff = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i == n || cp[i] == ' ') {
                if (word) want[w] = strlen(word) == boff - start && !memcmp(prompt + start, word, boff - start);
                else want[w] = (int)w == word_index;
                w++;
                start = boff + 1;
            } else {
                wlen[w]++;
            }
            if (i < n) boff += cp[i] < 0x80 ? 1 : cp[i] < 0x800 ? 2 : cp[i] < 0x10000 ? 3 : 4;
        }
    }
    int any = 0;
    for (size_t w = 0; w < nw; w++) any |= want[w];
    count = 0;
    if (!any) goto done;
    if (encode_all(t, prompt, &v)) { count = -1; goto done; }
    int cur = 0;
    size_t ptr = 0;
    for (size_t i = 0; i < v.n && ptr < nw; i++) { /* Python would raise IndexError past the last word */
        cur += decoded_len(t, v.v[i]);
        if (want[ptr] && i + 1 <= TOKENIZER_CONTEXT - 2) {
            if (count >= cap) { count = ocd_fail("tokenizer_word_positions: more than %d positions", cap); goto done; }
            pos[count++] = (int)i + 1;
        }
        if (cur >= wlen[ptr]) { ptr++; cur = 0; }
    }
done:
    free(cp);
    free(wlen);
    free(want);
    free(v.v);
    return count;
}

int tokenizer_word_positions(const ocd_tokenizer *t, const char *prompt, const char *word, int *pos, int cap) {
    if (!word) return ocd_fail("tokenizer_word_positions: word is NULL");
    return word_positions(t, prompt, word, -1, pos, cap);
}

int tokenizer_word_positions_at(const ocd_tokenizer *t, const char *prompt, int word_index, int *pos, int cap) {
    return word_positions(t, prompt, NULL, word_index, pos, cap);
}

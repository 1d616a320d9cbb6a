/* CLIP text normalisation: an ftfy subset, Python's html.unescape, whitespace
 * collapsing and Python's str.lower(). See text_normalize.h for what is covered.
 * Every step maps a code-point buffer to a new one; texts are prompts (short),
 * so clarity beats in-place tricks. */
#include "nn/text_normalize.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/error.h"

/* ---------------------------------------------------------------- buffers */

typedef struct {
    uint32_t *v;  /* [cap] code points */
    size_t n, cap;
} cpbuf;

static int cb_push(cpbuf *b, uint32_t c) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        uint32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) return ocd_fail("out of memory in text normalisation");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = c;
    return 0;
}

static int cb_push_n(cpbuf *b, const uint32_t *c, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (cb_push(b, c[i])) return -1;
    return 0;
}

/* Replaces *a with *b (b's storage moves into a). */
static void cb_take(cpbuf *a, cpbuf *b) {
    free(a->v);
    *a = *b;
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------- UTF-8 */

/* Strict decoder of one sequence; returns its length or 0 if invalid. */
static size_t utf8_one(const unsigned char *s, size_t len, uint32_t *out) {
    unsigned c = s[0];
    if (c < 0x80) { *out = c; return 1; }
    size_t n;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    *out = cp;
    return n;
}

int text_utf8_decode(const char *s, size_t len, uint32_t **cps, size_t *n) {
    *cps = NULL;
    *n = 0;
    uint32_t *v = ocd_malloc((len + 1) * sizeof *v);
    if (!v) return -1;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t l = utf8_one((const unsigned char *)s + i, len - i, &v[k]);
        if (!l) {
            free(v);
            return ocd_fail("invalid UTF-8 in text at byte %zu (0x%02X)", i, (unsigned char)s[i]);
        }
        i += l;
        k++;
    }
    *cps = v;
    *n = k;
    return 0;
}

static size_t utf8_put(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

char *text_utf8_encode(const uint32_t *cps, size_t n, size_t *len_out) {
    char *o = ocd_malloc(4 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += utf8_put(cps[i], o + k);
    o[k] = 0;
    if (len_out) *len_out = k;
    return o;
}

/* ---------------------------------------------------------------- classes */

int text_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

int text_is_letter(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

int text_is_number(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* ---------------------------------------------------------------- Windows-1252 */

/* Bytes 0x80..0x9F in Windows-1252; 0 = undefined (ftfy's "sloppy" codec keeps
 * them as the C1 control of the same value). */
static const uint16_t k_cp1252[32] = {
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
    0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

static uint32_t cp1252_decode(unsigned b) {
    if (b >= 0x80 && b < 0xA0 && k_cp1252[b - 0x80]) return k_cp1252[b - 0x80];
    return b;
}

/* Byte that Latin-1 or sloppy Windows-1252 would have decoded to c; -1 if none. */
static int cp1252_encode(uint32_t c) {
    if (c < 0x100) return (int)c;
    for (int i = 0; i < 32; i++)
        if (k_cp1252[i] == c) return 0x80 + i;
    return -1;
}

/* ---------------------------------------------------------------- HTML entities */

typedef struct {
    const char *name;
    uint32_t cp;
    int legacy; /* also recognised without the ';' (HTML5's legacy list) */
} entity;

/* U+00A0..U+00FF in order; all of them are legacy (no ';' needed). */
static const char *const k_latin1_names[96] = {
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave",
    "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve",
    "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc",
    "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml",
    "aring", "aelig", "ccedil", "egrave", "eacute", "ecirc", "euml", "igrave", "iacute",
    "icirc", "iuml", "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide",
    "oslash", "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
};

static const entity k_entities[] = {
    {"amp", '&', 1}, {"lt", '<', 1}, {"gt", '>', 1}, {"quot", '"', 1},
    {"AMP", '&', 1}, {"LT", '<', 1}, {"GT", '>', 1}, {"QUOT", '"', 1},
    {"COPY", 0xA9, 1}, {"REG", 0xAE, 1}, {"apos", '\'', 0}, {"Tab", 0x09, 0}, {"NewLine", 0x0A, 0},
    {"hellip", 0x2026, 0}, {"mdash", 0x2014, 0}, {"ndash", 0x2013, 0}, {"lsquo", 0x2018, 0},
    {"rsquo", 0x2019, 0}, {"sbquo", 0x201A, 0}, {"ldquo", 0x201C, 0}, {"rdquo", 0x201D, 0},
    {"bdquo", 0x201E, 0}, {"bull", 0x2022, 0}, {"euro", 0x20AC, 0}, {"trade", 0x2122, 0},
    {"dagger", 0x2020, 0}, {"Dagger", 0x2021, 0}, {"permil", 0x2030, 0}, {"lsaquo", 0x2039, 0},
    {"rsaquo", 0x203A, 0}, {"OElig", 0x152, 0}, {"oelig", 0x153, 0}, {"Scaron", 0x160, 0},
    {"scaron", 0x161, 0}, {"Yuml", 0x178, 0}, {"fnof", 0x192, 0}, {"circ", 0x2C6, 0},
    {"tilde", 0x2DC, 0}, {"ensp", 0x2002, 0}, {"emsp", 0x2003, 0}, {"thinsp", 0x2009, 0},
    {"zwnj", 0x200C, 0}, {"zwj", 0x200D, 0}, {"lrm", 0x200E, 0}, {"rlm", 0x200F, 0},
    {"prime", 0x2032, 0}, {"Prime", 0x2033, 0}, {"larr", 0x2190, 0}, {"uarr", 0x2191, 0},
    {"rarr", 0x2192, 0}, {"darr", 0x2193, 0}, {"harr", 0x2194, 0}, {"infin", 0x221E, 0},
    {"ne", 0x2260, 0}, {"le", 0x2264, 0}, {"ge", 0x2265, 0}, {"minus", 0x2212, 0},
    {"spades", 0x2660, 0}, {"clubs", 0x2663, 0}, {"hearts", 0x2665, 0}, {"diams", 0x2666, 0},
    {"star", 0x2606, 0}, {"starf", 0x2605, 0}, {"check", 0x2713, 0}, {"cross", 0x2717, 0},
};

/* Looks up name (code points, length n). with_semi: the reference had a ';'.
 * Returns the code point or 0. */
static uint32_t entity_lookup(const uint32_t *name, size_t n, int with_semi) {
    char s[40];
    if (n == 0 || n >= sizeof s) return 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] >= 0x80) return 0;
        s[i] = (char)name[i];
    }
    s[n] = 0;
    for (int i = 0; i < 96; i++)
        if (!strcmp(s, k_latin1_names[i])) return 0xA0 + (uint32_t)i;
    for (size_t i = 0; i < sizeof k_entities / sizeof k_entities[0]; i++)
        if (!strcmp(s, k_entities[i].name) && (with_semi || k_entities[i].legacy)) return k_entities[i].cp;
    return 0;
}

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static int is_hex(uint32_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static int is_alnum_ascii(uint32_t c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Python html._replace_charref for a numeric reference: appends the result. */
static int numeric_charref(cpbuf *o, uint64_t num) {
    if (num == 0) return cb_push(o, 0xFFFD);
    if (num == 0x0D) return cb_push(o, 0x0D);
    if (num >= 0x80 && num <= 0x9F) return cb_push(o, cp1252_decode((unsigned)num));
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return cb_push(o, 0xFFFD);
    if ((num >= 0x1 && num <= 0x8) || num == 0xB || (num >= 0xE && num <= 0x1F) || num == 0x7F ||
        (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        return 0; /* _invalid_codepoints map to '' */
    return cb_push(o, (uint32_t)num);
}

/* Parses digits at t[i..]; saturates far above 0x10FFFF. Returns the end index. */
static size_t parse_num(const uint32_t *t, size_t n, size_t i, int hex, uint64_t *val) {
    uint64_t v = 0;
    while (i < n && (hex ? is_hex(t[i]) : is_digit(t[i]))) {
        uint32_t c = t[i];
        uint32_t d = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        v = v * (hex ? 16 : 10) + d;
        if (v > 0x7FFFFFFF) v = 0x7FFFFFFF;
        i++;
    }
    *val = v;
    return i;
}

/* Python's html.unescape (regex `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`). */
static int html_unescape(cpbuf *t) {
    cpbuf o = {0};
    const uint32_t *s = t->v;
    size_t n = t->n, i = 0;
    while (i < n) {
        if (s[i] != '&') {
            if (cb_push(&o, s[i++])) goto fail;
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') {
            int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
            size_t d0 = j + 1 + (size_t)hex;
            uint64_t v;
            size_t e = parse_num(s, n, d0, hex, &v);
            if (e == d0) { /* no digits: '#' cannot start a name either */
                if (cb_push(&o, s[i++])) goto fail;
                continue;
            }
            if (e < n && s[e] == ';') e++;
            if (numeric_charref(&o, v)) goto fail;
            i = e;
            continue;
        }
        size_t e = j;
        while (e < n && e - j < 32 && s[e] != '\t' && s[e] != '\n' && s[e] != '\f' && s[e] != ' ' &&
               s[e] != '<' && s[e] != '&' && s[e] != '#' && s[e] != ';')
            e++;
        if (e == j) {
            if (cb_push(&o, s[i++])) goto fail;
            continue;
        }
        int semi = e < n && s[e] == ';';
        uint32_t cp = entity_lookup(s + j, e - j, semi);
        if (cp) {
            if (cb_push(&o, cp)) goto fail;
            i = e + (size_t)semi;
            continue;
        }
        /* Longest legacy prefix (at least 2 chars), rest kept verbatim. */
        size_t x;
        for (x = e - j - (semi ? 0 : 1); x >= 2; x--)
            if (x < e - j + (size_t)semi && (cp = entity_lookup(s + j, x, 0))) break;
        if (x >= 2 && cp) {
            if (cb_push(&o, cp)) goto fail;
            i = j + x;
            continue;
        }
        if (cb_push(&o, s[i++])) goto fail; /* '&' + name stays */
    }
    cb_take(t, &o);
    return 0;
fail:
    free(o.v);
    return -1;
}

/* ftfy's unescape_html: only `&#?[0-9A-Za-z]{1,24};`, names must be known. */
static int ftfy_unescape_html(cpbuf *t) {
    cpbuf o = {0};
    const uint32_t *s = t->v;
    size_t n = t->n, i = 0;
    while (i < n) {
        if (s[i] == '&') {
            size_t j = i + 1, num = j < n && s[j] == '#';
            size_t a = j + num, e = a;
            while (e < n && e - a < 24 && is_alnum_ascii(s[e])) e++;
            if (e > a && e < n && s[e] == ';') {
                if (!num) {
                    uint32_t cp = entity_lookup(s + a, e - a, 1);
                    if (cp) {
                        if (cb_push(&o, cp)) goto fail;
                        i = e + 1;
                        continue;
                    }
                } else {
                    /* html.unescape of the whole match; kept if it does not parse fully */
                    int hex = s[a] == 'x' || s[a] == 'X';
                    uint64_t v;
                    size_t d = parse_num(s, n, a + (size_t)hex, hex, &v);
                    if (d == e && d > a + (size_t)hex) {
                        if (numeric_charref(&o, v)) goto fail;
                        i = e + 1;
                        continue;
                    }
                }
            }
        }
        if (cb_push(&o, s[i++])) goto fail;
    }
    cb_take(t, &o);
    return 0;
fail:
    free(o.v);
    return -1;
}

/* ---------------------------------------------------------------- ftfy steps */

/* Whole-text mojibake repair: if every character is what Latin-1 / Windows-1252
 * makes of some byte, and those bytes are valid UTF-8 with at least one multi-byte
 * sequence, the text was UTF-8 decoded with the wrong codec: decode it again. */
static int fix_mojibake(cpbuf *t) {
    if (t->n == 0) return 0;
    unsigned char *b = malloc(t->n);
    if (!b) return ocd_fail("out of memory in text normalisation");
    int high = 0;
    for (size_t i = 0; i < t->n; i++) {
        int x = cp1252_encode(t->v[i]);
        if (x < 0) { free(b); return 0; }
        b[i] = (unsigned char)x;
        high |= x >= 0x80;
    }
    if (!high) { free(b); return 0; }
    cpbuf o = {0};
    for (size_t i = 0; i < t->n;) {
        uint32_t c;
        size_t l = utf8_one(b + i, t->n - i, &c);
        if (!l) { free(b); free(o.v); return 0; }
        if (cb_push(&o, c)) { free(b); free(o.v); return -1; }
        i += l;
    }
    free(b);
    cb_take(t, &o);
    return 0;
}

/* Ligatures ftfy splits (fix_latin_ligatures); returns the expansion length. */
static int ligature(uint32_t c, uint32_t out[3]) {
    switch (c) {
    case 0x0132: out[0] = 'I'; out[1] = 'J'; return 2;
    case 0x0133: out[0] = 'i'; out[1] = 'j'; return 2;
    case 0x0149: out[0] = 0x02BC; out[1] = 'n'; return 2;
    case 0x01F1: out[0] = 'D'; out[1] = 'Z'; return 2;
    case 0x01F2: out[0] = 'D'; out[1] = 'z'; return 2;
    case 0x01F3: out[0] = 'd'; out[1] = 'z'; return 2;
    case 0x01C4: out[0] = 'D'; out[1] = 0x017D; return 2;
    case 0x01C5: out[0] = 'D'; out[1] = 0x017E; return 2;
    case 0x01C6: out[0] = 'd'; out[1] = 0x017E; return 2;
    case 0x01C7: out[0] = 'L'; out[1] = 'J'; return 2;
    case 0x01C8: out[0] = 'L'; out[1] = 'j'; return 2;
    case 0x01C9: out[0] = 'l'; out[1] = 'j'; return 2;
    case 0x01CA: out[0] = 'N'; out[1] = 'J'; return 2;
    case 0x01CB: out[0] = 'N'; out[1] = 'j'; return 2;
    case 0x01CC: out[0] = 'n'; out[1] = 'j'; return 2;
    case 0xFB00: out[0] = 'f'; out[1] = 'f'; return 2;
    case 0xFB01: out[0] = 'f'; out[1] = 'i'; return 2;
    case 0xFB02: out[0] = 'f'; out[1] = 'l'; return 2;
    case 0xFB03: out[0] = 'f'; out[1] = 'f'; out[2] = 'i'; return 3;
    case 0xFB04: out[0] = 'f'; out[1] = 'f'; out[2] = 'l'; return 3;
    case 0xFB05: out[0] = 0x017F; out[1] = 't'; return 2;
    case 0xFB06: out[0] = 's'; out[1] = 't'; return 2;
    default: return 0;
    }
}

static int is_control_to_remove(uint32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC) ||
           (c >= 0x1D173 && c <= 0x1D17A) || (c >= 0xE0000 && c <= 0xE007F);
}

/* NFKC of a single character (for ftfy's width map). Appends to o. */
static int push_nfkc_char(cpbuf *o, uint32_t c) {
    char in[5];
    size_t l = utf8_put(c, in);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)l, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    if (r < 0) return cb_push(o, c);
    uint32_t *v;
    size_t k;
    int rc = text_utf8_decode((const char *)dst, (size_t)r, &v, &k);
    free(dst);
    if (rc) return -1;
    rc = cb_push_n(o, v, k);
    free(v);
    return rc;
}

/* One pass of the per-character fixes, in ftfy's order. */
static int ftfy_char_fixes(cpbuf *t) {
    cpbuf a = {0}, b = {0};
    uint32_t lig[3];
    /* fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes */
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        if (c >= 0x80 && c <= 0x9F) c = cp1252_decode(c);
        int nl = ligature(c, lig);
        if (nl) {
            if (cb_push_n(&a, lig, (size_t)nl)) goto fail;
            continue;
        }
        if (c == 0x3000) c = ' ';
        else if (c >= 0xFF01 && c <= 0xFFEF) {
            if (push_nfkc_char(&a, c)) goto fail;
            continue;
        }
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
        else if (c >= 0x201C && c <= 0x201F) c = '"';
        if (cb_push(&a, c)) goto fail;
    }
    /* fix_line_breaks, remove_terminal_escapes (ESC [ [0-9;]* letter), remove_control_chars */
    for (size_t i = 0; i < a.n; i++) {
        uint32_t c = a.v[i];
        if (c == '\r' && i + 1 < a.n && a.v[i + 1] == '\n') continue;
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
        if (c == 0x1B && i + 1 < a.n && a.v[i + 1] == '[') {
            size_t j = i + 2;
            while (j < a.n && (is_digit(a.v[j]) || a.v[j] == ';')) j++;
            if (j < a.n && a.v[j] < 0x80 && ((a.v[j] | 0x20) >= 'a' && (a.v[j] | 0x20) <= 'z')) {
                i = j;
                continue;
            }
        }
        if (is_control_to_remove(c)) continue;
        if (cb_push(&b, c)) goto fail;
    }
    free(a.v);
    cb_take(t, &b);
    return 0;
fail:
    free(a.v);
    free(b.v);
    return -1;
}

static int nfc(cpbuf *t) {
    if (t->n == 0) return 0;
    size_t len;
    char *s = text_utf8_encode(t->v, t->n, &len);
    if (!s) return -1;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(s);
    if (r < 0) return ocd_fail("NFC normalisation failed: %s", utf8proc_errmsg(r));
    uint32_t *v;
    size_t k;
    int rc = text_utf8_decode((const char *)dst, (size_t)r, &v, &k);
    free(dst);
    if (rc) return -1;
    free(t->v);
    t->v = v;
    t->n = t->cap = k;
    return 0;
}

static int cb_equal(const cpbuf *a, const cpbuf *b) {
    return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

/* ftfy.fix_text subset: repeat the fix pipeline until it is a fixed point. */
static int ftfy_fix(cpbuf *t) {
    for (int it = 0; it < 16; it++) {
        cpbuf orig = {0};
        if (cb_push_n(&orig, t->v, t->n)) return -1;
        int has_lt = 0;
        for (size_t i = 0; i < t->n; i++) has_lt |= t->v[i] == '<';
        int rc = (has_lt ? 0 : ftfy_unescape_html(t));
        if (!rc) rc = fix_mojibake(t);
        if (!rc) rc = ftfy_char_fixes(t);
        if (!rc) rc = nfc(t);
        int same = !rc && cb_equal(&orig, t);
        free(orig.v);
        if (rc) return -1;
        if (same) break;
    }
    return 0;
}

/* ---------------------------------------------------------------- whitespace, case */

/* re.sub(r'\s+', ' ', text).strip() (also does the earlier .strip()). */
static int collapse_space(cpbuf *t) {
    cpbuf o = {0};
    int pending = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (text_is_space(t->v[i])) { pending = 1; continue; }
        if (pending && o.n && cb_push(&o, ' ')) goto fail;
        pending = 0;
        if (cb_push(&o, t->v[i])) goto fail;
    }
    cb_take(t, &o);
    return 0;
fail:
    free(o.v);
    return -1;
}

static int is_cased(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

static int is_case_ignorable(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
        k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK)
        return 1;
    /* Word_Break MidLetter / MidNumLet / Single_Quote */
    switch (c) {
    case '\'': case '.': case ':': case 0xB7: case 0x387: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E:
    case 0xFF1A:
        return 1;
    default:
        return 0;
    }
}

/* Python str.lower(): full mapping (only U+0130 differs from the simple one)
 * and the Final_Sigma context for U+03A3. */
static int lower(cpbuf *t) {
    cpbuf o = {0};
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        if (c == 0x130) {
            if (cb_push(&o, 'i') || cb_push(&o, 0x307)) goto fail;
            continue;
        }
        if (c == 0x3A3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(t->v[j - 1])) j--;
            int fin = j > 0 && is_cased(t->v[j - 1]);
            if (fin) {
                j = i + 1;
                while (j < t->n && is_case_ignorable(t->v[j])) j++;
                fin = j == t->n || !is_cased(t->v[j]);
            }
            if (cb_push(&o, fin ? 0x3C2 : 0x3C3)) goto fail;
            continue;
        }
        if (cb_push(&o, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c))) goto fail;
    }
    cb_take(t, &o);
    return 0;
fail:
    free(o.v);
    return -1;
}

/* ---------------------------------------------------------------- pipeline */

int text_clip_normalize(const char *utf8, uint32_t **cps, size_t *n) {
    *cps = NULL;
    *n = 0;
    if (!utf8) return ocd_fail("text is NULL");
    cpbuf t = {0};
    if (text_utf8_decode(utf8, strlen(utf8), &t.v, &t.n)) return -1;
    t.cap = t.n;
    if (ftfy_fix(&t) || html_unescape(&t) || html_unescape(&t) || collapse_space(&t) || lower(&t)) {
        free(t.v);
        return -1;
    }
    if (!t.v) { /* empty text: still hand back a valid pointer */
        t.v = ocd_malloc(sizeof *t.v);
        if (!t.v) return -1;
    }
    *cps = t.v;
    *n = t.n;
    return 0;
}

char *text_clip_normalize_utf8(const char *utf8) {
    uint32_t *v;
    size_t n;
    if (text_clip_normalize(utf8, &v, &n)) return NULL;
    char *s = text_utf8_encode(v, n, NULL);
    free(v);
    return s;
}

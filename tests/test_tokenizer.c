/* CLIP BPE tokenizer: goldens `tokenizer` and `tokenizer_ftfy` (exact ids), the
 * normalised text against params.normalized_text, algorithms.md F.4 vectors, the
 * built-in table against tiny-sd's vocab.json + merges.txt, invalid UTF-8, word
 * positions (prompt-to-prompt get_word_inds, algorithms.md A.7). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "nn/text_normalize.h"
#include "nn/tokenizer.h"
#include "testlib.h"

/* Runs one golden case: every prompt through tokenizer_encode / tokenizer_bpe.
 * Returns the open file: testlib caches specs by st_file pointer, so a closed file's
 * address reused by the next golden_open would hand back the old spec. */
static st_file *golden_case(const ocd_tokenizer *tok, const char *name) {
    st_file *g = golden_open(name);
    json_t *params = json_object_get(golden_spec(g), "params");
    json_t *norm = json_object_get(params, "normalized_text");
    const st_tensor *tu = st_find(g, "prompt_utf8"), *to = st_find(g, "prompt_offsets");
    const st_tensor *tids = st_find(g, "ids"), *tlen = st_find(g, "length");
    const st_tensor *tnb = st_find(g, "n_bpe"), *tbpe = st_find(g, "bpe_ids");
    char label[128];
    if (!tu || !to || !tids || !tlen || !tnb || !tbpe) {
        snprintf(label, sizeof label, "%s: tensors", name);
        t_check(0, label, "golden lacks an input or output");
        return g;
    }
    int n = (int)to->numel - 1;
    int32_t *off = malloc(sizeof(int32_t) * (size_t)to->numel);
    int32_t *ref_ids = malloc(sizeof(int32_t) * (size_t)tids->numel), *ref_len = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *ref_nb = malloc(sizeof(int32_t) * (size_t)n), *ref_bpe = malloc(sizeof(int32_t) * (size_t)tbpe->numel + 4);
    int32_t *ids = calloc((size_t)n * 77, sizeof(int32_t)), *len = calloc((size_t)n, sizeof(int32_t));
    int32_t *nb = calloc((size_t)n, sizeof(int32_t)), *bpe = calloc((size_t)tbpe->numel + 4096, sizeof(int32_t));
    st_read_i32(to, off);
    st_read_i32(tids, ref_ids);
    st_read_i32(tlen, ref_len);
    st_read_i32(tnb, ref_nb);
    st_read_i32(tbpe, ref_bpe);
    const char *bytes = tu->data;
    int norm_ok = 0, enc_fail = 0, bad_prompts = 0;
    size_t nbpe = 0;
    for (int i = 0; i < n; i++) {
        size_t l = (size_t)(off[i + 1] - off[i]);
        char *p = malloc(l + 1);
        memcpy(p, bytes + off[i], l);
        p[l] = 0;
        char *nt = text_clip_normalize_utf8(p);
        const char *want = json_string_value(json_array_get(norm, (size_t)i));
        if (nt && want && !strcmp(nt, want)) norm_ok++;
        else printf("      %s[%d] normalised to \"%s\", expected \"%s\"\n", name, i, nt ? nt : "(error)", want ? want : "?");
        free(nt);
        int length = 0, cnt = 0;
        if (tokenizer_encode(tok, p, ids + (size_t)i * 77, &length) ||
            tokenizer_bpe(tok, p, bpe + nbpe, (int)(tbpe->numel + 4096 - (int64_t)nbpe), &cnt)) {
            printf("      %s[%d]: %s\n", name, i, ocd_last_error());
            enc_fail++;
        }
        len[i] = length;
        nb[i] = cnt;
        int same = length == ref_len[i] && !memcmp(ids + (size_t)i * 77, ref_ids + (size_t)i * 77, 77 * sizeof(int32_t));
        if (!same) {
            bad_prompts++;
            printf("      %s[%d] \"%s\": ids differ (length %d vs %d); got", name, i, p, length, ref_len[i]);
            for (int k = 0; k < 12; k++) printf(" %d", ids[(size_t)i * 77 + (size_t)k]);
            printf(" ref");
            for (int k = 0; k < 12; k++) printf(" %d", ref_ids[(size_t)i * 77 + (size_t)k]);
            printf("\n");
        }
        nbpe += (size_t)cnt;
        free(p);
    }
    snprintf(label, sizeof label, "%s: normalised text", name);
    t_check(norm_ok == n, label, "%d/%d equal params.normalized_text", norm_ok, n);
    snprintf(label, sizeof label, "%s: no errors", name);
    t_check(enc_fail == 0 && bad_prompts == 0, label, "%d prompts, %d with errors, %d with other ids", n, enc_fail,
            bad_prompts);
    snprintf(label, sizeof label, "%s:ids", name);
    t_equal_i32(label, ids, ref_ids, (size_t)n * 77);
    snprintf(label, sizeof label, "%s:length", name);
    t_equal_i32(label, len, ref_len, (size_t)n);
    snprintf(label, sizeof label, "%s:n_bpe", name);
    t_equal_i32(label, nb, ref_nb, (size_t)n);
    snprintf(label, sizeof label, "%s:bpe_ids", name);
    if (nbpe != (size_t)tbpe->numel) t_check(0, label, "%zu ids, golden has %lld", nbpe, (long long)tbpe->numel);
    else t_equal_i32(label, bpe, ref_bpe, nbpe);
    free(off); free(ref_ids); free(ref_len); free(ref_nb); free(ref_bpe); free(ids); free(len); free(nb); free(bpe);
    return g;
}

/* algorithms.md F.4 (content ids, without BOS/EOS). */
static void spec_vectors(const ocd_tokenizer *tok) {
    static const struct { const char *text; int n; int32_t ids[16]; } v[] = {
        {"a photo of a cat", 5, {320, 1125, 539, 320, 2368}},
        {"A photo of a cat.", 6, {320, 1125, 539, 320, 2368, 269}},
        {"", 0, {0}},
        {"Hello, world!", 4, {3306, 267, 1002, 256}},
        {"Hello, world!  It's 2023", 10, {3306, 267, 1002, 256, 585, 568, 273, 271, 273, 274}},
        {"an astronaut riding a horse on mars", 7, {550, 18376, 6765, 320, 4558, 525, 7496}},
        {"a silver jeep driving down a curvy road in the countryside", 11,
         {320, 3467, 11286, 4161, 1136, 320, 45788, 1759, 530, 518, 16303}},
        {"watercolor painting of a silver jeep driving down a curvy road in the countryside", 14,
         {14211, 3086, 539, 320, 3467, 11286, 4161, 1136, 320, 45788, 1759, 530, 518, 16303}},
        {"a Porsche car driving down a curvy road in the countryside", 11,
         {320, 8783, 1615, 4161, 1136, 320, 45788, 1759, 530, 518, 16303}},
        {"ukiyo-e", 4, {37435, 3497, 268, 324}},
        {"ControlVideo", 2, {9963, 1455}},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int32_t ids[77];
        int len = 0;
        int ok = !tokenizer_encode(tok, v[i].text, ids, &len) && len == v[i].n + 2 && ids[0] == TOKENIZER_BOS &&
                 ids[len - 1] == TOKENIZER_EOS && !memcmp(ids + 1, v[i].ids, sizeof(int32_t) * (size_t)v[i].n);
        for (int k = len; ok && k < 77; k++) ok = ids[k] == TOKENIZER_EOS;
        if (!ok) { bad++; printf("      F.4 \"%s\" differs\n", v[i].text); }
    }
    t_check(bad == 0, "F.4 test vectors", "%zu vectors, %d differ", sizeof v / sizeof v[0], bad);
    const char *s = tokenizer_token_str(tok, 37435), *s2 = tokenizer_token_str(tok, 3497);
    t_check(s && s2 && !strcmp(s, "uki") && !strcmp(s2, "yo</w>"), "F.4 token strings", "37435=\"%s\" 3497=\"%s\"",
            s ? s : "?", s2 ? s2 : "?");
}

/* The compiled-in table must be the one of tiny-sd's vocab.json + merges.txt. */
static void builtin_vs_files(const ocd_tokenizer *tok) {
    double t0 = ocd_now();
    ocd_tokenizer *f = tokenizer_load(TINY_SD "/tokenizer/vocab.json", TINY_SD "/tokenizer/merges.txt");
    double dt = ocd_now() - t0;
    if (!t_check(f != NULL, "load vocab.json + merges.txt", "%.1f ms %s", dt * 1e3, f ? "" : ocd_last_error())) return;
    int n = tokenizer_vocab_size(tok), diff = 0;
    for (int i = 0; i < n; i++) {
        const char *a = tokenizer_token_str(tok, i), *b = tokenizer_token_str(f, i);
        if (!a || !b || strcmp(a, b)) diff++;
    }
    t_check(n == 49408 && tokenizer_vocab_size(f) == n && diff == 0, "builtin vocab == vocab.json",
            "%d / %d tokens, %d differ", n, tokenizer_vocab_size(f), diff);
    /* every merge line has the same rank in both */
    size_t len;
    char *txt = ocd_read_file(TINY_SD "/tokenizer/merges.txt", &len);
    int lines = 0, rank_bad = 0;
    for (char *line = txt ? strchr(txt, '\n') : NULL; line && *++line; line = strchr(line, '\n')) {
        char a[128], b[128];
        if (sscanf(line, "%127s %127s", a, b) != 2) break;
        int ra = tokenizer_merge_rank(tok, a, b), rb = tokenizer_merge_rank(f, a, b);
        if (ra != lines || rb != lines) rank_bad++;
        lines++;
    }
    free(txt);
    t_check(lines == 48894 && rank_bad == 0, "merge ranks builtin == merges.txt", "%d merges, %d differ", lines, rank_bad);
    const char *p = "A Photo Of A CAT, ukiyo-e Straße 日本語 🐱 İstanbul";
    int32_t x[77], y[77];
    int lx = 0, ly = 0;
    int ok = !tokenizer_encode(tok, p, x, &lx) && !tokenizer_encode(f, p, y, &ly) && lx == ly && !memcmp(x, y, sizeof x);
    t_check(ok, "builtin and file tokenizers encode alike", "length %d", lx);
    tokenizer_free(f);
    ocd_tokenizer *m = tokenizer_for_model(TINY_SD);
    t_check(m != NULL && tokenizer_vocab_size(m) == 49408, "tokenizer_for_model(tiny-sd)", "%s", m ? "" : ocd_last_error());
    tokenizer_free(m);
}

static void invalid_input(const ocd_tokenizer *tok) {
    static const char *bad[] = {
        "abc\x80", "\xC0\xAF", "\xED\xA0\x80 surrogate", "\xE2\x82", "\xF4\x90\x80\x80", "ok \xFF ok", "\xC3",
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t ids[77], out[8];
        int len, n;
        ocd_clear_error();
        int r1 = tokenizer_encode(tok, bad[i], ids, &len);
        int r2 = tokenizer_bpe(tok, bad[i], out, 8, &n);
        if (r1 == -1 && r2 == -1 && strstr(ocd_last_error(), "UTF-8")) fails++;
    }
    t_check(fails == (int)(sizeof bad / sizeof bad[0]), "invalid UTF-8 is an error", "%d/%zu rejected (%s)", fails,
            sizeof bad / sizeof bad[0], ocd_last_error());
    int32_t ids[77], out[2];
    int n = 0;
    t_check(tokenizer_encode(tok, NULL, ids, NULL) == -1, "NULL text is an error", "%s", ocd_last_error());
    int r = tokenizer_bpe(tok, "a photo of a cat", out, 2, &n);
    t_check(r == -1 && n == 5, "tokenizer_bpe reports a too small buffer", "rc %d, needs %d", r, n);
}

static int positions_are(const ocd_tokenizer *tok, const char *prompt, const char *word, int n, const int *want) {
    int pos[77];
    int k = tokenizer_word_positions(tok, prompt, word, pos, 77);
    int ok = k == n && (n == 0 || !memcmp(pos, want, sizeof(int) * (size_t)n));
    if (!ok) {
        printf("      \"%s\" in \"%s\": got %d:", word, prompt, k);
        for (int i = 0; i < k; i++) printf(" %d", pos[i]);
        printf("\n");
    }
    return ok;
}

static void word_positions(const ocd_tokenizer *tok) {
    const char *src = "a silver jeep driving down a curvy road in the countryside";
    const char *edit = "watercolor painting of a silver jeep driving down a curvy road in the countryside";
    const char *porsche = "a Porsche car driving down a curvy road in the countryside";
    int ok = 1;
    ok &= positions_are(tok, edit, "watercolor", 1, (int[]){1});        /* A.7 examples */
    ok &= positions_are(tok, src, "jeep", 1, (int[]){3});
    ok &= positions_are(tok, porsche, "car", 1, (int[]){3});
    ok &= positions_are(tok, porsche, "Porsche", 1, (int[]){2});
    ok &= positions_are(tok, src, "a", 2, (int[]){1, 6});               /* every occurrence */
    ok &= positions_are(tok, "a ukiyo-e style jeep", "ukiyo-e", 4, (int[]){2, 3, 4, 5}); /* multi-token word */
    ok &= positions_are(tok, "a ukiyo-e style jeep", "jeep", 1, (int[]){7});
    ok &= positions_are(tok, "ControlVideo rocks", "rocks", 1, (int[]){3});
    ok &= positions_are(tok, src, "car", 0, NULL);                      /* absent */
    ok &= positions_are(tok, src, "Jeep", 0, NULL);                     /* case-sensitive like Python == */
    int pos[77];
    int k = tokenizer_word_positions_at(tok, edit, 5, pos, 77);
    ok &= k == 1 && pos[0] == 6; /* word 5 = "jeep" */
    /* 80 words: occurrences past the 75 kept tokens are dropped */
    char longp[1024] = "";
    for (int i = 0; i < 80; i++) strcat(longp, i ? " cat" : "cat");
    k = tokenizer_word_positions(tok, longp, "cat", pos, 77);
    ok &= k == 75 && pos[0] == 1 && pos[74] == 75;
    t_check(ok, "word positions (get_word_inds)", "A.7 examples + repeats, multi-token words, truncation");
}

/* Random strings over an alphabet of troublemakers (entities, quotes, mojibake, marks,
 * emoji, specials, bad bytes): no crash, and encode agrees with bpe. */
static void fuzz(const ocd_tokenizer *tok) {
    static const char *atoms[] = {
        "a", "Z", " ", "  ", "\t", "\n", "\r\n", "&", "&amp;", "&#", "&#x", "&lt;", "<", "<|endoftext|>",
        "<|startoftext|>", "'", "'s", "\u2019", "\u201c", "\xc3", "\xa9", "\xc3\xa9", "\xe2\x80\x99", "\xef\xac\x81",
        "\xef\xbc\xa6", "\xcc\x81", "\xce\xa3", "\xc4\xb0", "\xf0\x9f\x90\xb1", "\xe6\x97\xa5", "1", "\xe2\x85\xab", ";",
        "#", "\x1b[31m", "\xc2\x85", "\xc2\xa0", "\x80", "\xff", "\xed\xa0\x80", "\xe3\x80\x80", "x\xe2\x80\x8by",
    };
    unsigned s = 12345;
    int errors = 0, mismatch = 0, runs = t_quick() ? 300 : 3000;
    for (int r = 0; r < runs; r++) {
        char buf[512] = "";
        int na = 1 + (int)((s = s * 1103515245u + 12345u) >> 16) % 24;
        for (int k = 0; k < na; k++) {
            s = s * 1103515245u + 12345u;
            strcat(buf, atoms[(s >> 16) % (sizeof atoms / sizeof atoms[0])]);
        }
        int32_t ids[77], bpe[2048];
        int len = 0, n = 0;
        int e1 = tokenizer_encode(tok, buf, ids, &len), e2 = tokenizer_bpe(tok, buf, bpe, 2048, &n);
        if (e1 != e2) mismatch++;
        if (e1) { errors++; continue; }
        int keep = n < 75 ? n : 75;
        if (len != keep + 2 || memcmp(ids + 1, bpe, sizeof(int32_t) * (size_t)keep)) mismatch++;
        for (int i = 0; i < len; i++)
            if (ids[i] < 0 || ids[i] >= 49408) mismatch++;
        int pos[77];
        if (tokenizer_word_positions(tok, buf, "a", pos, 77) < 0) mismatch++;
    }
    t_check(mismatch == 0, "fuzz: encode == bpe framing, no crash",
            "%d strings, %d rejected as invalid UTF-8, %d inconsistent", runs, errors, mismatch);
    /* long single word: BPE is quadratic in the word length, keep it bounded */
    char *w = malloc(20001);
    for (int i = 0; i < 20000; i++) w[i] = "abcdefghij"[(i * 7) % 10];
    w[20000] = 0;
    double t0 = ocd_now();
    int n = 0;
    tokenizer_bpe(tok, w, NULL, 0, &n);
    t_check(n > 0, "20000-letter word", "%d tokens in %.0f ms", n, (ocd_now() - t0) * 1e3);
    free(w);
}

int main(int argc, char **argv) {
    (void)argc;
    double t0 = ocd_now();
    ocd_tokenizer *tok = tokenizer_new_builtin();
    double dt = ocd_now() - t0;
    if (!t_check(tok != NULL, "tokenizer_new_builtin", "%s", tok ? "" : ocd_last_error())) return t_summary(argv[0]);
    t_check(dt < 0.1, "builtin table build < 100 ms", "%.1f ms", dt * 1e3);
    st_file *g1 = golden_case(tok, "tokenizer");
    st_file *g2 = golden_case(tok, "tokenizer_ftfy");
    spec_vectors(tok);
    builtin_vs_files(tok);
    invalid_input(tok);
    word_positions(tok);
    fuzz(tok);
    tokenizer_free(tok);
    st_close(g1);
    st_close(g2);
    return t_summary(argv[0]);
}

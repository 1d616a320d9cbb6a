/* CLIP BPE tokenizer (openai/CLIP SimpleTokenizer framed like diffusers' SD-1.x
 * CLIPTokenizer: padding="max_length", max_length=77, truncation=True).
 * algorithms.md F; text normalisation in nn/text_normalize.h.
 *
 * The vocabulary is compiled in (data/clip/merges.txt; ids follow from the merges
 * alone, F.2); a model folder's tokenizer/vocab.json + merges.txt can be loaded
 * instead. A tokenizer is immutable after creation, so one may be shared by threads. */
#ifndef OCD_NN_TOKENIZER_H
#define OCD_NN_TOKENIZER_H

#include <stdint.h>

#define TOKENIZER_CONTEXT 77   /* sequence length incl. BOS/EOS */
#define TOKENIZER_BOS 49406    /* <|startoftext|> in the CLIP vocabulary */
#define TOKENIZER_EOS 49407    /* <|endoftext|>, also SD-1.x's padding id */

typedef struct ocd_tokenizer ocd_tokenizer;

/* The built-in CLIP vocabulary (49408 tokens, 48894 merges). NULL + error on failure. */
ocd_tokenizer *tokenizer_new_builtin(void);
/* HF files: vocab.json (token -> id) and merges.txt ("#version" line, then "a b" lines;
 * like HF only the first 48894 merges are used). */
ocd_tokenizer *tokenizer_load(const char *vocab_json_path, const char *merges_txt_path);
/* tokenizer/{vocab.json,merges.txt} inside a model folder if both exist, else builtin. */
ocd_tokenizer *tokenizer_for_model(const char *model_dir);
void tokenizer_free(ocd_tokenizer *t);

int tokenizer_vocab_size(const ocd_tokenizer *t);
/* The token's string (byte-level symbols, "</w>" marks a word end); NULL if no such id. */
const char *tokenizer_token_str(const ocd_tokenizer *t, int32_t id);
int32_t tokenizer_token_id(const ocd_tokenizer *t, const char *token); /* -1 if absent */
/* Rank of merge "a b" (its index among the merges) or -1. For tests. */
int tokenizer_merge_rank(const ocd_tokenizer *t, const char *a, const char *b);

/* [BOS] + first 75 BPE ids + [EOS], padded with EOS: ids[77]. *length_out = tokens
 * before padding incl. BOS/EOS (may be NULL). 0, or -1 + error (invalid UTF-8). */
int tokenizer_encode(const ocd_tokenizer *t, const char *utf8, int32_t ids[TOKENIZER_CONTEXT], int *length_out);
/* All BPE ids, untruncated, no BOS/EOS. *n_out = the count; if it exceeds cap the call
 * fails (nothing useful in out) and *n_out says how much room is needed. */
int tokenizer_bpe(const ocd_tokenizer *t, const char *utf8, int32_t *out, int cap, int *n_out);

/* prompt-to-prompt's get_word_inds(prompt, word): the prompt is split on single spaces;
 * for every piece equal to `word` (exact, case-sensitive) the positions (1-based, i.e.
 * index into the 77-token sequence, BOS = 0) of the BPE tokens the walk assigns to it.
 * Positions beyond the 75 kept content tokens are dropped. Returns the count (0 if the
 * word does not occur), or -1 + error (bad UTF-8, more than cap positions). */
int tokenizer_word_positions(const ocd_tokenizer *t, const char *prompt, const char *word, int *pos, int cap);
/* Same for the word with index word_index in prompt.split(" ") (get_word_inds with an int). */
int tokenizer_word_positions_at(const ocd_tokenizer *t, const char *prompt, int word_index, int *pos, int cap);

#endif

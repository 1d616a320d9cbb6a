/* Text normalisation in front of the CLIP BPE tokenizer (algorithms.md F.3):
 *   ftfy.fix_text (the subset below) -> html.unescape twice -> strip
 *   -> collapse whitespace runs to one space -> strip -> Python str.lower().
 *
 * The ftfy subset, applied like ftfy 6 does (repeated until nothing changes):
 *   HTML entities ending in ';' (only when the text has no '<'), mojibake
 *   (text that is UTF-8 read as Latin-1 / Windows-1252, whole-text only),
 *   C1 controls read as Windows-1252, Latin ligatures, full/half-width forms,
 *   curly quotes, line breaks, terminal escapes, control characters, NFC.
 * Not covered: ftfy's badness heuristics for partially broken text, other
 * legacy encodings (cp1250/1251, MacRoman, cp437), lossy-sequence repair.
 * Named HTML entities: amp/lt/gt/quot/apos, the Latin-1 set and common
 * typographic ones (Python knows all 2231 of HTML5); numeric ones are complete.
 *
 * Code points are uint32_t; all buffers are malloc'd and owned by the caller. */
#ifndef OCD_NN_TEXT_NORMALIZE_H
#define OCD_NN_TEXT_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

/* Strict UTF-8 -> code points (rejects overlong forms, surrogates, > U+10FFFF,
 * truncated sequences). *cps is malloc'd (free it). 0 / -1 + error. */
int text_utf8_decode(const char *s, size_t len, uint32_t **cps, size_t *n);
/* Code points -> NUL-terminated UTF-8 (malloc'd). NULL + error on failure. */
char *text_utf8_encode(const uint32_t *cps, size_t n, size_t *len_out);

/* Python's str.isspace(): the set `\s+` collapses and str.strip() removes. */
int text_is_space(uint32_t c);
int text_is_letter(uint32_t c);   /* \p{L}: Lu Ll Lt Lm Lo */
int text_is_number(uint32_t c);   /* \p{N}: Nd Nl No */

/* The whole CLIP normalisation of a UTF-8 string, result as code points. */
int text_clip_normalize(const char *utf8, uint32_t **cps, size_t *n);
/* Same, as a malloc'd UTF-8 string (for tests and debugging). */
char *text_clip_normalize_utf8(const char *utf8);

#endif

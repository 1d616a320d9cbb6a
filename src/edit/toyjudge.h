/* A small pixel judge for the toy world (models/toy-sd, examples/toy-clip): what colour is the
 * object, and how much did the background change. After the fixtures' toyworld.classify:
 * per-row background from the 4 leftmost and 4 rightmost columns, object = the largest
 * 4-connected region differing from it, colour = nearest palette entry to the region's median.
 * In the library (not only the tests) because `ocd bench edit` judges toy-model runs with it. */
#ifndef OCD_EDIT_TOYJUDGE_H
#define OCD_EDIT_TOYJUDGE_H

#include <stdint.h>

enum { TOY_RED, TOY_GREEN, TOY_BLUE, TOY_YELLOW, TOY_PURPLE, TOY_ORANGE, TOY_WHITE, TOY_BLACK, TOY_N_COLOURS };
extern const char *const toy_colour_names[TOY_N_COLOURS];

/* rgb [h, w, 3]. Writes the object mask [h*w] (1 = object) when mask != NULL.
 * Returns the colour index, or -1 when no object region is found. */
int toy_object_colour(const uint8_t *rgb, int w, int h, uint8_t *mask);
/* PSNR (dB) of b against a over pixels where keep[i] != 0. */
double toy_psnr_masked(const uint8_t *a, const uint8_t *b, int w, int h, const uint8_t *keep);
/* keep = pixels farther than `margin` pixels (Chebyshev) from any object pixel. */
void toy_background_of(const uint8_t *object_mask, int w, int h, int margin, uint8_t *keep);

#endif

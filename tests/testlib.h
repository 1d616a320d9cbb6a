/* A poor man's test and tensor checker (after llm.c): every check prints one line,
 * float comparisons print max abs and max relative error, and golden comparisons take
 * their tolerances from the golden file's own spec (`__metadata__.spec.outputs`). */
#ifndef OCD_TESTLIB_H
#define OCD_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

#define TEST_DATA "tests/data"
#define GOLDEN_DIR TEST_DATA "/golden"
#define TINY_SD TEST_DATA "/tiny-sd"
#define TINY_SD_LDM TEST_DATA "/tiny-sd-ldm.safetensors"

/* Records one result and prints "PASS|FAIL  name  detail". Returns ok. */
int t_check(int ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* |got - ref| <= atol + rtol |ref| elementwise; prints max abs / max rel error. */
int t_close(const char *name, const float *got, const float *ref, size_t n, double atol, double rtol);
int t_equal_i32(const char *name, const int32_t *got, const int32_t *ref, size_t n);
/* Prints "<prog>: N passed, N failed" and returns the exit status. */
int t_summary(const char *prog);
/* OCD_TEST_QUICK=1 (sanitizer runs): tests may skip their slowest cases. */
int t_quick(void);

/* Golden files. */
st_file *golden_open(const char *case_name);       /* tests/data/golden/<case>.safetensors, aborts on error */
float *golden_f32(st_file *g, const char *name);   /* tensor as f32 (free it), aborts when missing */
/* Compares against output `name` of the golden with the spec's rtol/atol. */
int golden_check(st_file *g, const char *name, const float *got, size_t n);
/* Spec access: the parsed __metadata__.spec as a jansson json_t* (borrowed). */
void *golden_spec(st_file *g);

#endif

/* Shared by the probes: a golden-format input file and its parsed spec. */
#ifndef OCD_APP_PROBE_UTIL_H
#define OCD_APP_PROBE_UTIL_H

#include <jansson.h>

#include "io/safetensors.h"

/* Opens `path` and parses its __metadata__.spec (an empty object when the file has none, so
 * every parameter takes its default). 0, or -1 with the error set and nothing left open. */
int probe_open(const char *path, st_file **f, json_t **spec);

#endif

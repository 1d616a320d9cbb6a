#include "app/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

static int find(const args *a, const char *name) {
    for (int i = 0; i < a->n_spec; i++)
        if (strcmp(a->spec[i].name, name) == 0) return i;
    return -1;
}

int args_parse(args *a, const opt_spec *spec, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->spec = spec;
    while (spec[a->n_spec].name) a->n_spec++;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2) == 0) {
            const char *eq = strchr(s, '=');
            char name[64];
            size_t nl = eq ? (size_t)(eq - s) : strlen(s);
            if (nl >= sizeof name) return ocd_fail("unknown option %.40s...", s);
            memcpy(name, s, nl);
            name[nl] = 0;
            int k = find(a, name);
            if (k < 0) return ocd_fail("unknown option %s (see --help)", name);
            a->present[k] = 1;
            if (spec[k].takes_value) {
                if (eq) a->value[k] = eq + 1;
                else if (i + 1 < argc) a->value[k] = argv[++i];
                else return ocd_fail("option %s needs a value", name);
            } else if (eq) return ocd_fail("option %s takes no value", name);
        } else {
            if (a->n_pos >= 8) return ocd_fail("too many arguments");
            a->pos[a->n_pos++] = s;
        }
    }
    return 0;
}

int args_has(const args *a, const char *name) {
    int k = find(a, name);
    return k >= 0 && a->present[k];
}

const char *args_str(const args *a, const char *name, const char *dflt) {
    int k = find(a, name);
    return k >= 0 && a->present[k] && a->value[k] ? a->value[k] : dflt;
}

int args_int(const args *a, const char *name, long dflt, long lo, long hi, long *out) {
    const char *s = args_str(a, name, NULL);
    if (!s) { *out = dflt; return 0; }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return ocd_fail("%s: \"%s\" is not an integer", name, s);
    if (v < lo || v > hi) return ocd_fail("%s: %ld is outside [%ld, %ld]", name, v, lo, hi);
    *out = v;
    return 0;
}

int args_double(const args *a, const char *name, double dflt, double lo, double hi, double *out) {
    const char *s = args_str(a, name, NULL);
    if (!s) { *out = dflt; return 0; }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return ocd_fail("%s: \"%s\" is not a number", name, s);
    if (v < lo || v > hi) return ocd_fail("%s: %g is outside [%g, %g]", name, v, lo, hi);
    *out = v;
    return 0;
}

void args_usage(const opt_spec *spec, const char *usage_line) {
    printf("usage: %s\n", usage_line);
    for (int i = 0; spec[i].name; i++)
        printf("  %-22s %s\n", spec[i].takes_value ? spec[i].name : spec[i].name, spec[i].help ? spec[i].help : "");
}

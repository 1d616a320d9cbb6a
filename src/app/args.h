/* Command-line options: "--name value" and "--flag", checked against a table so that an
 * unknown option or a malformed number is one clear error. */
#ifndef OCD_APP_ARGS_H
#define OCD_APP_ARGS_H

#define ARGS_MAX 64

typedef struct {
    const char *name;    /* "--steps" */
    int takes_value;
    const char *help;
} opt_spec;

typedef struct {
    const opt_spec *spec;
    int n_spec;
    const char *value[ARGS_MAX];
    int present[ARGS_MAX];
    const char *pos[8];   /* positional arguments */
    int n_pos;
} args;

int args_parse(args *a, const opt_spec *spec, int argc, char **argv);
int args_has(const args *a, const char *name);
const char *args_str(const args *a, const char *name, const char *dflt);
/* Parses an integer in [lo, hi]; dflt when absent. -1 + error when malformed. */
int args_int(const args *a, const char *name, long dflt, long lo, long hi, long *out);
int args_double(const args *a, const char *name, double dflt, double lo, double hi, double *out);
void args_usage(const opt_spec *spec, const char *usage_line);

#endif

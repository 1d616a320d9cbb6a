/* The public header alone: load the tiny model, generate twice, same seed -> same pixels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocd.h"
#include "testlib.h"

int main(int argc, char **argv) {
    (void)argc;
    ocd_model_params mp = ocd_model_default_params();
    mp.path = TINY_SD;
    ocd_model *m = ocd_model_load(&mp);
    if (!t_check(m != NULL, "ocd_model_load", "%s", m ? TINY_SD : ocd_last_error())) return t_summary(argv[0]);
    t_check(ocd_model_n_params(m) == 2783555, "ocd_model_n_params", "%lld", (long long)ocd_model_n_params(m));
    ocd_generate_params gp = ocd_generate_default_params();
    gp.prompt = "a photo of a cat";
    gp.steps = 4;
    gp.seed = 7;
    uint8_t a[64 * 64 * 3], b[64 * 64 * 3];
    int ok = !ocd_generate(m, &gp, a) && !ocd_generate(m, &gp, b);
    t_check(ok && !memcmp(a, b, sizeof a), "ocd_generate: same seed, same pixels", "%s", ok ? "64x64" : ocd_last_error());
    gp.seed = 8;
    ok = !ocd_generate(m, &gp, b);
    t_check(ok && memcmp(a, b, sizeof a), "ocd_generate: other seed, other pixels", "ok");
    gp.sampler = "euler";
    int bad = ocd_generate(m, &gp, b) != 0; /* evaluated before the message is read */
    t_check(bad && strstr(ocd_last_error(), "sampler"), "ocd_generate: bad sampler", "%s", ocd_last_error());
    ocd_model_free(m);
    mp.precision = "fp64";
    bad = ocd_model_load(&mp) == NULL;
    t_check(bad && strstr(ocd_last_error(), "fp64"), "ocd_model_load: bad precision", "%s", ocd_last_error());
    mp.precision = "fp32";
    mp.path = NULL;
    t_check(ocd_model_load(&mp) == NULL, "ocd_model_load: no path", "%s", ocd_last_error());
    return t_summary(argv[0]);
}

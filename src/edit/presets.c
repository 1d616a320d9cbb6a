/* Preset tables (ocd-method.md 1). */
#include "edit/presets.h"

#include <string.h>

#include "base/error.h"

static const char *const names[] = { "fatezero", "optimized", "ocd", NULL };

const char *const *fz_preset_names(void) { return names; }

int fz_preset(fz_params *p, const char *name)
{
    if (!p || !name) return ocd_fail("fz_preset: no parameters or no name");
    int ocd = !strcmp(name, "ocd");
    if (!strcmp(name, "fatezero")) {
        p->solver = OCD_SOLVER_DDIM;
        p->steps = 50;
        p->cfg = 7.5f;
        p->tome_ratio = 0.0f;
        p->oc_tome_lambda = 0.0f;
        p->ocs = 0;
        return 0;
    }
    if (ocd || !strcmp(name, "optimized")) {
        p->solver = OCD_SOLVER_DPMPP_2M;
        p->steps = 20;
        p->cfg = 7.5f;
        p->tome_ratio = 0.5f;
        p->oc_tome_lambda = ocd ? 1.0f : 0.0f;
        p->ocs = ocd;
        return 0;
    }
    return ocd_fail("unknown preset '%s' (known: fatezero, optimized, ocd)", name);
}

static const char *const cv_names[] = { "controlvideo", "optimized", "ocd", NULL };

const char *const *cv_preset_names(void) { return cv_names; }

int cv_preset(cv_params *p, const char *name)
{
    if (!p || !name) return ocd_fail("cv_preset: no parameters or no name");
    const int ocd = !strcmp(name, "ocd"), base = !strcmp(name, "controlvideo");
    if (!base && !ocd && strcmp(name, "optimized"))
        return ocd_fail("unknown preset '%s' (known: controlvideo, optimized, ocd)", name);
    p->solver = base ? OCD_SOLVER_DDIM : OCD_SOLVER_DPMPP_2M;
    p->steps = base ? 50 : 20;
    p->guidance = 12.5f;
    p->ocd.tome_ratio = base ? 0.0f : 0.5f;
    p->ocd.tome_min_tokens = 64;
    p->ocd.oc_tome_lambda = ocd ? 1.0f : 0.0f;
    p->ocd.ocs = ocd;
    return 0;
}

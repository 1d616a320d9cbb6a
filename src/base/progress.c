#include "base/progress.h"

#include <string.h>
#include <unistd.h>

#include "base/util.h"

void progress_init(ocd_progress *p, long total, int quiet) {
    memset(p, 0, sizeof *p);
    p->out = stderr;
    p->tty = isatty(fileno(stderr));
    p->quiet = quiet;
    p->total = total > 0 ? total : 0;
    p->t_start = p->t_phase = ocd_now();
}

void progress_phase(ocd_progress *p, const char *phase, int n_steps) {
    snprintf(p->phase, sizeof p->phase, "%s", phase ? phase : "");
    p->step = 0;
    p->n_steps = n_steps > 0 ? n_steps : 0;
    p->t_phase = ocd_now();
}

void progress_step(ocd_progress *p) {
    double now = ocd_now();
    p->step++;
    p->done++;
    if (p->quiet) return;
    double per_step = (now - p->t_phase) / p->step;
    /* ETA: the whole run's average rate over what is left of it (the phase's when the total is unknown) */
    double left = p->total > p->done ? (double)(p->total - p->done) * (now - p->t_start) / p->done
                  : p->n_steps > p->step ? (p->n_steps - p->step) * per_step : 0.0;
    char line[128];
    snprintf(line, sizeof line, "%s  step %d/%d  %.3g s/step  ETA %.1f s", p->phase, p->step, p->n_steps, per_step, left);
    if (p->tty) {
        /* pad so that a shorter line fully covers the previous one */
        fprintf(p->out, "\r%-60s", line);
        p->line_open = 1;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}

void progress_end(ocd_progress *p) {
    if (p->line_open && !p->quiet) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    p->line_open = 0;
}

double progress_elapsed(const ocd_progress *p) { return ocd_now() - p->t_start; }

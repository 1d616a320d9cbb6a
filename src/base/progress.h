/* Progress of a long run (sampling, inversion, a video edit), reported on stderr.
 *
 * A run has a total number of steps split into named phases ("invert", "sample", ...). On a
 * terminal (isatty(stderr)) one line is rewritten in place with \r:
 *     sample  step 7/20  0.31 s/step  ETA 4.2 s
 * otherwise (logs, pipes, tests) the same text is printed as one plain line per step.
 * s/step is the phase's average; ETA uses the run's average over all steps done so far.
 * Not thread-safe: one reporter per run, called from the thread that drives the loop. */
#ifndef OCD_BASE_PROGRESS_H
#define OCD_BASE_PROGRESS_H

#include <stdio.h>

typedef struct {
    FILE *out;            /* stderr */
    int tty;              /* 1: rewrite one line; 0: one line per step */
    int quiet;            /* 1: print nothing (the counters still run) */
    char phase[32];       /* current phase name */
    int step, n_steps;    /* steps done in the phase / its length */
    long done, total;     /* steps done over the whole run / its planned total (0 = unknown) */
    double t_start;       /* ocd_now() at progress_init */
    double t_phase;       /* ocd_now() at the phase's start */
    int line_open;        /* tty: a \r line is showing and needs a newline before other output */
} ocd_progress;

/* total: planned steps over all phases (for the ETA; 0 = unknown, ETA from the phase). */
void progress_init(ocd_progress *p, long total, int quiet);
/* Starts a named phase of n_steps steps. */
void progress_phase(ocd_progress *p, const char *phase, int n_steps);
/* One step of the current phase is done: updates / prints the line. */
void progress_step(ocd_progress *p);
/* Ends the run's line (tty: prints the newline). Safe to call more than once. */
void progress_end(ocd_progress *p);
/* Seconds since progress_init. */
double progress_elapsed(const ocd_progress *p);

#endif

/* The `ocd` command's subcommands. Each returns the process exit status; on failure it
 * leaves the reason in ocd_last_error() and main prints it as one line. */
#ifndef OCD_APP_APP_H
#define OCD_APP_APP_H

#include <stdint.h>

#include "app/args.h"
#include "nn/sd_model.h"

int cmd_info(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_control(int argc, char **argv);        /* cmd_control.c */
int cmd_bench_control(int argc, char **argv);  /* `ocd bench control`, cmd_control.c */
double bench_sgemm_peak_gflops(void);          /* cmd_bench.c */
int cmd_edit(int argc, char **argv);

/* --model PATH or --random sd15|tiny (--seed S), shared by every subcommand. */
int app_load_model(const args *a, sd_model *m);
/* --threads N (0 or absent = all cores). */
int app_set_threads(const args *a);

#endif

/* opts.h — Kaldi-style command-line options for every ngtrain program.
 *
 * Options are `--name=value` (Kaldi), `--name value` is also accepted for non-bool
 * options, and `--flag` alone sets a bool to true. Names use dashes; underscores in
 * the command line are accepted as dashes. Anything not starting with "--" is a
 * positional argument, returned in order. Unknown options, missing or malformed values
 * are errors naming the option and the value, with the closest known name as a hint.
 *
 *   double lr = 0.0003; int np = 1; const char *dir = NULL; int ng = 1;
 *   ngt_opt table[] = {
 *     {"initial-effective-lrate", NGT_OPT_DOUBLE, &lr, "initial effective learning rate"},
 *     {"dir", NGT_OPT_STRING, &dir, "run directory"},
 *     {"use-natural-gradient", NGT_OPT_BOOL, &ng, "precondition with NG-SGD"}, {0}};
 *   if (ngt_opts_parse(table, argc, argv, pos, &npos, &err)) ...
 */
#ifndef NGTRAIN_OPTS_H
#define NGTRAIN_OPTS_H

#include <stdint.h>
#include <stdio.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  NGT_OPT_END = 0,
  NGT_OPT_INT,     /* int */
  NGT_OPT_INT64,   /* int64_t */
  NGT_OPT_DOUBLE,  /* double */
  NGT_OPT_FLOAT,   /* float */
  NGT_OPT_BOOL,    /* int: true/false/1/0/yes/no */
  NGT_OPT_STRING,  /* const char * (points into argv) */
  NGT_OPT_UINT64   /* uint64_t */
} ngt_opt_type;

typedef struct ngt_opt {
  const char *name;  /* without leading "--" */
  int type;          /* ngt_opt_type; 0 ends the table */
  void *ptr;         /* where the value goes; holds the default on entry */
  const char *help;
  int seen;          /* set to 1 when given on the command line */
} ngt_opt;

/* Parse argv[1..argc). Positional arguments are stored in pos[0..*npos) (pos must have
 * room for argc entries). "--help"/"-h" sets *want_help (if non-NULL) and returns 0. */
int ngt_opts_parse(ngt_opt *table, int argc, char **argv, char **pos, int *npos, int *want_help,
                   ngt_err *err);
/* Print "  --name=<type>   help (default: value)" lines for every option. */
void ngt_opts_print_help(const ngt_opt *table, FILE *out);
/* Print the resolved values as a two-column table (start-up log). */
void ngt_opts_print_values(const ngt_opt *table, FILE *out);
/* The front door of every tool: parse argv with table. Returns 0 with the positional
 * arguments in *pos (caller frees the array, not the strings) when the tool should run.
 * Returns 1 with *exit_code set when it should exit at once: after --help (usage and the
 * option list on stdout, code 0), after a bad option ("prog: message" on stderr, code 1),
 * or when the number of positionals is outside [min_pos, max_pos] (usage on stderr, code
 * 1; max_pos < 0 means no upper limit). */
int ngt_opts_tool(ngt_opt *table, int argc, char **argv, const char *prog, const char *usage,
                  int min_pos, int max_pos, char ***pos, int *npos, int *exit_code);
/* Lookup by name; NULL if absent. */
ngt_opt *ngt_opts_find(ngt_opt *table, const char *name);

#ifdef __cplusplus
}
#endif
#endif

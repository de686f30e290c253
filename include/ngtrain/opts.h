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
  NGT_OPT_INT,    /* int */
  NGT_OPT_INT64,  /* int64_t */
  NGT_OPT_DOUBLE, /* double */
  NGT_OPT_FLOAT,  /* float */
  NGT_OPT_BOOL,   /* int: true/false/1/0/yes/no */
  NGT_OPT_STRING, /* const char * (points into argv) */
  NGT_OPT_UINT64  /* uint64_t */
} ngt_opt_type;

typedef struct ngt_opt {
  const char *name; /* without leading "--" */
  int type;         /* ngt_opt_type; 0 ends the table */
  void *ptr;        /* where the value goes; holds the default on entry */
  const char *help;
  int seen; /* set to 1 when given on the command line */
} ngt_opt;

/* Parse argv[1..argc). Positional arguments are stored in pos[0..*npos) (pos must have
 * room for argc entries). "--help"/"-h" sets *want_help (if non-NULL) and returns 0. */
int ngt_opts_parse(ngt_opt *table, int argc, char **argv, char **pos, int *npos, int *want_help,
                   ngt_err *err);
/* Print "  --name=<type>   help (default: value)" lines for every option. */
void ngt_opts_print_help(const ngt_opt *table, FILE *out);
/* Print the resolved values as a two-column table (start-up log). */
void ngt_opts_print_values(const ngt_opt *table, FILE *out);
/* What a program is, for its --help and its messages (see ngt_opts_tool). */
typedef struct ngt_tool {
  const char *name;     /* program name: prefixes its messages (ngt_log_set_prog) */
  const char *about;    /* what it does: one or more lines, '\n'-separated */
  const char *usage;    /* command line(s) shown after "Usage: " */
  const char *example;  /* example command line(s) shown after "e.g.:  " (required) */
  const char *notes;    /* more text after the examples (input formats, ...), or NULL */
  int min_pos, max_pos; /* positional arguments allowed; max_pos < 0: no upper limit */
} ngt_tool;

/* The front door of every program (ngtrain and tools/): sets the message prefix to
 * tool->name, parses argv with table and returns 0 with the positional arguments in *pos
 * (caller frees the array, not the strings) when the program should run. Otherwise it
 * returns 1 with *exit_code set and the program returns it at once:
 *
 *   situation                                output                         exit code
 *   --help (or -h)                           the help below, on stdout      0
 *   no arguments at all                      the help, on stderr            1
 *   a bad option or value                    "NAME: error: <what, value,    1
 *                                            closest option name>"
 *   too few / too many positional arguments  "NAME: error: ..." + Usage     1
 *
 * Every later error of the program is reported with ngt_fail ("NAME: error: ...", exit 1)
 * and a broken invariant with ngt_die ("NAME: fatal: ...", exit 1): so every program exits
 * 0 on success and 1 on any error, with one message on stderr (NGT_EXIT_*, log.h; README
 * "Exit status"). Under MPI only rank 0 prints (the ranks parse the same argv).
 *
 * Help layout, the same for every program:
 *   NAME: about...
 *
 *   Usage: usage...
 *   e.g.:  example...
 *
 *   notes... (if any)
 *
 *   Options:
 *     --name=<type>   help (default: value)       (ngt_opts_print_help)
 *     --help          print this help and exit
 *   Exit status: 0 on success, 1 on any error (the message is on stderr).
 *
 *   static const ngt_tool tool = {"avgmodel", "average models", "avgmodel [options] in.h5.. out.h5",
 *                                 "avgmodel 1.h5 2.h5 avg.h5", NULL, 2, -1};
 *   if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) return code;
 */
int ngt_opts_tool(const ngt_tool *tool, ngt_opt *table, int argc, char **argv, char ***pos,
                  int *npos, int *exit_code);
/* The help text of a program (layout above). */
void ngt_opts_tool_help(const ngt_tool *tool, const ngt_opt *table, FILE *out);
/* Lookup by name; NULL if absent. */
ngt_opt *ngt_opts_find(ngt_opt *table, const char *name);

#ifdef __cplusplus
}
#endif
#endif

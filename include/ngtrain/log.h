/* log.h — one way to report: levelled logging, recoverable errors, fatal errors.
 *
 * Two tiers (docs/design.md §6):
 *   - anything touching the outside world (files, HDF5, options, configs, MPI) returns
 *     int (0 = ok, negative NGT_E*) and fills a caller-provided ngt_err with one sentence
 *     naming the file, the offending value and what to do;
 *   - broken invariants hit NGT_ASSERT, never compiled out, which calls ngt_die().
 * ngt_die() prints once and exits; under MPI comm.c installs a hook that calls
 * MPI_Abort so every rank stops.
 * Programs report with the same three calls, prefixed with their own name (set once by
 * ngt_opts_tool, "ngtrain" until then): ngt_fail() "PROG: error: ..." (returns the exit
 * code 1), ngt_warn() "PROG: warning: ...", ngt_die() "PROG: fatal: ..." (exits 1).
 *
 *   ngt_err err = {0};
 *   if (ngt_shard_open(path, &sh, &err) != 0) ngt_die("%s", err.msg);
 *   NGT_LOG(NGT_INFO, "iteration %d of %d", it, n);
 *   NGT_ASSERT(rows > 0);
 *
 *   if (ngt_nnet_load(path, &net, &err)) return ngt_fail("%s", err.msg);
 *
 * Global state: the log level, the program name, the rank prefix and the die hook (set
 * once at start-up).
 */
#ifndef NGTRAIN_LOG_H
#define NGTRAIN_LOG_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  NGT_OK = 0,
  NGT_EIO = -1,     /* a file could not be opened/read/written */
  NGT_EFORMAT = -2, /* a file's contents are not what they must be */
  NGT_EINVAL = -3,  /* a bad option, config value or argument */
  NGT_ENOMEM = -4,  /* an allocation failed */
  NGT_EMPI = -5,    /* an MPI call failed or the MPI layout is wrong */
  NGT_ENUM = -6     /* a numerical failure (NaN/Inf where none may be) */
};

/* A recoverable error: code and a sentence for a person. Caller-owned, zero-initialise. */
typedef struct ngt_err {
  int code;
  char msg[1024];
} ngt_err;

/* Fill err (if non-NULL) with code and a printf-formatted message; returns code, so
 * `return ngt_err_set(err, NGT_EIO, "cannot open '%s': %s", p, strerror(errno));` */
int ngt_err_set(ngt_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "context: old message". Returns err->code. */
int ngt_err_prefix(ngt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Exit status of every program (README "Exit status"): 0 success (and --help), 1 any error
 * (a bad option or argument, bad data, a failed write), with one message on stderr. Kaldi's
 * programs exit the same way. mpirun reports a rank's MPI_Abort as a non-zero status too. */
enum { NGT_EXIT_OK = 0, NGT_EXIT_FAILURE = 1 };

enum ngt_log_level { NGT_ERROR = 0, NGT_WARN = 1, NGT_INFO = 2, NGT_DEBUG = 3, NGT_TRACE = 4 };

/* Current level: messages with level <= this are printed. Default NGT_INFO.
 * Kaldi's --verbose=N maps to NGT_INFO + N. */
extern int ngt_log_level_current;

void ngt_log_set_level(int level);
/* Rank prefix; only rank 0 prints INFO and DEBUG unless the level is >= NGT_TRACE. */
void ngt_log_set_rank(int rank, int nranks);
int ngt_log_rank(void);

void ngt_log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Tests the level before evaluating the arguments (redis serverLog). */
#define NGT_LOG(level, ...)                                    \
  do {                                                         \
    if ((level) <= ngt_log_level_current)                      \
      ngt_log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define NGT_WARN_MSG(...) NGT_LOG(NGT_WARN, __VA_ARGS__)

/* The program name that prefixes ngt_fail/ngt_warn/ngt_die messages (default "ngtrain");
 * ngt_opts_tool sets it. name must outlive the program (a string literal). */
void ngt_log_set_prog(const char *name);
const char *ngt_log_prog(void);

/* Print "PROG: error: <msg>" to stderr and return NGT_EXIT_FAILURE, so a program's main
 * reports and leaves in one line: `return ngt_fail("%s", err.msg);`. */
int ngt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "PROG: warning: <msg>" to stderr (a tool's user-facing warning; the trainer's
 * timestamped log uses NGT_LOG(NGT_WARN, ...)). */
void ngt_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "PROG: fatal: <msg>" once and stop the program (every rank under MPI). */
_Noreturn void ngt_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Installed by comm.c: called by ngt_die after printing, must not return. */
void ngt_set_die_hook(void (*hook)(int exit_code));

#define NGT_ASSERT(cond)                                                \
  do {                                                                  \
    if (!(cond))                                                        \
      ngt_die("%s:%d: assertion '%s' failed (a bug in ngtrain; please " \
              "report it with the command line)",                       \
              __FILE__, __LINE__, #cond);                               \
  } while (0)

/* malloc/calloc that die with a clear message on failure (for sizes that are not
 * user-controlled); for user-controlled sizes use malloc and return NGT_ENOMEM. */
void *ngt_xmalloc(size_t n);
void *ngt_xcalloc(size_t n, size_t size);

/* Wall-clock seconds (monotonic). */
double ngt_now(void);

/* CPU seconds of this process since it started: every thread, user + system. */
double ngt_cpu_now(void);

#ifdef __cplusplus
}
#endif
#endif

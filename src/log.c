/* log.c — see include/ngtrain/log.h. */
#include "ngtrain/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ngt_log_level_current = NGT_INFO;
static int g_rank = 0, g_nranks = 1;
static void (*g_die_hook)(int) = NULL;
static const char *g_prog = "ngtrain";

void ngt_log_set_level(int level) { ngt_log_level_current = level; }
void ngt_log_set_rank(int rank, int nranks) {
  g_rank = rank;
  g_nranks = nranks;
}
int ngt_log_rank(void) { return g_rank; }
void ngt_set_die_hook(void (*hook)(int)) { g_die_hook = hook; }
void ngt_log_set_prog(const char *name) { g_prog = name && *name ? name : "ngtrain"; }
const char *ngt_log_prog(void) { return g_prog; }

int ngt_err_set(ngt_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

int ngt_err_prefix(ngt_err *err, const char *fmt, ...) {
  if (!err) return NGT_EINVAL;
  char pre[512], old[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  size_t n = strlen(pre);
  if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
  memcpy(err->msg, pre, n);
  err->msg[n] = ':';
  err->msg[n + 1] = ' ';
  size_t room = sizeof err->msg - n - 2;
  size_t m = strnlen(old, room - 1);
  memcpy(err->msg + n + 2, old, m);
  err->msg[n + 2 + m] = '\0';
  return err->code;
}

static const char *level_name(int level) {
  switch (level) {
    case NGT_ERROR: return "ERROR";
    case NGT_WARN: return "WARN";
    case NGT_INFO: return "INFO";
    case NGT_DEBUG: return "DEBUG";
    default: return "TRACE";
  }
}

void ngt_log_write(int level, const char *file, int line, const char *fmt, ...) {
  /* INFO/DEBUG come from the coordinator only, unless tracing (llm.c printf0). */
  if (level >= NGT_INFO && g_rank != 0 && ngt_log_level_current < NGT_TRACE) return;
  char ts[32];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  FILE *out = level <= NGT_WARN ? stderr : stdout;
  char body[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  if (g_nranks > 1) fprintf(out, "%s [rank %d] %s", ts, g_rank, level_name(level));
  else
    fprintf(out, "%s %s", ts, level_name(level));
  if (level >= NGT_DEBUG) fprintf(out, " (%s:%d)", file, line);
  fprintf(out, " %s\n", body);
  fflush(out);
}

/* One line "PROG: what: body" on stderr; with_rank under MPI: "PROG: what [rank R]: body"
 * (ngt_die: any rank may stop; errors and warnings of the program as a whole are untagged). */
static void report(const char *what, int with_rank, const char *fmt, va_list ap) {
  char body[4096];
  vsnprintf(body, sizeof body, fmt, ap);
  fflush(stdout);
  if (with_rank && g_nranks > 1)
    fprintf(stderr, "%s: %s [rank %d]: %s\n", g_prog, what, g_rank, body);
  else
    fprintf(stderr, "%s: %s: %s\n", g_prog, what, body);
  fflush(stderr);
}

int ngt_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report("error", 0, fmt, ap);
  va_end(ap);
  return NGT_EXIT_FAILURE;
}

void ngt_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report("warning", 0, fmt, ap);
  va_end(ap);
}

_Noreturn void ngt_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report("fatal", 1, fmt, ap);
  va_end(ap);
  if (g_die_hook) g_die_hook(NGT_EXIT_FAILURE);
  exit(NGT_EXIT_FAILURE);
}

void *ngt_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) ngt_die("out of memory allocating %zu bytes", n);
  return p;
}

void *ngt_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) ngt_die("out of memory allocating %zu x %zu bytes", n, size);
  return p;
}

double ngt_cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ngt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* opts.c — see include/ngtrain/opts.h. */
#include "ngtrain/opts.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void normalize_name(const char *in, size_t n, char *out, size_t outlen) {
  size_t i = 0;
  for (; i < n && i + 1 < outlen; i++) out[i] = in[i] == '_' ? '-' : in[i];
  out[i] = '\0';
}

/* Levenshtein distance, for "did you mean". */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  int d[65][65];
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      d[i][j] = c;
    }
  return d[la][lb];
}

ngt_opt *ngt_opts_find(ngt_opt *table, const char *name) {
  for (ngt_opt *o = table; o->name; o++)
    if (strcmp(o->name, name) == 0) return o;
  return NULL;
}

static const char *type_name(int t) {
  switch (t) {
    case NGT_OPT_INT:
    case NGT_OPT_INT64:
    case NGT_OPT_UINT64: return "int";
    case NGT_OPT_DOUBLE:
    case NGT_OPT_FLOAT: return "float";
    case NGT_OPT_BOOL: return "bool";
    default: return "string";
  }
}

static int parse_bool(const char *v, int *out) {
  if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "True")) {
    *out = 1;
    return 0;
  }
  if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "False")) {
    *out = 0;
    return 0;
  }
  return -1;
}

static int set_value(ngt_opt *o, const char *v, ngt_err *err) {
  char *end = NULL;
  errno = 0;
  switch (o->type) {
    case NGT_OPT_INT: {
      long x = strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || errno || x < -2147483647L || x > 2147483647L)
        return ngt_err_set(err, NGT_EINVAL, "option --%s: '%s' is not an integer", o->name, v);
      *(int *)o->ptr = (int)x;
      break;
    }
    case NGT_OPT_INT64: {
      long long x = strtoll(v, &end, 10);
      if (*v == '\0' || *end != '\0' || errno)
        return ngt_err_set(err, NGT_EINVAL, "option --%s: '%s' is not an integer", o->name, v);
      *(int64_t *)o->ptr = (int64_t)x;
      break;
    }
    case NGT_OPT_UINT64: {
      if (*v == '-')
        return ngt_err_set(err, NGT_EINVAL, "option --%s: '%s' must be a non-negative integer",
                           o->name, v);
      unsigned long long x = strtoull(v, &end, 10);
      if (*v == '\0' || *end != '\0' || errno)
        return ngt_err_set(err, NGT_EINVAL, "option --%s: '%s' is not a non-negative integer",
                           o->name, v);
      *(uint64_t *)o->ptr = (uint64_t)x;
      break;
    }
    case NGT_OPT_DOUBLE:
    case NGT_OPT_FLOAT: {
      double x = strtod(v, &end);
      if (*v == '\0' || *end != '\0' || errno || !isfinite(x))
        return ngt_err_set(err, NGT_EINVAL, "option --%s: '%s' is not a finite number", o->name,
                           v);
      if (o->type == NGT_OPT_DOUBLE) *(double *)o->ptr = x;
      else
        *(float *)o->ptr = (float)x;
      break;
    }
    case NGT_OPT_BOOL:
      if (parse_bool(v, (int *)o->ptr))
        return ngt_err_set(err, NGT_EINVAL,
                           "option --%s: '%s' is not a boolean (use true or false)", o->name, v);
      break;
    case NGT_OPT_STRING: *(const char **)o->ptr = v; break;
    default: return ngt_err_set(err, NGT_EINVAL, "option --%s: bad option table", o->name);
  }
  o->seen = 1;
  return 0;
}

int ngt_opts_parse(ngt_opt *table, int argc, char **argv, char **pos, int *npos, int *want_help,
                   ngt_err *err) {
  *npos = 0;
  if (want_help) *want_help = 0;
  int only_pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      if (!only_pos && !strcmp(a, "--")) {
        only_pos = 1;
        continue;
      }
      if (!strcmp(a, "-h")) {
        if (want_help) *want_help = 1;
        continue;
      }
      if (a[0] == '-' && a[1] != '\0' && !only_pos)
        return ngt_err_set(err, NGT_EINVAL,
                           "unknown option '%s' (options are written --name=value; see --help)",
                           a);
      pos[(*npos)++] = argv[i];
      continue;
    }
    const char *body = a + 2, *eq = strchr(body, '=');
    char name[128];
    normalize_name(body, eq ? (size_t)(eq - body) : strlen(body), name, sizeof name);
    if (!strcmp(name, "help")) {
      if (want_help) *want_help = 1;
      continue;
    }
    ngt_opt *o = ngt_opts_find(table, name);
    if (!o) {
      const char *best = NULL;
      int bd = 4;
      for (ngt_opt *t = table; t->name; t++) {
        int d = edit_distance(name, t->name);
        if (d < bd) {
          bd = d;
          best = t->name;
        }
      }
      if (best)
        return ngt_err_set(err, NGT_EINVAL, "unknown option --%s (did you mean --%s? see --help)",
                           name, best);
      return ngt_err_set(err, NGT_EINVAL, "unknown option --%s (see --help for the list)", name);
    }
    const char *v;
    if (eq) {
      v = eq + 1;
    } else if (o->type == NGT_OPT_BOOL) {
      v = "true";
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      return ngt_err_set(err, NGT_EINVAL, "option --%s needs a value (--%s=<%s>)", name, name,
                         type_name(o->type));
    }
    int rc = set_value(o, v, err);
    if (rc) return rc;
  }
  return 0;
}

static void format_value(const ngt_opt *o, char *buf, size_t n) {
  switch (o->type) {
    case NGT_OPT_INT: snprintf(buf, n, "%d", *(const int *)o->ptr); break;
    case NGT_OPT_INT64: snprintf(buf, n, "%" PRId64, *(const int64_t *)o->ptr); break;
    case NGT_OPT_UINT64: snprintf(buf, n, "%" PRIu64, *(const uint64_t *)o->ptr); break;
    case NGT_OPT_DOUBLE: snprintf(buf, n, "%g", *(const double *)o->ptr); break;
    case NGT_OPT_FLOAT: snprintf(buf, n, "%g", (double)*(const float *)o->ptr); break;
    case NGT_OPT_BOOL: snprintf(buf, n, "%s", *(const int *)o->ptr ? "true" : "false"); break;
    default: {
      const char *s = *(const char *const *)o->ptr;
      snprintf(buf, n, "%s", s ? s : "");
    }
  }
}

void ngt_opts_print_help(const ngt_opt *table, FILE *out) {
  for (const ngt_opt *o = table; o->name; o++) {
    char val[256], lhs[128];
    format_value(o, val, sizeof val);
    snprintf(lhs, sizeof lhs, "--%s=<%s>", o->name, type_name(o->type));
    fprintf(out, "  %-36s %s", lhs, o->help);
    if (val[0]) fprintf(out, " (default: %s)", val);
    fprintf(out, "\n");
  }
}

void ngt_opts_print_values(const ngt_opt *table, FILE *out) {
  for (const ngt_opt *o = table; o->name; o++) {
    char val[256];
    format_value(o, val, sizeof val);
    fprintf(out, "  %-30s %s%s\n", o->name, val[0] ? val : "-", o->seen ? "" : "  (default)");
  }
}

/* Lines of text, the first after `first`, the others indented by `indent` spaces. */
static void print_block(FILE *out, const char *first, int indent, const char *text) {
  fputs(first, out);
  for (const char *t = text; *t;) {
    const char *nl = strchr(t, '\n');
    size_t n = nl ? (size_t)(nl - t) : strlen(t);
    if (t != text) fprintf(out, "%*s", indent, "");
    fprintf(out, "%.*s\n", (int)n, t);
    t += nl ? n + 1 : n;
  }
}

static void print_usage(const ngt_tool *tool, FILE *out) {
  print_block(out, "Usage: ", 7, tool->usage);
  print_block(out, "e.g.:  ", 7, tool->example);
}

void ngt_opts_tool_help(const ngt_tool *tool, const ngt_opt *table, FILE *out) {
  fprintf(out, "%s: ", tool->name);
  print_block(out, "", 0, tool->about);
  fputc('\n', out);
  print_usage(tool, out);
  if (tool->notes && *tool->notes) {
    fputc('\n', out);
    print_block(out, "", 0, tool->notes);
  }
  fputs("\nOptions:\n", out);
  ngt_opts_print_help(table, out);
  fprintf(out, "  %-36s %s\n", "--help", "print this help and exit");
  fputs("Exit status: 0 on success, 1 on any error (the message is on stderr).\n", out);
}

static void expected_count(const ngt_tool *tool, char *buf, size_t n) {
  if (tool->max_pos < 0) snprintf(buf, n, "at least %d", tool->min_pos);
  else if (tool->max_pos == tool->min_pos)
    snprintf(buf, n, "%d", tool->min_pos);
  else
    snprintf(buf, n, "%d to %d", tool->min_pos, tool->max_pos);
}

int ngt_opts_tool(const ngt_tool *tool, ngt_opt *table, int argc, char **argv, char ***pos,
                  int *npos, int *exit_code) {
  ngt_log_set_prog(tool->name);
  const int talk = ngt_log_rank() == 0; /* under MPI every rank parses; rank 0 speaks */
  *npos = 0;
  *exit_code = NGT_EXIT_FAILURE;
  *pos = calloc((size_t)argc + 1, sizeof(char *));
  if (!*pos) {
    if (talk) ngt_fail("out of memory");
    return 1;
  }
  int help = 0;
  ngt_err err = {0};
  if (ngt_opts_parse(table, argc, argv, *pos, npos, &help, &err)) {
    if (talk) ngt_fail("%s", err.msg);
  } else if (help) {
    if (talk) ngt_opts_tool_help(tool, table, stdout);
    *exit_code = NGT_EXIT_OK;
  } else if (argc <= 1) { /* every program needs some input */
    if (talk) ngt_opts_tool_help(tool, table, stderr);
  } else if (*npos < tool->min_pos || (tool->max_pos >= 0 && *npos > tool->max_pos)) {
    if (talk) {
      char want[64];
      expected_count(tool, want, sizeof want);
      if (tool->max_pos == 0)
        ngt_fail("unexpected argument '%s' (%s takes options only, written --name=value; see "
                 "--help)",
                 (*pos)[0], tool->name);
      else if (*npos > tool->max_pos && tool->max_pos >= 0)
        ngt_fail("expected %s argument(s), got %d (the first extra one is '%s'); see --help", want,
                 *npos, (*pos)[tool->max_pos]);
      else
        ngt_fail("expected %s argument(s), got %d; see --help", want, *npos);
      print_usage(tool, stderr);
    }
  } else {
    return 0;
  }
  fflush(stdout);
  free(*pos);
  *pos = NULL;
  return 1;
}

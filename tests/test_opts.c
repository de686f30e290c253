/* test_opts.c — the Kaldi-style option parser (values, errors, hints) and the programs' front
 * door ngt_opts_tool (help layout, exit codes, message prefix). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/opts.h"

static double lr;
static int ng, mb;
static int64_t spi;
static const char *dir;

static void reset(ngt_opt *t) {
  lr = 0.0003;
  ng = 1;
  mb = 512;
  spi = 400000;
  dir = NULL;
  for (ngt_opt *o = t; o->name; o++) o->seen = 0;
}

static ngt_opt table[] = {{"initial-effective-lrate", NGT_OPT_DOUBLE, &lr, "lr", 0},
                          {"use-natural-gradient", NGT_OPT_BOOL, &ng, "ng", 0},
                          {"minibatch-size", NGT_OPT_INT, &mb, "mb", 0},
                          {"samples-per-iter", NGT_OPT_INT64, &spi, "spi", 0},
                          {"dir", NGT_OPT_STRING, &dir, "dir", 0},
                          {0, 0, 0, 0, 0}};

static int parse(int argc, char **argv, ngt_err *e, int *npos, char **pos) {
  reset(table);
  int help = 0;
  return ngt_opts_parse(table, argc, argv, pos, npos, &help, e);
}

START_TEST(values) {
  char *argv[] = {"prog",
                  "--initial-effective-lrate=0.01",
                  "--use-natural-gradient=false",
                  "--minibatch_size",
                  "256",
                  "--samples-per-iter=1000",
                  "pos1",
                  "--dir=x",
                  "pos2"};
  char *pos[10];
  int npos = 0;
  ngt_err e = {0};
  ck_assert_int_eq(parse(9, argv, &e, &npos, pos), 0);
  ck_assert_double_eq(lr, 0.01);
  ck_assert_int_eq(ng, 0);
  ck_assert_int_eq(mb, 256);
  ck_assert_int_eq((int)spi, 1000);
  ck_assert_str_eq(dir, "x");
  ck_assert_int_eq(npos, 2);
  ck_assert_str_eq(pos[1], "pos2");
  char *argv2[] = {"prog", "--use-natural-gradient"};
  ck_assert_int_eq(parse(2, argv2, &e, &npos, pos), 0);
  ck_assert_int_eq(ng, 1);
}
END_TEST

START_TEST(errors) {
  char *pos[10];
  int npos = 0;
  ngt_err e = {0};
  char *a1[] = {"prog", "--minibach-size=3"};
  ck_assert_int_ne(parse(2, a1, &e, &npos, pos), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "did you mean --minibatch-size"));
  char *a2[] = {"prog", "--minibatch-size=abc"};
  ck_assert_int_ne(parse(2, a2, &e, &npos, pos), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "'abc' is not an integer"));
  char *a3[] = {"prog", "--use-natural-gradient=maybe"};
  ck_assert_int_ne(parse(2, a3, &e, &npos, pos), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "not a boolean"));
  char *a4[] = {"prog", "--initial-effective-lrate=nan"};
  ck_assert_int_ne(parse(2, a4, &e, &npos, pos), 0);
  char *a5[] = {"prog", "--dir"};
  ck_assert_int_ne(parse(2, a5, &e, &npos, pos), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "needs a value"));
  char *a6[] = {"prog", "-x"};
  ck_assert_int_ne(parse(2, a6, &e, &npos, pos), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "unknown option '-x'"));
  char *a7[] = {"prog", "--totally-unrelated-thing=1"};
  ck_assert_int_ne(parse(2, a7, &e, &npos, pos), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "unknown option --totally-unrelated-thing"));
}
END_TEST

/* The front door: the help layout, exit codes and the message prefix of every program. */
START_TEST(tool_front_door) {
  static const ngt_tool tool = {"toolx",
                                "does x to IN.\nA second line.",
                                "toolx [options] IN OUT",
                                "toolx a.h5 b.h5\ntoolx --dir=d a.h5 b.h5",
                                NULL,
                                2,
                                2};
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  ngt_opts_tool_help(&tool, table, f);
  char buf[8192];
  size_t n = (rewind(f), fread(buf, 1, sizeof buf - 1, f));
  buf[n] = '\0';
  fclose(f);
  const char *head = "toolx: does x to IN.\nA second line.\n\nUsage: toolx [options] IN OUT\n"
                     "e.g.:  toolx a.h5 b.h5\n       toolx --dir=d a.h5 b.h5\n\nOptions:\n";
  ck_assert_msg(strncmp(buf, head, strlen(head)) == 0, "%s", buf);
  ck_assert_ptr_nonnull(strstr(buf, "--minibatch-size=<int>"));
  ck_assert_ptr_nonnull(strstr(buf, "--help"));
  ck_assert_ptr_nonnull(strstr(buf, "Exit status: 0 on success, 1 on any error"));

  ck_assert_ptr_nonnull(freopen("/dev/null", "w", stdout)); /* the help and usage texts */
  ck_assert_ptr_nonnull(freopen("/dev/null", "w", stderr));
  char **pos = NULL;
  int npos = 0, code = -1;
  char *ok[] = {"toolx", "--minibatch-size=64", "in", "out"};
  reset(table);
  ck_assert_int_eq(ngt_opts_tool(&tool, table, 4, ok, &pos, &npos, &code), 0);
  ck_assert_int_eq(npos, 2);
  ck_assert_str_eq(pos[1], "out");
  ck_assert_int_eq(mb, 64);
  free(pos);
  ck_assert_str_eq(ngt_log_prog(), "toolx"); /* messages carry the program's own name */
  char *help[] = {"toolx", "--help"}, *bad[] = {"toolx", "--minibach-size=3", "a", "b"},
       *few[] = {"toolx", "a"}, *many[] = {"toolx", "a", "b", "c"}, *none[] = {"toolx"};
  struct {
    char **argv;
    int argc, code;
  } cases[] = {{help, 2, NGT_EXIT_OK},
               {bad, 4, NGT_EXIT_FAILURE},
               {few, 2, NGT_EXIT_FAILURE},
               {many, 4, NGT_EXIT_FAILURE},
               {none, 1, NGT_EXIT_FAILURE}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    code = -1;
    pos = (char **)1;
    ck_assert_int_eq(ngt_opts_tool(&tool, table, cases[i].argc, cases[i].argv, &pos, &npos, &code),
                     1);
    ck_assert_int_eq(code, cases[i].code);
    ck_assert_ptr_null(pos);
  }
  ck_assert_int_eq(ngt_fail("a %s", "message"), NGT_EXIT_FAILURE);
}
END_TEST

int main(void) {
  Suite *s = suite_create("opts");
  TCase *t = tcase_create("core");
  tcase_add_test(t, values);
  tcase_add_test(t, errors);
  tcase_add_test(t, tool_front_door);
  suite_add_tcase(s, t);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int nf = srunner_ntests_failed(r);
  srunner_free(r);
  return nf != 0;
}

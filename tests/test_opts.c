/* test_opts.c — the Kaldi-style option parser: values, errors, hints. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "ngtrain/opts.h"

static double lr;
static int ng, mb;
static int64_t spi;
static const char *dir;

static void reset(ngt_opt *t) {
  lr = 0.0003; ng = 1; mb = 512; spi = 400000; dir = NULL;
  for (ngt_opt *o = t; o->name; o++) o->seen = 0;
}

static ngt_opt table[] = {
    {"initial-effective-lrate", NGT_OPT_DOUBLE, &lr, "lr", 0},
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
  char *argv[] = {"prog", "--initial-effective-lrate=0.01", "--use-natural-gradient=false",
                  "--minibatch_size", "256", "--samples-per-iter=1000", "pos1", "--dir=x", "pos2"};
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

int main(void) {
  Suite *s = suite_create("opts");
  TCase *t = tcase_create("core");
  tcase_add_test(t, values);
  tcase_add_test(t, errors);
  suite_add_tcase(s, t);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int nf = srunner_ntests_failed(r);
  srunner_free(r);
  return nf != 0;
}

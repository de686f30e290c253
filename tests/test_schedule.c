/* test_schedule.c — Kaldi's job schedule and learning rates (docs/algorithm.md §4.2, §6 (j)). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/schedule.h"

START_TEST(kaldi_num_jobs_vectors) {
  /* Kaldi's own unit test: I = 12, (J0, Js, J1) = (2, 1, 9) and (2, 3, 9). */
  const int a[12] = {2, 3, 3, 4, 4, 5, 6, 6, 7, 7, 8, 8};
  const int b[12] = {2, 3, 3, 3, 3, 6, 6, 6, 6, 6, 9, 9};
  for (int i = 0; i < 12; i++) {
    ck_assert_int_eq(ngt_schedule_jobs_raw(i, 12, 2, 1, 9), a[i]);
    ck_assert_int_eq(ngt_schedule_jobs_raw(i, 12, 2, 3, 9), b[i]);
  }
}
END_TEST

START_TEST(iterations_and_lrates) {
  ngt_schedule s;
  ngt_err e = {0};
  /* 1,000,000 frames, 100,000 per iter -> A = 10; 3 epochs -> W = 30; jobs 1..4 -> I = 12 */
  ck_assert_int_eq(ngt_schedule_init(&s, 3.0, 1000000, 100000, 1, 4, 1, 0.003, 0.0003, &e), 0);
  ck_assert_int_eq(s.num_iters, 12);
  ck_assert_int_eq((int)s.archives_to_process, 30);
  int64_t p = 0;
  for (int i = 0; i < s.num_iters; i++) {
    ck_assert_int_eq((int)ngt_schedule_processed(&s, i), (int)p);
    double expect = i + 1 >= s.num_iters ? 0.0003 : 0.003 * exp(p * log(0.1) / 30.0);
    ck_assert_double_eq_tol(ngt_schedule_lrate_eff(&s, i), expect, 1e-15);
    p += ngt_schedule_jobs(&s, i);
  }
  ck_assert_double_eq_tol(ngt_schedule_lrate_eff(&s, 0), 0.003, 1e-15);
  ck_assert_double_eq_tol(ngt_schedule_lrate_eff(&s, 11), 0.0003, 1e-15);
  ck_assert_double_eq_tol(ngt_schedule_epoch(&s, 0), 0.0, 1e-15);
  /* combination window: min(20, I/2) */
  ck_assert_int_eq(ngt_schedule_combine_count(&s, 20), 6);
  ck_assert_int_eq(ngt_schedule_combine_count(&s, 4), 4);
}
END_TEST

START_TEST(tiny_data_gives_one_iteration) {
  ngt_schedule s;
  ngt_err e = {0};
  ck_assert_int_eq(ngt_schedule_init(&s, 1.0, 100, 400000, 1, 1, 1, 0.1, 0.01, &e), 0);
  ck_assert_int_eq(s.num_iters, 1);
  ck_assert_int_eq(ngt_schedule_combine_count(&s, 20), 1);
  ck_assert_double_eq(ngt_schedule_lrate_eff(&s, 0), 0.01);
}
END_TEST

START_TEST(bad_settings) {
  ngt_schedule s;
  ngt_err e = {0};
  ck_assert_int_ne(ngt_schedule_init(&s, 0.0, 100, 10, 1, 1, 1, 0.1, 0.01, &e), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "--num-epochs"));
  ck_assert_int_ne(ngt_schedule_init(&s, 1.0, 100, 10, 3, 2, 1, 0.1, 0.01, &e), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "--num-jobs-final=2"));
  ck_assert_int_ne(ngt_schedule_init(&s, 1.0, 100, 10, 1, 1, 1, -0.1, 0.01, &e), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "learning rates"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("schedule");
  TCase *t = tcase_create("core");
  tcase_add_test(t, kaldi_num_jobs_vectors);
  tcase_add_test(t, iterations_and_lrates);
  tcase_add_test(t, tiny_data_gives_one_iteration);
  tcase_add_test(t, bad_settings);
  suite_add_tcase(s, t);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int nf = srunner_ntests_failed(r);
  srunner_free(r);
  return nf != 0;
}

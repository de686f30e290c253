/* test_train.c — the trainer's decisions without MPI: job acceptance and averaging
 * (docs/algorithm.md §4.3, BMUF), the option choices parsed once, and the typed
 * checkpoint state (write, read, interpret, fall back, refuse another run's). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/train_internal.h"
#include "ngtrain/checkpoint.h"
#include "ngtrain/coordinator.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"

START_TEST(accept_iteration0_takes_the_best_only) {
  ngt_job_result r[4] = {{-2.0 * 100, 100, 1, 1},
                         {-1.0 * 100, 100, 1, 1},
                         {-0.5 * 100, 100, 0, 1},
                         {-1.0 * 50, 50, 1, 1}};
  int m[4];
  /* job 2 is best but not finite; jobs 1 and 3 tie: the first wins */
  ck_assert_int_eq(ngt_accept_jobs(r, 4, 0, m), 1);
  ck_assert_int_eq(m[0], NGT_JOB_NOT_BEST);
  ck_assert_int_eq(m[1], NGT_JOB_ACCEPTED);
  ck_assert_int_eq(m[2], NGT_JOB_NONFINITE);
  ck_assert_int_eq(m[3], NGT_JOB_NOT_BEST);
}
END_TEST

START_TEST(accept_later_iterations_within_one_of_the_best) {
  ngt_job_result r[6] = {{0, 0, 0, 0},           /* the coordinator: no job */
                         {-1.0 * 10, 10, 1, 1},  /* best */
                         {-2.0 * 10, 10, 1, 1},  /* exactly 1.0 below: in */
                         {-2.01 * 10, 10, 1, 1}, /* just more than 1.0 below: out */
                         {NAN, 10, 0, 1},        /* diverged */
                         {0, 0, 1, 1}};          /* active but no frames: idle */
  int m[6];
  ck_assert_int_eq(ngt_accept_jobs(r, 6, 5, m), 2);
  const int want[6] = {NGT_JOB_IDLE,       NGT_JOB_ACCEPTED,  NGT_JOB_ACCEPTED,
                       NGT_JOB_BELOW_BEST, NGT_JOB_NONFINITE, NGT_JOB_IDLE};
  for (int j = 0; j < 6; j++) ck_assert_int_eq(m[j], want[j]);
}
END_TEST

START_TEST(accept_none_when_every_job_diverged) {
  ngt_job_result r[3] = {{NAN, 10, 0, 1}, {INFINITY, 10, 0, 1}, {-1, 10, 0, 1}};
  int m[3];
  ck_assert_int_eq(ngt_accept_jobs(r, 3, 0, m), 0);
  ck_assert_int_eq(ngt_accept_jobs(r, 3, 7, m), 0);
  for (int j = 0; j < 3; j++) ck_assert_int_eq(m[j], NGT_JOB_NONFINITE);
}
END_TEST

START_TEST(average_is_sum_over_n_in_float) {
  float sum[5] = {3.0f, -1.5f, 0.0f, 1e-7f, 9.0f}, out[5];
  ngt_average_params(sum, 3, 5, out);
  for (int i = 0; i < 5; i++) ck_assert(out[i] == sum[i] * (1.0f / 3.0f));
  ngt_average_params(sum, 1, 5, sum); /* in place, n = 1: unchanged */
  ck_assert(sum[1] == -1.5f && sum[4] == 9.0f);
}
END_TEST

START_TEST(bmuf_matches_the_block_momentum_recurrence) {
  /* η = 0.5, ζ = 1: two blocks by hand in double */
  float g[2] = {1.0f, -2.0f}, d[2] = {0.0f, 0.0f}, look[2];
  double G[2] = {1, -2}, D[2] = {0, 0};
  const float eta = 0.5f, zeta = 1.0f;
  const float sums[2][2] = {{2 * 1.5f, 2 * -1.0f}, {2 * 2.0f, 2 * -0.5f}};
  for (int b = 0; b < 2; b++) {
    ngt_bmuf_lookahead(g, d, 2, eta, look);
    for (int i = 0; i < 2; i++) ck_assert(fabs(look[i] - (G[i] + 0.5 * D[i])) < 1e-6);
    ngt_bmuf_update(sums[b], 2, 2, eta, zeta, g, d);
    for (int i = 0; i < 2; i++) {
      double wb = G[i] + 0.5 * D[i], grad = sums[b][i] / 2.0 - wb;
      D[i] = 0.5 * D[i] + grad;
      G[i] += D[i];
      ck_assert(fabs(g[i] - G[i]) < 1e-6 && fabs(d[i] - D[i]) < 1e-6);
    }
  }
  /* η = 0, ζ = 1 is the plain average */
  float g2[2] = {5, 5}, d2[2] = {0, 0}, avg[2];
  ngt_bmuf_update(sums[0], 2, 2, 0.0f, 1.0f, g2, d2);
  ngt_average_params(sums[0], 2, 2, avg);
  ck_assert(g2[0] == avg[0] && g2[1] == avg[1]);
}
END_TEST

START_TEST(choices_are_parsed_once_with_clear_errors) {
  ngt_train_opts o = ngt_train_opts_default();
  ngt_train_choices ch;
  char msg[256];
  ck_assert_int_eq(ngt_train_parse_choices(&o, &ch, msg, sizeof msg), 0);
  ck_assert_int_eq(ch.precond, NGT_PRECOND_ONLINE);
  ck_assert_int_eq(ch.transform, NGT_TRANSFORM_LDA);
  ck_assert_int_eq(ch.averaging, NGT_AVERAGING_MEAN);
  o.preconditioner = "simple";
  o.input_transform = "cmvn";
  o.averaging = "bmuf";
  ck_assert_int_eq(ngt_train_parse_choices(&o, &ch, msg, sizeof msg), 0);
  ck_assert_int_eq(ch.precond, NGT_PRECOND_SIMPLE);
  ck_assert_int_eq(ch.transform, NGT_TRANSFORM_CMVN);
  ck_assert_int_eq(ch.averaging, NGT_AVERAGING_BMUF);
  o.use_natural_gradient = 0;
  ck_assert_int_eq(ngt_train_parse_choices(&o, &ch, msg, sizeof msg), 0);
  ck_assert_int_eq(ch.precond, NGT_PRECOND_NONE);
  o.averaging = "median";
  ck_assert_int_ne(ngt_train_parse_choices(&o, &ch, msg, sizeof msg), 0);
  ck_assert_ptr_nonnull(strstr(msg, "--averaging=median: use average or bmuf"));
  o.averaging = "bmuf";
  o.input_transform = "pca";
  ck_assert_int_ne(ngt_train_parse_choices(&o, &ch, msg, sizeof msg), 0);
  ck_assert_ptr_nonnull(strstr(msg, "--input-transform=pca"));
  o.input_transform = "none";
  o.preconditioner = "fast";
  ck_assert_int_ne(ngt_train_parse_choices(&o, &ch, msg, sizeof msg), 0);
  ck_assert_ptr_nonnull(strstr(msg, "--preconditioner=fast"));
}
END_TEST

static const char *CFG = "input dim=4 context=-1..1\nlayer type=relu dim=6\noutput dim=3\n";

static void fill_state(ngt_train_state *st, const ngt_nnet *net, int iter) {
  ngt_train_state_init(st);
  ngt_train_state_alloc(st, 3, 5, net->num_params);
  st->iter = iter;
  st->num_iters = 40;
  for (int w = 0; w < 3; w++) st->positions[w] = 1000 * (w + 1) + iter;
  for (int i = 0; i < 15; i++) st->ngstate[i] = 0.25 * i;
  for (size_t i = 0; i < net->num_params; i++) st->bmuf_delta[i] = (float)i * 0.5f;
  st->sig.seed = 3;
  st->sig.ranks = 4;
  st->sig.samples_per_iter = 8000;
  st->have_pending = 1;
  st->pending.iter = iter - 1;
  st->pending.objective = -1.25;
  st->pending.epoch = 0.5;
}

START_TEST(checkpoint_state_round_trip_by_name) {
  char dir[] = "/tmp/ngt-test-train.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ngt_err err = {0};
  ngt_nnet *net = NULL;
  ck_assert_int_eq(ngt_nnet_from_config(CFG, "t.cfg", &net, &err), 0);
  ngt_nnet_init_params(net, 1);
  ngt_train_state st, back;
  fill_state(&st, net, 7);
  char path[256];
  ngt_checkpoint_path(dir, 7, path, sizeof path);
  ck_assert_int_eq(ngt_checkpoint_write(path, net, &st, &err), 0);
  ngt_train_state_init(&back);
  ck_assert_int_eq(ngt_checkpoint_read_state(path, &back, &err), 0);
  ck_assert_int_eq(back.iter, 7);
  ck_assert_int_eq(back.num_iters, 40);
  ck_assert_int_eq(back.num_workers, 3);
  ck_assert_int_eq(back.positions[2], 3007);
  ck_assert_int_eq((int)back.ng_doubles, 5);
  ck_assert(back.ngstate[14] == 3.5);
  ck_assert_int_eq((int)back.bmuf_n, (int)net->num_params);
  ck_assert(back.bmuf_delta[3] == 1.5f);
  ck_assert_int_eq(ngt_train_signature_diff(&st.sig, &back.sig), -1);
  ck_assert(back.have_pending && back.pending.objective == -1.25 && back.pending.epoch == 0.5);
  /* positional storage order = the field tables */
  ck_assert_str_eq(ngt_train_signature_fields[0].name, "--seed");
  ck_assert_str_eq(ngt_train_metrics_fields[ngt_train_metrics_nfields - 1].name, "elapsed_s");
  back.sig.minibatch = 64;
  int j = ngt_train_signature_diff(&st.sig, &back.sig);
  ck_assert_int_ge(j, 0);
  ck_assert_str_eq(ngt_train_signature_fields[j].name, "--minibatch-size");
  /* printed by name */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ngt_train_state_print(&back, f);
  fclose(f);
  ck_assert_ptr_nonnull(strstr(buf, "iteration                7 of 40"));
  ck_assert_ptr_nonnull(strstr(buf, "1007 2007 3007"));
  ck_assert_ptr_nonnull(strstr(buf, "--samples-per-iter"));
  ck_assert_ptr_nonnull(strstr(buf, "objective"));
  ck_assert_ptr_nonnull(strstr(buf, "ngstate"));
  free(buf);
  ngt_train_state_deinit(&st);
  ngt_train_state_deinit(&back);
  unlink(path);
  rmdir(dir);
  ngt_nnet_free(net);
}
END_TEST

START_TEST(load_latest_falls_back_and_refuses_another_run) {
  char dir[] = "/tmp/ngt-test-train.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ngt_err err = {0};
  ngt_nnet *net = NULL, *run = NULL;
  ck_assert_int_eq(ngt_nnet_from_config(CFG, "t.cfg", &net, &err), 0);
  ck_assert_int_eq(ngt_nnet_from_config(CFG, "t.cfg", &run, &err), 0);
  ngt_nnet_init_params(net, 1);
  /* the checkpoint carries an input transform the resuming net does not have yet */
  size_t tn = (size_t)net->input_dim * (size_t)(net->input_dim + 1);
  float *T = calloc(tn, sizeof(float));
  for (int i = 0; i < net->input_dim; i++) T[(size_t)i * (net->input_dim + 1) + i] = 2.0f;
  ngt_nnet_set_transform(net, NGT_TRANSFORM_CMVN, T);
  free(T);
  ngt_train_state st;
  char p1[256], p2[256];
  fill_state(&st, net, 1);
  ngt_checkpoint_path(dir, 1, p1, sizeof p1);
  ck_assert_int_eq(ngt_checkpoint_write(p1, net, &st, &err), 0);
  ngt_train_state_deinit(&st);
  ngt_checkpoint_path(dir, 2, p2, sizeof p2);
  FILE *f = fopen(p2, "w"); /* a truncated newest checkpoint */
  fputs("not hdf5", f);
  fclose(f);
  ngt_train_state expect, got;
  fill_state(&expect, net, 0);
  ngt_train_state_init(&got);
  ck_assert_int_eq(ngt_checkpoint_load_latest(dir, &expect, run, &got, &err), 1);
  ck_assert_int_eq(got.positions[0], 1001);
  ck_assert_int_eq(run->transform_type, NGT_TRANSFORM_CMVN);
  ck_assert(run->params[0] == net->params[0]);
  /* another seed: an error naming the option, no fallback */
  expect.sig.seed = 4;
  ck_assert_int_eq(ngt_checkpoint_load_latest(dir, &expect, run, &got, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "another run: --seed differs (checkpoint 3, now 4)"));
  /* another layout (workers): unusable, and nothing older */
  memset(&err, 0, sizeof err);
  expect.sig.seed = 3;
  expect.num_workers = 2;
  ck_assert_int_eq(ngt_checkpoint_load_latest(dir, &expect, run, &got, &err), -1);
  ck_assert_int_eq(err.code, 0);
  ngt_train_state_deinit(&expect);
  ngt_train_state_deinit(&got);
  unlink(p1);
  unlink(p2);
  rmdir(dir);
  ngt_nnet_free(net);
  ngt_nnet_free(run);
}
END_TEST

int main(void) {
  ngt_log_set_level(NGT_ERROR);
  Suite *s = suite_create("train");
  TCase *t = tcase_create("core");
  tcase_add_test(t, accept_iteration0_takes_the_best_only);
  tcase_add_test(t, accept_later_iterations_within_one_of_the_best);
  tcase_add_test(t, accept_none_when_every_job_diverged);
  tcase_add_test(t, average_is_sum_over_n_in_float);
  tcase_add_test(t, bmuf_matches_the_block_momentum_recurrence);
  tcase_add_test(t, choices_are_parsed_once_with_clear_errors);
  tcase_add_test(t, checkpoint_state_round_trip_by_name);
  tcase_add_test(t, load_latest_falls_back_and_refuses_another_run);
  suite_add_tcase(s, t);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int nf = srunner_ntests_failed(r);
  srunner_free(r);
  return nf != 0;
}

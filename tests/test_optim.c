/* test_optim.c — the minibatch update: plain SGD equals the gradient step, max-change
 * and max-param-change bound the step (§3.3), NG-SGD goes downhill (§6 "downhill test"),
 * non-finite steps are refused, degenerate minibatches stay finite, bad NG settings
 * are rejected at config time; momentum (Kaldi's recurrence, 0 = the plain step) and
 * Adam (a double reference, downhill); the optimiser state round-trips exactly. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/nnet.h"
#include "ngtrain/optim.h"
#include "ngtrain/rng.h"

static const char *cfg = "input dim=6 context=-1..1\n"
                         "layer type=relu-renorm dim=24\n"
                         "layer type=pnorm dim=20 group=2\n"
                         "output dim=7\n";

static ngt_nnet *make_net(const char *text, float output_stddev) {
  ngt_nnet *net = NULL;
  ngt_err e = {0};
  ck_assert_msg(ngt_nnet_from_config(text, "test.cfg", &net, &e) == 0, "%s", e.msg);
  /* non-zero output layer so every layer gets gradient */
  for (int c = 0; c < net->num_comps; c++)
    if (net->comps[c].type == NGT_COMP_AFFINE && c == net->num_comps - 2) {
      net->comps[c].param_stddev = output_stddev;
      net->comps[c].bias_stddev = output_stddev;
    }
  ngt_nnet_init_params(net, 7);
  return net;
}

static void make_batch(ngt_nnet *net, int N, uint64_t seed, ngt_mat *X, int32_t **y) {
  *X = ngt_mat_alloc(N, net->input_dim);
  *y = malloc(sizeof(int32_t) * (size_t)N);
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_TEST);
  for (int n = 0; n < N; n++) {
    (*y)[n] = (int32_t)ngt_rng_below(&r, (uint32_t)net->num_classes);
    for (int j = 0; j < net->input_dim; j++)
      NGT_AT(*X, n, j) = (float)ngt_rng_normal(&r) + 0.5f * (float)((*y)[n] % 3);
  }
}

static double loss(ngt_nnet *net, ngt_nnet_ws *ws, ngt_mat X, const int32_t *y) {
  ngt_nnet_forward(net, ws, X);
  return -ngt_nnet_objective(net, ws, y, NULL);
}

START_TEST(plain_sgd_is_gradient_step) {
  ngt_nnet *net = make_net(cfg, 0.3f);
  for (int c = 0; c < net->num_comps; c++) net->comps[c].max_change = 0;
  ngt_mat X;
  int32_t *y;
  make_batch(net, 32, 1, &X, &y);
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 32);
  ngt_nnet_forward(net, ws, X);
  ngt_nnet_backward(net, ws, y);
  float *g = calloc(net->num_params, sizeof(float));
  float *p0 = malloc(sizeof(float) * net->num_params);
  memcpy(p0, net->params, sizeof(float) * net->num_params);
  ngt_nnet_gradient(net, ws, g);
  ngt_optim_opts o = ngt_optim_opts_default();
  o.use_natural_gradient = 0;
  o.max_param_change = 0;
  ngt_optim *opt = NULL;
  ngt_err e = {0};
  ck_assert_int_eq(ngt_optim_new(net, &o, 32, &opt, &e), 0);
  const float lr = 0.01f;
  ck_assert_int_eq(ngt_optim_step(opt, net, ws, lr, 1.0f), 1);
  for (size_t i = 0; i < net->num_params; i++)
    ck_assert_float_eq_tol(net->params[i], p0[i] - lr * g[i], 1e-5f * (1.0f + fabsf(g[i])));
  ngt_optim_free(opt);
  free(g);
  free(p0);
  free(y);
  ngt_mat_free(&X);
  ngt_nnet_ws_free(ws);
  ngt_nnet_free(net);
}
END_TEST

/* ‖Δθ_c‖ after a step with a huge lr equals max_change_c; the global norm <= M. */
START_TEST(max_change_bounds_the_step) {
  for (int ng = 0; ng <= 1; ng++) {
    ngt_nnet *net = make_net(cfg, 0.3f);
    for (int c = 0; c < net->num_comps; c++) net->comps[c].max_change = 0.05f;
    ngt_mat X;
    int32_t *y;
    make_batch(net, 64, 2, &X, &y);
    ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 64);
    ngt_nnet_forward(net, ws, X);
    ngt_nnet_backward(net, ws, y);
    float *p0 = malloc(sizeof(float) * net->num_params);
    memcpy(p0, net->params, sizeof(float) * net->num_params);
    ngt_optim_opts o = ngt_optim_opts_default();
    o.use_natural_gradient = ng;
    o.max_param_change = 0;
    ngt_optim *opt = NULL;
    ngt_err e = {0};
    ck_assert_msg(ngt_optim_new(net, &o, 64, &opt, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(ngt_optim_step(opt, net, ws, 100.0f, 1.0f), 1);
    for (int c = 0; c < net->num_comps; c++) {
      const ngt_comp *cp = &net->comps[c];
      if (cp->type != NGT_COMP_AFFINE) continue;
      size_t n = (size_t)cp->out_dim * (size_t)(cp->in_dim + 1);
      double d2 = 0;
      for (size_t i = 0; i < n; i++) {
        double d = (double)net->params[cp->w_off + i] - p0[cp->w_off + i];
        d2 += d * d;
      }
      ck_assert_double_eq_tol(sqrt(d2), 0.05, 1e-4);
    }
    ck_assert_int_eq((int)ngt_optim_get_stats(opt)->comp_clipped, 3);
    /* global: three components of 0.05 each -> P = 0.0866; M = 0.04 scales all down */
    memcpy(net->params, p0, sizeof(float) * net->num_params);
    ngt_optim_free(opt);
    o.max_param_change = 0.04f;
    ck_assert_int_eq(ngt_optim_new(net, &o, 64, &opt, &e), 0);
    ngt_nnet_forward(net, ws, X);
    ngt_nnet_backward(net, ws, y);
    ck_assert_int_eq(ngt_optim_step(opt, net, ws, 100.0f, 1.0f), 1);
    double t2 = 0;
    for (size_t i = 0; i < net->num_params; i++) {
      double d = (double)net->params[i] - p0[i];
      t2 += d * d;
    }
    ck_assert_double_eq_tol(sqrt(t2), 0.04, 1e-4);
    ck_assert_int_eq((int)ngt_optim_get_stats(opt)->global_clipped, 1);
    /* mpc_scale (iteration 0: 1/sqrt 2) scales the bound */
    memcpy(net->params, p0, sizeof(float) * net->num_params);
    ngt_nnet_forward(net, ws, X);
    ngt_nnet_backward(net, ws, y);
    ck_assert_int_eq(ngt_optim_step(opt, net, ws, 100.0f, 0.5f), 1);
    t2 = 0;
    for (size_t i = 0; i < net->num_params; i++) {
      double d = (double)net->params[i] - p0[i];
      t2 += d * d;
    }
    ck_assert_double_eq_tol(sqrt(t2), 0.02, 1e-4);
    ngt_optim_free(opt);
    free(p0);
    free(y);
    ngt_mat_free(&X);
    ngt_nnet_ws_free(ws);
    ngt_nnet_free(net);
  }
}
END_TEST

/* §6 downhill test on the NG affine layers: one update with a small enough lr decreases
 * the objective on the same minibatch, for online and simple NG, over several batches. */
START_TEST(ng_step_goes_downhill) {
  for (int pre = NGT_PRECOND_ONLINE; pre <= NGT_PRECOND_SIMPLE; pre++) {
    ngt_nnet *net = make_net(cfg, 0.3f);
    ngt_optim_opts o = ngt_optim_opts_default();
    o.preconditioner = pre;
    o.update_period = 1;
    ngt_optim *opt = NULL;
    ngt_err e = {0};
    ck_assert_int_eq(ngt_optim_new(net, &o, 64, &opt, &e), 0);
    ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 64);
    for (int b = 0; b < 12; b++) {
      ngt_mat X;
      int32_t *y;
      make_batch(net, 64, 100 + (uint64_t)b, &X, &y);
      double l0 = loss(net, ws, X, y);
      ngt_nnet_backward(net, ws, y);
      ck_assert_int_eq(ngt_optim_step(opt, net, ws, 1e-4f, 1.0f), 1);
      double l1 = loss(net, ws, X, y);
      ck_assert_msg(l1 < l0, "precond %d batch %d: loss %.9g -> %.9g did not decrease", pre, b, l0,
                    l1);
      free(y);
      ngt_mat_free(&X);
    }
    ngt_optim_free(opt);
    ngt_nnet_ws_free(ws);
    ngt_nnet_free(net);
  }
}
END_TEST

START_TEST(nonfinite_step_is_refused) {
  ngt_nnet *net = make_net(cfg, 0.3f);
  ngt_mat X;
  int32_t *y;
  make_batch(net, 16, 3, &X, &y);
  NGT_AT(X, 3, 2) = NAN;
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 16);
  ngt_nnet_forward(net, ws, X);
  ngt_nnet_backward(net, ws, y);
  float *p0 = malloc(sizeof(float) * net->num_params);
  memcpy(p0, net->params, sizeof(float) * net->num_params);
  for (int ng = 0; ng <= 1; ng++) {
    ngt_optim_opts o = ngt_optim_opts_default();
    o.use_natural_gradient = ng;
    ngt_optim *opt = NULL;
    ngt_err e = {0};
    ck_assert_int_eq(ngt_optim_new(net, &o, 16, &opt, &e), 0);
    ck_assert_int_eq(ngt_optim_step(opt, net, ws, 0.01f, 1.0f), 0);
    ck_assert_int_eq((int)ngt_optim_get_stats(opt)->refused, 1);
    ck_assert_int_eq(memcmp(p0, net->params, sizeof(float) * net->num_params), 0);
    ngt_optim_free(opt);
  }
  free(p0);
  free(y);
  ngt_mat_free(&X);
  ngt_nnet_ws_free(ws);
  ngt_nnet_free(net);
}
END_TEST

/* A minibatch of zeros, or one row, never yields NaN or Inf (docs/algorithm.md §2.8). */
START_TEST(degenerate_minibatches_stay_finite) {
  for (int pre = NGT_PRECOND_ONLINE; pre <= NGT_PRECOND_SIMPLE; pre++) {
    ngt_nnet *net = make_net(cfg, 0.3f);
    ngt_optim_opts o = ngt_optim_opts_default();
    o.preconditioner = pre;
    ngt_optim *opt = NULL;
    ngt_err e = {0};
    ck_assert_int_eq(ngt_optim_new(net, &o, 8, &opt, &e), 0);
    ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 8);
    ngt_mat X = ngt_mat_alloc(8, net->input_dim);
    int32_t y[8] = {0, 1, 2, 3, 4, 5, 6, 0};
    for (int rep = 0; rep < 20; rep++) {
      int N = rep % 2 ? 1 : 8;
      ngt_mat Xn = ngt_mat_rows(X, 0, N);
      if (rep >= 10) NGT_AT(X, 0, 0) = 1.0f; /* one row, non-zero */
      ngt_nnet_forward(net, ws, Xn);
      ngt_nnet_backward(net, ws, y);
      ck_assert_int_eq(ngt_optim_step(opt, net, ws, 0.1f, 1.0f), 1);
      ck_assert(ngt_vec_all_finite(net->params, net->num_params));
    }
    ngt_mat_free(&X);
    ngt_optim_free(opt);
    ngt_nnet_ws_free(ws);
    ngt_nnet_free(net);
  }
}
END_TEST

START_TEST(bad_ng_settings_rejected) {
  ngt_nnet *net = make_net(cfg, 0.3f);
  ngt_optim_opts o = ngt_optim_opts_default();
  ngt_optim *opt = NULL;
  ngt_err e = {0};
  o.rank_out = 7; /* output dim is 7: rank must be below it */
  ck_assert_int_ne(ngt_optim_new(net, &o, 8, &opt, &e), 0);
  ck_assert_ptr_null(opt);
  ck_assert_msg(strstr(e.msg, "7") && strstr(e.msg, "output side"), "%s", e.msg);
  o = ngt_optim_opts_default();
  o.alpha = -1;
  ck_assert_int_ne(ngt_optim_new(net, &o, 8, &opt, &e), 0);
  ck_assert_msg(strstr(e.msg, "-1") != NULL, "%s", e.msg);
  o = ngt_optim_opts_default();
  o.update_period = 0;
  ck_assert_int_ne(ngt_optim_new(net, &o, 8, &opt, &e), 0);
  o = ngt_optim_opts_default();
  o.num_samples_history = 0;
  ck_assert_int_ne(ngt_optim_new(net, &o, 8, &opt, &e), 0);
  ngt_nnet_free(net);
}
END_TEST

/* The optimiser state survives save/load exactly: the next steps are bit-identical.
 * _i: 0 NG-SGD, 1 NG-SGD + momentum, 2 plain SGD + momentum, 3 Adam. */
START_TEST(state_round_trip) {
  ngt_nnet *a = make_net(cfg, 0.3f), *b = make_net(cfg, 0.3f);
  ngt_optim_opts o = ngt_optim_opts_default();
  if (_i == 1) o.momentum = 0.9;
  if (_i == 2) {
    o.use_natural_gradient = 0;
    o.momentum = 0.5;
  }
  if (_i == 3) {
    o.use_natural_gradient = 0;
    o.optimizer = NGT_OPTIMIZER_ADAM;
  }
  ngt_optim *oa = NULL, *ob = NULL;
  ngt_err e = {0};
  ck_assert_int_eq(ngt_optim_new(a, &o, 32, &oa, &e), 0);
  ck_assert_int_eq(ngt_optim_new(b, &o, 32, &ob, &e), 0);
  ngt_nnet_ws *ws = ngt_nnet_ws_new(a, 32);
  for (int k = 0; k < 30; k++) {
    ngt_mat X;
    int32_t *y;
    make_batch(a, 32, 200 + (uint64_t)k, &X, &y);
    if (k == 15) {
      size_t n = ngt_optim_state_doubles(oa);
      ck_assert(n > 0);
      double *st = malloc(sizeof(double) * n);
      ngt_optim_state_save(oa, st);
      ck_assert_int_eq(ngt_optim_state_load(ob, st, n, &e), 0);
      memcpy(b->params, a->params, sizeof(float) * a->num_params);
      free(st);
    }
    ngt_nnet_forward(a, ws, X);
    ngt_nnet_backward(a, ws, y);
    ngt_optim_step(oa, a, ws, _i == 3 ? 0.001f : 0.01f, 1.0f);
    if (k >= 15) {
      ngt_nnet_forward(b, ws, X);
      ngt_nnet_backward(b, ws, y);
      ngt_optim_step(ob, b, ws, _i == 3 ? 0.001f : 0.01f, 1.0f);
    }
    free(y);
    ngt_mat_free(&X);
  }
  ck_assert_int_eq(memcmp(a->params, b->params, sizeof(float) * a->num_params), 0);
  /* and the states agree after the steps too */
  size_t n = ngt_optim_state_doubles(oa);
  double *sa = malloc(sizeof(double) * n), *sb = malloc(sizeof(double) * n);
  ngt_optim_state_save(oa, sa);
  ngt_optim_state_save(ob, sb);
  ck_assert_int_eq(memcmp(sa, sb, sizeof(double) * n), 0);
  free(sa);
  free(sb);
  ngt_optim_free(oa);
  ngt_optim_free(ob);
  ngt_nnet_ws_free(ws);
  ngt_nnet_free(a);
  ngt_nnet_free(b);
}
END_TEST

/* Runs `steps` steps on fixed batches; returns the gradients seen (steps x num_params) and
 * the parameters before (p0). */
static float *run_steps(ngt_nnet *net, ngt_optim *opt, int steps, float lr, float *p0) {
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 32);
  float *g = calloc((size_t)steps * net->num_params, sizeof(float));
  memcpy(p0, net->params, sizeof(float) * net->num_params);
  for (int k = 0; k < steps; k++) {
    ngt_mat X;
    int32_t *y;
    make_batch(net, 32, 300 + (uint64_t)k, &X, &y);
    ngt_nnet_forward(net, ws, X);
    ngt_nnet_backward(net, ws, y);
    ngt_nnet_gradient(net, ws, g + (size_t)k * net->num_params);
    ck_assert_int_eq(ngt_optim_step(opt, net, ws, lr, 1.0f), 1);
    free(y);
    ngt_mat_free(&X);
  }
  ngt_nnet_ws_free(ws);
  return g;
}

/* momentum = 0 (explicit) is the default step bit for bit, NG and plain, over several steps */
START_TEST(momentum_zero_is_plain_step) {
  for (int ng = 0; ng <= 1; ng++) {
    ngt_nnet *a = make_net(cfg, 0.3f), *b = make_net(cfg, 0.3f);
    ngt_optim_opts oa = ngt_optim_opts_default(), ob = oa;
    oa.use_natural_gradient = ob.use_natural_gradient = ng;
    ob.momentum = 0.0;
    ob.optimizer = NGT_OPTIMIZER_SGD;
    ngt_optim *pa = NULL, *pb = NULL;
    ngt_err e = {0};
    ck_assert_int_eq(ngt_optim_new(a, &oa, 32, &pa, &e), 0);
    ck_assert_int_eq(ngt_optim_new(b, &ob, 32, &pb, &e), 0);
    ck_assert_uint_eq(ngt_optim_state_doubles(pa), ngt_optim_state_doubles(pb));
    float *p0 = malloc(sizeof(float) * a->num_params);
    free(run_steps(a, pa, 6, 0.05f, p0));
    free(run_steps(b, pb, 6, 0.05f, p0));
    ck_assert_int_eq(memcmp(a->params, b->params, sizeof(float) * a->num_params), 0);
    free(p0);
    ngt_optim_free(pa);
    ngt_optim_free(pb);
    ngt_nnet_free(a);
    ngt_nnet_free(b);
  }
}
END_TEST

/* Kaldi's recurrence by hand, two steps, μ = 0.5, lr = 0.1, no max-change:
 *   θ1 = θ0 - (1-μ)·lr·g1;  θ2 = θ1 - (1-μ)·(μ·lr·g1 + lr·g2). */
START_TEST(momentum_two_step_recurrence) {
  ngt_nnet *net = make_net(cfg, 0.3f);
  for (int c = 0; c < net->num_comps; c++) net->comps[c].max_change = 0;
  ngt_optim_opts o = ngt_optim_opts_default();
  o.use_natural_gradient = 0;
  o.max_param_change = 0;
  o.momentum = 0.5;
  ngt_optim *opt = NULL;
  ngt_err e = {0};
  ck_assert_msg(ngt_optim_new(net, &o, 32, &opt, &e) == 0, "%s", e.msg);
  const size_t P = net->num_params;
  float *p0 = malloc(sizeof(float) * P);
  const double mu = 0.5, lr = 0.1;
  float *g = run_steps(net, opt, 2, (float)lr, p0);
  for (size_t i = 0; i < P; i++) {
    double g1 = g[i], g2 = g[P + i];
    double t2 = p0[i] - (1 - mu) * lr * g1 - (1 - mu) * (mu * lr * g1 + lr * g2);
    ck_assert_double_eq_tol(net->params[i], t2, 1e-5 * (1.0 + fabs(g1) + fabs(g2)));
  }
  /* the state is the momentum buffer μ·D: μ·(μ·lr·g1 + lr·g2) */
  size_t n = ngt_optim_state_doubles(opt);
  ck_assert_uint_eq(n, P);
  double *st = malloc(sizeof(double) * n);
  ngt_optim_state_save(opt, st);
  for (size_t i = 0; i < P; i++)
    ck_assert_double_eq_tol(st[i], mu * (mu * lr * g[i] + lr * g[P + i]),
                            1e-6 * (1.0 + fabs(g[i]) + fabs(g[P + i])));
  /* Adam with momentum, or momentum out of range, is refused */
  ngt_optim *bad = NULL;
  o.momentum = 1.0;
  ck_assert_int_ne(ngt_optim_new(net, &o, 32, &bad, &e), 0);
  o.momentum = 0.5;
  o.optimizer = NGT_OPTIMIZER_ADAM;
  ck_assert_int_ne(ngt_optim_new(net, &o, 32, &bad, &e), 0);
  o.momentum = 0;
  o.use_natural_gradient = 1;
  ck_assert_int_ne(ngt_optim_new(net, &o, 32, &bad, &e), 0);
  ck_assert_ptr_null(bad);
  free(st);
  free(g);
  free(p0);
  ngt_optim_free(opt);
  ngt_nnet_free(net);
}
END_TEST

/* Adam's first three steps against a double-precision reference. */
START_TEST(adam_first_steps) {
  ngt_nnet *net = make_net(cfg, 0.3f);
  for (int c = 0; c < net->num_comps; c++) net->comps[c].max_change = 0;
  ngt_optim_opts o = ngt_optim_opts_default();
  o.use_natural_gradient = 0;
  o.max_param_change = 0;
  o.optimizer = NGT_OPTIMIZER_ADAM;
  ngt_optim *opt = NULL;
  ngt_err e = {0};
  ck_assert_msg(ngt_optim_new(net, &o, 32, &opt, &e) == 0, "%s", e.msg);
  const size_t P = net->num_params;
  const int K = 3;
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  float *p0 = malloc(sizeof(float) * P);
  float *g = run_steps(net, opt, K, (float)lr, p0);
  size_t moved = 0;
  for (size_t i = 0; i < P; i++) {
    double m = 0, v = 0, th = p0[i];
    for (int k = 0; k < K; k++) {
      double gk = g[(size_t)k * P + i];
      m = b1 * m + (1 - b1) * gk;
      v = b2 * v + (1 - b2) * gk * gk;
      double mh = m / (1 - pow(b1, k + 1)), vh = v / (1 - pow(b2, k + 1));
      th -= lr * mh / (sqrt(vh) + eps);
    }
    ck_assert_double_eq_tol(net->params[i], th, 2e-6 * lr + 1e-6 * fabs(th));
    if (net->params[i] != p0[i]) moved++;
  }
  ck_assert_uint_gt(moved, P / 2);
  ck_assert_uint_eq(ngt_optim_state_doubles(opt), 2 * P + 1);
  double *st = malloc(sizeof(double) * (2 * P + 1));
  ngt_optim_state_save(opt, st);
  ck_assert_double_eq(st[2 * P], (double)K); /* the step count */
  free(st);
  free(g);
  free(p0);
  ngt_optim_free(opt);
  ngt_nnet_free(net);
}
END_TEST

/* Adam goes downhill on a small fixed problem; max-change still bounds its step. */
START_TEST(adam_decreases_objective) {
  ngt_nnet *net = make_net(cfg, 0.3f);
  ngt_optim_opts o = ngt_optim_opts_default();
  o.use_natural_gradient = 0;
  o.optimizer = NGT_OPTIMIZER_ADAM;
  ngt_optim *opt = NULL;
  ngt_err e = {0};
  ck_assert_msg(ngt_optim_new(net, &o, 64, &opt, &e) == 0, "%s", e.msg);
  ngt_mat X;
  int32_t *y;
  make_batch(net, 64, 5, &X, &y);
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 64);
  double l0 = loss(net, ws, X, y);
  for (int k = 0; k < 100; k++) {
    ngt_nnet_forward(net, ws, X);
    ngt_nnet_backward(net, ws, y);
    ck_assert_int_eq(ngt_optim_step(opt, net, ws, 0.003f, 1.0f), 1);
  }
  double l1 = loss(net, ws, X, y);
  ck_assert_msg(l1 < 0.7 * l0, "Adam: loss %g -> %g", l0, l1);
  /* a huge lr: the per-component max-change still bounds each component's step */
  for (int c = 0; c < net->num_comps; c++) net->comps[c].max_change = 0.05f;
  float *p0 = malloc(sizeof(float) * net->num_params);
  memcpy(p0, net->params, sizeof(float) * net->num_params);
  ngt_nnet_forward(net, ws, X);
  ngt_nnet_backward(net, ws, y);
  ck_assert_int_eq(ngt_optim_step(opt, net, ws, 100.0f, 1.0f), 1);
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    if (cp->type != NGT_COMP_AFFINE) continue;
    size_t n = (size_t)cp->out_dim * (size_t)(cp->in_dim + 1);
    double d2 = 0;
    for (size_t i = 0; i < n; i++) {
      double d = (double)net->params[cp->w_off + i] - p0[cp->w_off + i];
      d2 += d * d;
    }
    ck_assert_double_le(sqrt(d2), 0.05 * (1 + 1e-4));
  }
  free(p0);
  free(y);
  ngt_mat_free(&X);
  ngt_nnet_ws_free(ws);
  ngt_optim_free(opt);
  ngt_nnet_free(net);
}
END_TEST

int main(void) {
  Suite *s = suite_create("optim");
  TCase *t = tcase_create("core");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, plain_sgd_is_gradient_step);
  tcase_add_test(t, max_change_bounds_the_step);
  tcase_add_test(t, ng_step_goes_downhill);
  tcase_add_test(t, nonfinite_step_is_refused);
  tcase_add_test(t, degenerate_minibatches_stay_finite);
  tcase_add_test(t, bad_ng_settings_rejected);
  tcase_add_loop_test(t, state_round_trip, 0, 4);
  tcase_add_test(t, momentum_zero_is_plain_step);
  tcase_add_test(t, momentum_two_step_recurrence);
  tcase_add_test(t, adam_first_steps);
  tcase_add_test(t, adam_decreases_objective);
  suite_add_tcase(s, t);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int nf = srunner_ntests_failed(r);
  srunner_free(r);
  return nf != 0;
}

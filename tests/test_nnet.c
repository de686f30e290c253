/* test_nnet.c — Check suite for src/nnet.c.
 *
 * The heart of it is a slow double-precision reference of every component written
 * independently of src/nnet.c. The float network's forward is compared with it, and
 * the float analytic gradient (ngt_nnet_gradient) and the per-component input
 * derivatives (ws->deriv) are compared with central finite differences of the
 * reference in double, for every parameter and every component input of small nets of
 * every layer type (relu, relu-renorm, pnorm, affine, output, input transform). A float
 * directional finite difference of the real network ties the reference to the real
 * forward. Also: huge logits, init determinism and statistics, every config error,
 * same_structure, copies and views.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/nnet.h"
#include "ngtrain/rng.h"

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                                */

static ngt_nnet *parse_ok(const char *cfg) {
  ngt_nnet *net = NULL;
  ngt_err err = {0};
  int rc = ngt_nnet_from_config(cfg, "test.cfg", &net, &err);
  ck_assert_msg(rc == 0, "config should parse: %s", err.msg);
  ck_assert_ptr_nonnull(net);
  return net;
}

static void fill_normal(float *x, size_t n, uint64_t seed, double scale) {
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_TEST);
  for (size_t i = 0; i < n; i++) x[i] = (float)(scale * ngt_rng_normal(&r));
}

static void fill_labels(int32_t *l, int n, int C, uint64_t seed) {
  ngt_rng r = ngt_rng_make(seed + 1000, NGT_RNG_STREAM_TEST);
  for (int i = 0; i < n; i++) l[i] = (int32_t)ngt_rng_below(&r, (uint32_t)C);
}

/* A random LDA-like transform [M, m] (D x (D+1)): M = I + 0.3 noise, m = 0.2 noise. */
static float *random_transform(int D, uint64_t seed) {
  float *T = calloc((size_t)D * (size_t)(D + 1), sizeof *T);
  fill_normal(T, (size_t)D * (size_t)(D + 1), seed, 0.3);
  for (int i = 0; i < D; i++) T[(size_t)i * (size_t)(D + 1) + (size_t)i] += 1.0f;
  return T;
}

/* ------------------------------------------------------------------------------------ */
/* Slow double reference of the network                                                   */

/* Run components [c0, num_comps) on X (N x in_dim of c0; if c0 == 0 and T != NULL the
 * transform [M, m] is applied first) with parameters P (double, params layout).
 * Returns loss = -sum_n log p(label_n); logp (N x C) if non-NULL. */
static double ref_loss(const ngt_nnet *net, const double *P, const double *T, int c0,
                       const double *X, int N, const int32_t *labels, double *logp) {
  int D0 = c0 == 0 ? net->input_dim : net->comps[c0].in_dim;
  double *cur = malloc(sizeof(double) * (size_t)N * (size_t)D0);
  memcpy(cur, X, sizeof(double) * (size_t)N * (size_t)D0);
  if (c0 == 0 && T) {
    int D = net->input_dim;
    double *y = malloc(sizeof(double) * (size_t)N * (size_t)D);
    for (int n = 0; n < N; n++)
      for (int i = 0; i < D; i++) {
        double s = T[(size_t)i * (size_t)(D + 1) + (size_t)D];
        for (int j = 0; j < D; j++)
          s += T[(size_t)i * (size_t)(D + 1) + (size_t)j] * cur[n * D + j];
        y[n * D + i] = s;
      }
    free(cur);
    cur = y;
  }
  for (int c = c0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    int I = cp->in_dim, O = cp->out_dim;
    double *y = calloc((size_t)N * (size_t)O, sizeof(double));
    for (int n = 0; n < N; n++) {
      const double *x = cur + (size_t)n * (size_t)I;
      double *o = y + (size_t)n * (size_t)O;
      if (cp->type == NGT_COMP_AFFINE) {
        const double *W = P + cp->w_off, *b = P + cp->b_off;
        for (int k = 0; k < O; k++) {
          double s = b[k];
          for (int i = 0; i < I; i++) s += W[(size_t)k * (size_t)I + (size_t)i] * x[i];
          o[k] = s;
        }
      } else if (cp->type == NGT_COMP_RELU) {
        for (int k = 0; k < O; k++) o[k] = x[k] > 0 ? x[k] : 0;
      } else if (cp->type == NGT_COMP_PNORM) {
        for (int k = 0; k < O; k++) {
          double s = 0;
          for (int g = 0; g < cp->group; g++) s += x[k * cp->group + g] * x[k * cp->group + g];
          o[k] = sqrt(s);
        }
      } else if (cp->type == NGT_COMP_NORMALIZE) {
        double s = 0;
        for (int k = 0; k < O; k++) s += x[k] * x[k];
        s /= O;
        if (s < ldexp(1.0, -66)) s = ldexp(1.0, -66);
        for (int k = 0; k < O; k++) o[k] = x[k] / sqrt(s);
      } else if (cp->type == NGT_COMP_LOGSOFTMAX) {
        double mx = x[0], s = 0;
        for (int k = 1; k < O; k++) mx = x[k] > mx ? x[k] : mx;
        for (int k = 0; k < O; k++) s += exp(x[k] - mx);
        for (int k = 0; k < O; k++) o[k] = x[k] - mx - log(s);
      } else {
        ck_abort_msg("unknown component type %d", cp->type);
      }
    }
    free(cur);
    cur = y;
  }
  int C = net->num_classes;
  double loss = 0;
  for (int n = 0; n < N; n++) loss -= cur[(size_t)n * (size_t)C + (size_t)labels[n]];
  if (logp) memcpy(logp, cur, sizeof(double) * (size_t)N * (size_t)C);
  free(cur);
  return loss;
}

static double *to_double(const float *x, size_t n) {
  double *d = malloc(sizeof(double) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

/* ------------------------------------------------------------------------------------ */
/* Gradient checks                                                                        */

/* Nets covering every layer type; the output layer gets a random init so its
 * gradients flow. */
static const char *const grad_cfgs[] = {
    "input dim=4 context=-1..1\nlayer type=relu dim=7\n"
    "output dim=5 param-stddev=0.5 bias-stddev=0.2\n",
    "input dim=5\nlayer type=relu-renorm dim=6\nlayer type=relu-renorm dim=6\n"
    "output dim=4 param-stddev=0.5 bias-stddev=0.2\n",
    "input dim=6\nlayer type=pnorm dim=12 group=3\n"
    "output dim=4 param-stddev=0.5 bias-stddev=0.2\n",
    "input dim=5\nlayer type=affine dim=3\noutput dim=4 param-stddev=0.5 bias-stddev=0.2\n",
    "input dim=5\noutput dim=3 param-stddev=0.5 bias-stddev=0.2\n",
    "input dim=3 context=-1..1\nlayer type=relu dim=6\nlayer type=relu-renorm dim=5\n"
    "layer type=pnorm dim=8 group=2\nlayer type=affine dim=4\n"
    "output dim=5 param-stddev=0.5 bias-stddev=0.3\n",
    "input dim=4\nlayer type=pnorm dim=6 group=1\nlayer type=pnorm dim=12 group=4\n"
    "output dim=3 param-stddev=0.5 bias-stddev=0.3\n",
};
#define NUM_GRAD_CFGS ((int)(sizeof grad_cfgs / sizeof grad_cfgs[0]))

typedef struct gfix {
  ngt_nnet *net;
  ngt_nnet_ws *ws;
  float *X; /* (N, input_dim) */
  int32_t *labels;
  int N;
  double *T; /* double transform or NULL */
} gfix;

static gfix gfix_make(int i, int with_transform, int N) {
  gfix g;
  g.net = parse_ok(grad_cfgs[i]);
  ngt_nnet_init_params(g.net, 17 + (uint64_t)i);
  g.N = N;
  g.T = NULL;
  if (with_transform) {
    float *Tf = random_transform(g.net->input_dim, 5 + (uint64_t)i);
    ngt_nnet_set_transform(g.net, NGT_TRANSFORM_LDA, Tf);
    g.T = to_double(Tf, (size_t)g.net->input_dim * (size_t)(g.net->input_dim + 1));
    free(Tf);
  }
  g.ws = ngt_nnet_ws_new(g.net, N + 3);
  g.X = malloc(sizeof(float) * (size_t)N * (size_t)g.net->input_dim);
  fill_normal(g.X, (size_t)N * (size_t)g.net->input_dim, 100 + (uint64_t)i, 1.0);
  g.labels = malloc(sizeof(int32_t) * (size_t)N);
  fill_labels(g.labels, N, g.net->num_classes, (uint64_t)i);
  return g;
}

static void gfix_free(gfix *g) {
  ngt_nnet_ws_free(g->ws);
  ngt_nnet_free(g->net);
  free(g->X);
  free(g->labels);
  free(g->T);
}

static void gfix_run(gfix *g) {
  ngt_nnet_forward(g->net, g->ws, ngt_mat_view(g->X, g->N, g->net->input_dim, g->net->input_dim));
  ngt_nnet_backward(g->net, g->ws, g->labels);
}

/* Float forward == double reference forward. */
START_TEST(test_forward_matches_reference) {
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < NUM_GRAD_CFGS; i++) {
      gfix g = gfix_make(i, t, 9);
      gfix_run(&g);
      const ngt_nnet *net = g.net;
      int C = net->num_classes;
      double *X = to_double(g.X, (size_t)g.N * (size_t)net->input_dim);
      double *P = to_double(net->params, net->num_params);
      double *lp = malloc(sizeof(double) * (size_t)g.N * (size_t)C);
      double ref = ref_loss(net, P, g.T, 0, X, g.N, g.labels, lp);
      ngt_mat out = g.ws->out[net->num_comps - 1];
      ck_assert_int_eq(out.rows, g.N);
      for (int n = 0; n < g.N; n++)
        for (int k = 0; k < C; k++)
          ck_assert_msg(fabs(NGT_AT(out, n, k) - lp[n * C + k]) < 1e-4 * (1 + fabs(lp[n * C + k])),
                        "cfg %d: logp[%d][%d] %g vs reference %g", i, n, k,
                        (double)NGT_AT(out, n, k), lp[n * C + k]);
      int ncorr = -1, refcorr = 0;
      double obj = ngt_nnet_objective(net, g.ws, g.labels, &ncorr);
      ck_assert_msg(fabs(obj + ref) < 1e-4 * (1 + fabs(ref)), "cfg %d: objective %g vs %g", i, obj,
                    -ref);
      ck_assert(obj <= 0);
      for (int n = 0; n < g.N; n++) {
        int am = 0;
        for (int k = 1; k < C; k++)
          if (lp[n * C + k] > lp[n * C + am]) am = k;
        refcorr += am == g.labels[n];
      }
      ck_assert_int_eq(ncorr, refcorr);
      /* rows of a softmax sum to 1 */
      for (int n = 0; n < g.N; n++) {
        double s = 0;
        for (int k = 0; k < C; k++) s += exp(NGT_AT(out, n, k));
        ck_assert(fabs(s - 1) < 1e-5);
      }
      free(X);
      free(P);
      free(lp);
      gfix_free(&g);
    }
}
END_TEST

/* Every parameter: analytic float gradient vs central differences of the double
 * reference (h = 1e-6). Any sign or factor error in any backward gives an O(1) miss. */
START_TEST(test_param_gradient_fd) {
  const double h = 1e-6;
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < NUM_GRAD_CFGS; i++) {
      for (int N = 1; N <= 7; N += 6) {
        gfix g = gfix_make(i, t, N);
        gfix_run(&g);
        const ngt_nnet *net = g.net;
        float *grad = malloc(sizeof(float) * net->num_params);
        for (size_t k = 0; k < net->num_params; k++) grad[k] = NAN;
        ngt_nnet_gradient(net, g.ws, grad);
        double *X = to_double(g.X, (size_t)N * (size_t)net->input_dim);
        double *P = to_double(net->params, net->num_params);
        double maxerr = 0;
        for (size_t k = 0; k < net->num_params; k++) {
          double p0 = P[k];
          P[k] = p0 + h;
          double lp = ref_loss(net, P, g.T, 0, X, N, g.labels, NULL);
          P[k] = p0 - h;
          double lm = ref_loss(net, P, g.T, 0, X, N, g.labels, NULL);
          P[k] = p0;
          double fd = (lp - lm) / (2 * h);
          double e = fabs(grad[k] - fd);
          ck_assert_msg(isfinite(grad[k]), "cfg %d: gradient[%zu] not written", i, k);
          ck_assert_msg(e <= 1e-3 + 1e-3 * fabs(fd),
                        "cfg %d (transform %d, N=%d): param %zu gradient %.6g vs finite "
                        "difference %.6g",
                        i, t, N, k, (double)grad[k], fd);
          if (e > maxerr) maxerr = e;
        }
        free(grad);
        free(X);
        free(P);
        gfix_free(&g);
      }
    }
}
END_TEST

/* Every component's backward: ws->deriv[c-1] = d loss / d (input of c) vs central
 * differences of the reference run from component c on that input. */
START_TEST(test_component_input_deriv_fd) {
  const double h = 1e-6;
  for (int i = 0; i < NUM_GRAD_CFGS; i++) {
    gfix g = gfix_make(i, 1, 6);
    gfix_run(&g);
    const ngt_nnet *net = g.net;
    double *P = to_double(net->params, net->num_params);
    int last = net->num_comps - 1;
    /* the log-softmax's own output derivative is -onehot */
    for (int n = 0; n < g.N; n++)
      for (int k = 0; k < net->num_classes; k++)
        ck_assert(NGT_AT(g.ws->deriv[last], n, k) == (k == g.labels[n] ? -1.0f : 0.0f));
    for (int c = 1; c <= last; c++) {
      ngt_mat in = ngt_nnet_ws_input(g.ws, c), d = g.ws->deriv[c - 1];
      ck_assert_ptr_eq(in.data, g.ws->out[c - 1].data);
      int I = net->comps[c].in_dim;
      ck_assert_int_eq(in.cols, I);
      double *x = malloc(sizeof(double) * (size_t)g.N * (size_t)I);
      for (int n = 0; n < g.N; n++)
        for (int j = 0; j < I; j++) x[n * I + j] = NGT_AT(in, n, j);
      int checked = 0;
      for (int n = 0; n < g.N; n++)
        for (int j = 0; j < I; j++) {
          double x0 = x[n * I + j];
          /* the relu kink: a finite difference across 0 is meaningless */
          if (net->comps[c].type == NGT_COMP_RELU && fabs(x0) < 1e-4) continue;
          x[n * I + j] = x0 + h;
          double lp = ref_loss(net, P, NULL, c, x, g.N, g.labels, NULL);
          x[n * I + j] = x0 - h;
          double lm = ref_loss(net, P, NULL, c, x, g.N, g.labels, NULL);
          x[n * I + j] = x0;
          double fd = (lp - lm) / (2 * h), an = NGT_AT(d, n, j);
          ck_assert_msg(fabs(an - fd) <= 1e-3 + 1e-3 * fabs(fd),
                        "cfg %d: component %d (%s) input derivative [%d][%d] %.6g vs finite "
                        "difference %.6g",
                        i, c, ngt_comp_type_name(net->comps[c].type), n, j, an, fd);
          checked++;
        }
      ck_assert_int_gt(checked, 0);
      free(x);
    }
    free(P);
    gfix_free(&g);
  }
}
END_TEST

/* Float finite difference of the real network along the gradient direction: ties the
 * reference above to the real forward (h = 1e-3, float noise ~1e-5). */
START_TEST(test_directional_fd_real_network) {
  for (int i = 0; i < NUM_GRAD_CFGS; i++) {
    gfix g = gfix_make(i, 1, 16);
    gfix_run(&g);
    ngt_nnet *net = g.net;
    size_t P = net->num_params;
    float *grad = malloc(sizeof(float) * P), *p0 = malloc(sizeof(float) * P);
    ngt_nnet_gradient(net, g.ws, grad);
    memcpy(p0, net->params, sizeof(float) * P);
    double gn = sqrt(ngt_vec_norm2(grad, P));
    ck_assert(gn > 1e-3);
    const double h = 1e-3;
    double L[2];
    for (int s = 0; s < 2; s++) {
      for (size_t k = 0; k < P; k++) net->params[k] = (float)(p0[k] + (s ? -h : h) * grad[k] / gn);
      ngt_nnet_forward(net, g.ws, ngt_mat_view(g.X, g.N, net->input_dim, net->input_dim));
      L[s] = -ngt_nnet_objective(net, g.ws, g.labels, NULL);
    }
    double fd = (L[0] - L[1]) / (2 * h);
    ck_assert_msg(fabs(fd - gn) < 0.02 * gn, "cfg %d: directional derivative %g vs |grad| %g", i,
                  fd, gn);
    free(grad);
    free(p0);
    gfix_free(&g);
  }
}
END_TEST

/* Gradient is exactly G^T X and column sums of G (checked with a slow loop). */
START_TEST(test_gradient_formula) {
  gfix g = gfix_make(5, 1, 11);
  gfix_run(&g);
  const ngt_nnet *net = g.net;
  float *grad = malloc(sizeof(float) * net->num_params);
  ngt_nnet_gradient(net, g.ws, grad);
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    if (cp->type != NGT_COMP_AFFINE) continue;
    ngt_mat G = g.ws->deriv[c], X = ngt_nnet_ws_input(g.ws, c);
    for (int o = 0; o < cp->out_dim; o++) {
      double sb = 0;
      for (int n = 0; n < g.N; n++) sb += NGT_AT(G, n, o);
      ck_assert(fabs(grad[cp->b_off + (size_t)o] - sb) < 1e-5 * (1 + fabs(sb)));
      for (int i = 0; i < cp->in_dim; i++) {
        double s = 0;
        for (int n = 0; n < g.N; n++) s += (double)NGT_AT(G, n, o) * NGT_AT(X, n, i);
        ck_assert(fabs(grad[cp->w_off + (size_t)o * (size_t)cp->in_dim + (size_t)i] - s) <
                  1e-5 * (1 + fabs(s)));
      }
    }
  }
  free(grad);
  gfix_free(&g);
}
END_TEST

/* An input with a row stride wider than its columns, and the transform. */
START_TEST(test_forward_strided_input) {
  ngt_nnet *net = parse_ok("input dim=3 context=-1..1\nlayer type=relu-renorm dim=8\noutput dim=4 "
                           "param-stddev=0.4\n");
  ngt_nnet_init_params(net, 3);
  float *Tf = random_transform(net->input_dim, 9);
  ngt_nnet_set_transform(net, NGT_TRANSFORM_CMVN, Tf);
  int N = 5, D = net->input_dim, S = D + 3;
  float *Xs = malloc(sizeof(float) * (size_t)N * (size_t)S),
        *Xc = malloc(sizeof(float) * (size_t)N * (size_t)D);
  fill_normal(Xs, (size_t)N * (size_t)S, 4, 1.0);
  for (int n = 0; n < N; n++) memcpy(Xc + n * D, Xs + n * S, sizeof(float) * (size_t)D);
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 8);
  ngt_nnet_forward(net, ws, ngt_mat_view(Xs, N, D, S));
  int C = net->num_classes;
  float *a = malloc(sizeof(float) * (size_t)N * (size_t)C);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < C; k++) a[n * C + k] = NGT_AT(ws->out[net->num_comps - 1], n, k);
  ngt_nnet_forward(net, ws, ngt_mat_view(Xc, N, D, D));
  for (int n = 0; n < N; n++)
    for (int k = 0; k < C; k++)
      ck_assert(a[n * C + k] == NGT_AT(ws->out[net->num_comps - 1], n, k));
  /* ws->in holds the transformed input */
  for (int n = 0; n < N; n++)
    for (int i = 0; i < D; i++) {
      double s = Tf[(size_t)i * (size_t)(D + 1) + (size_t)D];
      for (int j = 0; j < D; j++)
        s += (double)Tf[(size_t)i * (size_t)(D + 1) + (size_t)j] * Xc[n * D + j];
      ck_assert(fabs(NGT_AT(ws->in, n, i) - s) < 1e-5 * (1 + fabs(s)));
    }
  free(a);
  free(Xs);
  free(Xc);
  free(Tf);
  ngt_nnet_ws_free(ws);
  ngt_nnet_free(net);
}
END_TEST

/* Softmax / cross-entropy with huge logits: finite objective, finite derivatives,
 * and the right values. */
START_TEST(test_huge_logits) {
  const float bigs[] = {1e4f, 1e30f};
  for (int bi = 0; bi < 2; bi++) {
    float B = bigs[bi];
    ngt_nnet *net = parse_ok("input dim=4\nlayer type=relu-renorm dim=5\noutput dim=3\n");
    ngt_nnet_init_params(net, 1); /* output W = 0, so logits = b */
    int oc = net->num_comps - 2;
    float *b = ngt_nnet_b(net, NULL, oc);
    b[0] = B;
    b[1] = -B;
    b[2] = -B;
    int N = 4;
    float X[16];
    fill_normal(X, 16, 8, 1.0);
    int32_t labels[4] = {0, 1, 2, 0};
    ngt_nnet_ws *ws = ngt_nnet_ws_new(net, N);
    ngt_nnet_forward(net, ws, ngt_mat_view(X, N, 4, 4));
    int nc = -1;
    double obj = ngt_nnet_objective(net, ws, labels, &nc);
    ck_assert_msg(isfinite(obj), "objective %g must be finite for logits +-%g", obj, (double)B);
    ck_assert_int_eq(nc, 2);
    ngt_mat lp = ws->out[net->num_comps - 1];
    for (int n = 0; n < N; n++)
      for (int k = 0; k < 3; k++) ck_assert(isfinite(NGT_AT(lp, n, k)));
    ck_assert(NGT_AT(lp, 0, 0) == 0.0f);
    if (bi == 0) {
      ck_assert(fabs(NGT_AT(lp, 1, 1) + 2e4) < 1.0);
      ck_assert(fabs(obj + 4e4) < 4.0);
    } else {
      ck_assert(NGT_AT(lp, 1, 1) <= -1e29f);
      ck_assert(obj <= -1e29 && obj >= -1e31);
    }
    ngt_nnet_backward(net, ws, labels);
    for (int c = 0; c < net->num_comps; c++) ck_assert(ngt_mat_all_finite(ws->deriv[c]));
    /* d/d logits = softmax - onehot = [1, -1, 0] for label 1 */
    ngt_mat dz = ws->deriv[oc];
    ck_assert(NGT_AT(dz, 1, 0) == 1.0f && NGT_AT(dz, 1, 1) == -1.0f && NGT_AT(dz, 1, 2) == 0.0f);
    ck_assert(NGT_AT(dz, 0, 0) == 0.0f && NGT_AT(dz, 0, 1) == 0.0f);
    float *grad = malloc(sizeof(float) * net->num_params);
    ngt_nnet_gradient(net, ws, grad);
    ck_assert(ngt_vec_all_finite(grad, net->num_params));
    /* db of the output = sum of rows of softmax - onehot = [2, -1, -1] */
    float *db = ngt_nnet_b(net, grad, oc);
    ck_assert(db[0] == 2.0f && db[1] == -1.0f && db[2] == -1.0f);
    free(grad);
    ngt_nnet_ws_free(ws);
    ngt_nnet_free(net);
  }
  /* Also huge logits from the weights, where the difference overflows float. */
  ngt_nnet *net = parse_ok("input dim=2\noutput dim=2\n");
  ngt_mat W = ngt_nnet_W(net, NULL, 0);
  NGT_AT(W, 0, 0) = 3e38f;
  NGT_AT(W, 1, 0) = -3e38f;
  float X[2] = {1, 0};
  int32_t lab[1] = {1};
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 1);
  ngt_nnet_forward(net, ws, ngt_mat_view(X, 1, 2, 2));
  double obj = ngt_nnet_objective(net, ws, lab, NULL);
  ck_assert_msg(isfinite(obj) && obj < -1e29, "objective %g", obj);
  ngt_nnet_backward(net, ws, lab);
  ck_assert(ngt_mat_all_finite(ws->deriv[0]));
  ngt_nnet_ws_free(ws);
  ngt_nnet_free(net);
}
END_TEST

/* Normalize: target RMS 1, and an all-zero row hits the floor without NaN. */
START_TEST(test_normalize_rms_and_floor) {
  ngt_nnet *net = parse_ok("input dim=6\nlayer type=relu-renorm dim=10 bias-stddev=0\n"
                           "output dim=3 param-stddev=0.3\n");
  ngt_nnet_init_params(net, 2);
  float X[2 * 6] = {0};
  fill_normal(X, 6, 3, 2.0); /* row 0 random, row 1 zero -> relu(0) = 0 -> floored */
  int32_t lab[2] = {0, 1};
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 2);
  ngt_nnet_forward(net, ws, ngt_mat_view(X, 2, 6, 6));
  ck_assert_int_eq(net->comps[2].type, NGT_COMP_NORMALIZE);
  double ss = 0;
  for (int j = 0; j < 10; j++) ss += (double)NGT_AT(ws->out[2], 0, j) * NGT_AT(ws->out[2], 0, j);
  ck_assert(fabs(ss / 10 - 1) < 1e-5);
  for (int j = 0; j < 10; j++) ck_assert(NGT_AT(ws->out[2], 1, j) == 0.0f);
  ngt_nnet_backward(net, ws, lab);
  for (int c = 0; c < net->num_comps; c++) ck_assert(ngt_mat_all_finite(ws->deriv[c]));
  /* floored branch: dx = 2^33 dy */
  for (int j = 0; j < 10; j++)
    ck_assert(NGT_AT(ws->deriv[1], 1, j) == ldexpf(NGT_AT(ws->deriv[2], 1, j), 33));
  ngt_nnet_ws_free(ws);
  ngt_nnet_free(net);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Initialisation                                                                         */

static void stats(const float *x, size_t n, double *mean, double *sd) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
  }
  *mean = s / (double)n;
  *sd = sqrt(s2 / (double)n - *mean * *mean);
}

START_TEST(test_init_determinism_and_stats) {
  const char *cfg = "input dim=100 context=-1..2\nlayer type=relu dim=300\n"
                    "layer type=relu dim=300 param-stddev=0.2 bias-stddev=0\noutput dim=10\n";
  ngt_nnet *a = parse_ok(cfg), *b = parse_ok(cfg), *c = parse_ok(cfg);
  ngt_nnet_init_params(a, 1234);
  ngt_nnet_init_params(b, 1234);
  ngt_nnet_init_params(c, 1235);
  ck_assert(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ck_assert(memcmp(a->params, c->params, a->num_params * sizeof(float)) != 0);
  ck_assert_int_eq(a->input_dim, 400);
  double m, sd;
  /* layer 0: W ~ N(0, 1/I), I = 400; b ~ N(0, 0.25) */
  const ngt_comp *l0 = &a->comps[0];
  ck_assert(fabs(l0->param_stddev - 0.05f) < 1e-7);
  stats(a->params + l0->w_off, 300 * 400, &m, &sd);
  ck_assert_msg(fabs(sd - 0.05) < 0.05 * 0.02 && fabs(m) < 0.05 * 0.02, "W0 mean %g sd %g", m, sd);
  stats(a->params + l0->b_off, 300, &m, &sd);
  ck_assert_msg(fabs(sd - 0.5) < 0.08 && fabs(m) < 0.12, "b0 mean %g sd %g", m, sd);
  /* layer 1: configured stddevs */
  const ngt_comp *l1 = &a->comps[2];
  ck_assert_int_eq(l1->type, NGT_COMP_AFFINE);
  stats(a->params + l1->w_off, 300 * 300, &m, &sd);
  ck_assert_msg(fabs(sd - 0.2) < 0.2 * 0.02, "W1 sd %g", sd);
  for (int k = 0; k < 300; k++) ck_assert(a->params[l1->b_off + (size_t)k] == 0.0f);
  /* output layer: zero by default */
  const ngt_comp *lo = &a->comps[4];
  ck_assert_int_eq(lo->type, NGT_COMP_AFFINE);
  ck_assert(lo->param_stddev == 0.0f && lo->bias_stddev == 0.0f);
  for (size_t k = lo->w_off; k < lo->b_off + 10; k++) ck_assert(a->params[k] == 0.0f);
  ck_assert(lo->b_off + 10 == a->num_params);
  ngt_nnet_free(a);
  ngt_nnet_free(b);
  ngt_nnet_free(c);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Config parser                                                                          */

START_TEST(test_config_structure_and_defaults) {
  ngt_nnet *net = parse_ok(
      "# a comment line\r\n"
      "\r\n"
      "input  dim=40 context=-5..5   # 11 frames\r\n"
      "\tlayer type=relu-renorm dim=64 max-change=0 use-natural-gradient=false\r\n"
      "layer type=pnorm dim=60 group=10 rank-in=20 rank-out=59 update-period=2 "
      "num-samples-history=1000 alpha=0 learning-rate-factor=0.5\n"
      "layer type=relu dim=7 param-stddev=0.1 bias-stddev=0.25 use-natural-gradient=true\n"
      "layer type=affine dim=5\n"
      "output dim=3 max-change=2.5\n"
      "# trailing comment");
  ck_assert_int_eq(net->feat_dim, 40);
  ck_assert_int_eq(net->ctx_left, 5);
  ck_assert_int_eq(net->ctx_right, 5);
  ck_assert_int_eq(net->input_dim, 440);
  ck_assert_int_eq(net->num_classes, 3);
  ck_assert_int_eq(net->num_layers, 5);
  const int types[] = {NGT_COMP_AFFINE, NGT_COMP_RELU,      NGT_COMP_NORMALIZE, NGT_COMP_AFFINE,
                       NGT_COMP_PNORM,  NGT_COMP_NORMALIZE, NGT_COMP_AFFINE,    NGT_COMP_RELU,
                       NGT_COMP_AFFINE, NGT_COMP_AFFINE,    NGT_COMP_LOGSOFTMAX};
  const int ins[] = {440, 64, 64, 64, 60, 6, 6, 7, 7, 5, 3};
  const int outs[] = {64, 64, 64, 60, 6, 6, 7, 7, 5, 3, 3};
  const int layers[] = {0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 4};
  ck_assert_int_eq(net->num_comps, 11);
  size_t off = 0;
  for (int c = 0; c < 11; c++) {
    const ngt_comp *cp = &net->comps[c];
    ck_assert_int_eq(cp->type, types[c]);
    ck_assert_int_eq(cp->in_dim, ins[c]);
    ck_assert_int_eq(cp->out_dim, outs[c]);
    ck_assert_int_eq(cp->layer, layers[c]);
    if (cp->type == NGT_COMP_AFFINE) {
      ck_assert_uint_eq(cp->w_off, off);
      off += (size_t)cp->in_dim * (size_t)cp->out_dim;
      ck_assert_uint_eq(cp->b_off, off);
      off += (size_t)cp->out_dim;
    }
  }
  ck_assert_uint_eq(net->num_params, off);
  ck_assert_int_eq(net->comps[4].group, 10);
  ck_assert((uintptr_t)net->params % 64 == 0);
  /* keys and defaults */
  const ngt_comp *a0 = &net->comps[0], *a1 = &net->comps[3], *a2 = &net->comps[6],
                 *a3 = &net->comps[8], *ao = &net->comps[9];
  ck_assert(a0->max_change == 0.0f && a0->ng.use_ng == 0 && a0->lr_factor == 1.0f);
  ck_assert(fabsf(a0->param_stddev - 1.0f / sqrtf(440.0f)) < 1e-7f && a0->bias_stddev == 0.5f);
  ck_assert(a1->max_change == 0.75f && a1->lr_factor == 0.5f && a1->ng.use_ng == -1);
  ck_assert(a1->ng.rank_in == 20 && a1->ng.rank_out == 59 && a1->ng.update_period == 2);
  ck_assert(a1->ng.num_samples_history == 1000 && a1->ng.alpha == 0);
  ck_assert(a2->param_stddev == 0.1f && a2->bias_stddev == 0.25f && a2->ng.use_ng == 1);
  ck_assert(a2->ng.rank_in == 0 && a2->ng.rank_out == 0 && a2->ng.update_period == 0);
  ck_assert(a2->ng.num_samples_history == 0 && a2->ng.alpha < 0);
  ck_assert(a3->max_change == 0.75f && a3->bias_stddev == 0.5f);
  ck_assert(ao->max_change == 2.5f && ao->param_stddev == 0.0f && ao->bias_stddev == 0.0f);
  ck_assert(strstr(net->config_text, "group=10") != NULL);
  ck_assert(strstr(net->config_text, "# trailing comment") != NULL);
  ck_assert(net->transform == NULL && net->priors == NULL);
  ck_assert_int_eq(net->transform_type, NGT_TRANSFORM_NONE);
  ngt_nnet_free(net);

  /* context defaults to 0..0; output-only network; one-sided contexts */
  net = parse_ok("input dim=13\noutput dim=48");
  ck_assert(net->ctx_left == 0 && net->ctx_right == 0 && net->input_dim == 13);
  ck_assert_int_eq(net->num_comps, 2);
  ck_assert_int_eq(net->comps[0].max_change * 10, 15);
  ngt_nnet_free(net);
  net = parse_ok("input dim=2 context=-3..0\noutput dim=2");
  ck_assert(net->ctx_left == 3 && net->ctx_right == 0 && net->input_dim == 8);
  ngt_nnet_free(net);
  net = parse_ok("input dim=2 context=0..2\noutput dim=2 rank-in=2 rank-out=1");
  ck_assert(net->ctx_left == 0 && net->ctx_right == 2 && net->input_dim == 6);
  ngt_nnet_free(net);
}
END_TEST

typedef struct bad_cfg {
  const char *text;
  const char *want[3]; /* substrings the message must contain */
} bad_cfg;

static const bad_cfg bad_cfgs[] = {
    {"lyer type=relu dim=5\n", {"t.cfg:1: ", "unknown keyword 'lyer'", "input"}},
    {"input dim=10\nlayer type=rleu dim=5\noutput dim=3",
     {"t.cfg:2: ", "unknown layer type 'rleu'", "relu-renorm, pnorm"}},
    {"input dim=abc\noutput dim=3", {"t.cfg:1: ", "dim=abc", "integer"}},
    {"input dim=10\nlayer type=relu dim=12x\noutput dim=3", {"t.cfg:2: ", "dim=12x", NULL}},
    {"input dim=10\nlayer type=relu dim=0\noutput dim=3", {"t.cfg:2: ", "dim=0", "positive"}},
    {"input dim=10\nlayer type=relu dim=-4\noutput dim=3", {"t.cfg:2: ", "dim=-4", NULL}},
    {"input dim=10\noutput dim=0", {"t.cfg:2: ", "dim=0", NULL}},
    {"input dim=10\nlayer type=relu dim=99999999\noutput dim=3",
     {"t.cfg:2: ", "dim=99999999", "too large"}},
    {"input context=-1..1\noutput dim=3", {"t.cfg:1: ", "missing dim", "input"}},
    {"input dim=10\nlayer type=relu\noutput dim=3", {"t.cfg:2: ", "missing dim", NULL}},
    {"input dim=10\nlayer dim=5\noutput dim=3", {"t.cfg:2: ", "missing type", "relu-renorm"}},
    {"input dim=10\noutput param-stddev=1", {"t.cfg:2: ", "missing dim", NULL}},
    {"input dim=10\nlayer type=pnorm dim=100\noutput dim=3",
     {"t.cfg:2: ", "missing group", "pnorm"}},
    {"input dim=10\nlayer type=pnorm dim=100 group=3\noutput dim=3",
     {"t.cfg:2: ", "dim=100", "group=3"}},
    {"input dim=10\nlayer type=pnorm dim=100 group=0\noutput dim=3",
     {"t.cfg:2: ", "group=0", NULL}},
    {"input dim=10\nlayer type=relu dim=100 group=10\noutput dim=3",
     {"t.cfg:2: ", "group=10", "pnorm"}},
    {"input dim=10\nlayer type=relu dim=5 dim=6\noutput dim=3",
     {"t.cfg:2: ", "duplicate key 'dim'", NULL}},
    {"input dim=10 dim=11\noutput dim=3", {"t.cfg:1: ", "duplicate key 'dim'", NULL}},
    {"input dim=10\nlayer type=relu dim=20 rank-in=11\noutput dim=3",
     {"t.cfg:2: ", "rank-in=11", "11"}},
    {"input dim=10\nlayer type=relu dim=20 rank-in=0\noutput dim=3",
     {"t.cfg:2: ", "rank-in=0", NULL}},
    {"input dim=10\nlayer type=relu dim=20 rank-out=20\noutput dim=3",
     {"t.cfg:2: ", "rank-out=20", "20"}},
    {"input dim=10\nlayer type=pnorm dim=20 group=4 rank-out=25\noutput dim=3",
     {"t.cfg:2: ", "rank-out=25", NULL}},
    {"input dim=10\noutput dim=3 rank-out=3", {"t.cfg:2: ", "rank-out=3", NULL}},
    {"input dim=10\nlayer type=relu dim=20 alpha=-1\noutput dim=3",
     {"t.cfg:2: ", "alpha=-1", NULL}},
    {"input dim=10\nlayer type=relu dim=20 update-period=0\noutput dim=3",
     {"t.cfg:2: ", "update-period=0", NULL}},
    {"input dim=10\nlayer type=relu dim=20 update-period=2.5\noutput dim=3",
     {"t.cfg:2: ", "update-period=2.5", NULL}},
    {"input dim=10\nlayer type=relu dim=20 num-samples-history=0\noutput dim=3",
     {"t.cfg:2: ", "num-samples-history=0", NULL}},
    {"input dim=10\nlayer type=relu dim=20 num-samples-history=-5\noutput dim=3",
     {"t.cfg:2: ", "num-samples-history=-5", NULL}},
    {"input dim=10\nlayer type=relu dim=20 max-change=-0.5\noutput dim=3",
     {"t.cfg:2: ", "max-change=-0.5", NULL}},
    {"input dim=10\nlayer type=relu dim=20 learning-rate-factor=-1\noutput dim=3",
     {"t.cfg:2: ", "learning-rate-factor=-1", NULL}},
    {"input dim=10\nlayer type=relu dim=20 param-stddev=abc\noutput dim=3",
     {"t.cfg:2: ", "param-stddev=abc", NULL}},
    {"input dim=10\nlayer type=relu dim=20 bias-stddev=nan\noutput dim=3",
     {"t.cfg:2: ", "bias-stddev=nan", NULL}},
    {"input dim=10\nlayer type=relu dim=20 use-natural-gradient=yes\noutput dim=3",
     {"t.cfg:2: ", "use-natural-gradient=yes", "true or false"}},
    {"input dim=10\nlayer type=relu dim=20 foo=1\noutput dim=3",
     {"t.cfg:2: ", "unknown key 'foo'", "known:"}},
    {"input dim=10 type=relu\noutput dim=3", {"t.cfg:1: ", "unknown key 'type'", "dim, context"}},
    {"input dim=10\nlayer type=relu dim\noutput dim=3",
     {"t.cfg:2: ", "expected key=value", "'dim'"}},
    {"input dim=10\nlayer type=relu dim=\noutput dim=3",
     {"t.cfg:2: ", "expected key=value", NULL}},
    {"input dim=10\noutput dim=3 type=relu", {"t.cfg:2: ", "'type'", "output"}},
    {"input dim=10\ninput dim=11\noutput dim=3", {"t.cfg:2: ", "duplicate input", "line 1"}},
    {"input dim=10\noutput dim=3\noutput dim=4", {"t.cfg:3: ", "duplicate output", NULL}},
    {"input dim=10\noutput dim=3\nlayer type=relu dim=4", {"t.cfg:3: ", "after the output", NULL}},
    {"input dim=10\noutput dim=3\ninput dim=4", {"t.cfg:3: ", "duplicate input", NULL}},
    {"input dim=10\nlayer type=relu dim=5\n", {"t.cfg:", "no output line", "output dim=C"}},
    {"layer type=relu dim=5\noutput dim=3", {"t.cfg:1: ", "before the input line", NULL}},
    {"", {"t.cfg:", "no input line", NULL}},
    {"# only a comment\n\n", {"t.cfg:", "no input line", NULL}},
    {"input dim=10 context=5\noutput dim=3", {"t.cfg:1: ", "context '5'", "-5..5"}},
    {"input dim=10 context=-3..-1\noutput dim=3", {"t.cfg:1: ", "-3..-1", NULL}},
    {"input dim=10 context=2..3\noutput dim=3", {"t.cfg:1: ", "2..3", NULL}},
    {"input dim=10 context=-a..3\noutput dim=3", {"t.cfg:1: ", "-a..3", NULL}},
    {"# header\n\ninput dim=10\n   # indented comment\nlayer type=bogus dim=3\noutput dim=3",
     {"t.cfg:5: ", "'bogus'", NULL}},
};

START_TEST(test_config_errors) {
  int n = (int)(sizeof bad_cfgs / sizeof bad_cfgs[0]);
  for (int i = 0; i < n; i++) {
    ngt_nnet *net = (ngt_nnet *)0x1;
    ngt_err err = {0};
    int rc = ngt_nnet_from_config(bad_cfgs[i].text, "t.cfg", &net, &err);
    ck_assert_msg(rc == NGT_EINVAL, "case %d should fail with NGT_EINVAL: '%s' (rc %d)", i,
                  bad_cfgs[i].text, rc);
    ck_assert_int_eq(err.code, NGT_EINVAL);
    ck_assert_ptr_null(net);
    ck_assert_msg(strncmp(err.msg, "t.cfg:", 6) == 0,
                  "case %d: message must start with the "
                  "source: %s",
                  i, err.msg);
    for (int k = 0; k < 3 && bad_cfgs[i].want[k]; k++)
      ck_assert_msg(strstr(err.msg, bad_cfgs[i].want[k]) != NULL,
                    "case %d: message '%s' should contain '%s'", i, err.msg, bad_cfgs[i].want[k]);
  }
  /* boundary values that are allowed */
  ngt_nnet *net = parse_ok("input dim=10\nlayer type=relu dim=20 rank-in=10 rank-out=19 "
                           "update-period=1 alpha=0 max-change=0\noutput dim=3");
  ngt_nnet_free(net);
}
END_TEST

START_TEST(test_config_files) {
  const char *srcdir = getenv("NGT_SRCDIR");
  if (!srcdir) srcdir = ".";
  char path[4096];
  ngt_nnet *net = NULL;
  ngt_err err = {0};
  snprintf(path, sizeof path, "%s/data/nnet-small.cfg", srcdir);
  ck_assert_msg(ngt_nnet_from_config_file(path, &net, &err) == 0, "%s", err.msg);
  ck_assert(net->feat_dim == 13 && net->ctx_left == 3 && net->ctx_right == 3);
  ck_assert_int_eq(net->input_dim, 91);
  ck_assert_int_eq(net->num_classes, 48);
  ck_assert_int_eq(net->num_comps, 8);
  ck_assert_uint_eq(net->num_params, 91 * 128 + 128 + 128 * 128 + 128 + 128 * 48 + 48);
  ngt_nnet_free(net);
  snprintf(path, sizeof path, "%s/data/nnet-speech.cfg", srcdir);
  ck_assert_msg(ngt_nnet_from_config_file(path, &net, &err) == 0, "%s", err.msg);
  ck_assert(net->feat_dim == 40 && net->input_dim == 440 && net->num_classes == 2000);
  ck_assert_int_eq(net->num_comps, 14);
  ck_assert_uint_eq(net->num_params,
                    440u * 1024 + 1024 + 3u * (1024 * 1024 + 1024) + 1024u * 2000 + 2000);
  ngt_nnet_free(net);
  /* a missing file names the path */
  snprintf(path, sizeof path, "%s/data/no-such.cfg", srcdir);
  ck_assert(ngt_nnet_from_config_file(path, &net, &err) == NGT_EIO);
  ck_assert_ptr_null(net);
  ck_assert(strstr(err.msg, "no-such.cfg") != NULL);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Structure, copies, views, workspace                                                    */

START_TEST(test_same_structure) {
  const char *base = "input dim=5 context=-1..1\nlayer type=pnorm dim=12 group=3\noutput dim=4\n";
  ngt_nnet *a = parse_ok(base), *b = parse_ok(base);
  char why[256] = "x";
  ck_assert_int_eq(ngt_nnet_same_structure(a, b, why, sizeof why), 1);
  ck_assert_str_eq(why, "");
  ck_assert_int_eq(ngt_nnet_same_structure(a, b, NULL, 0), 1);
  struct {
    const char *cfg;
    const char *want;
  } diffs[] = {
      {"input dim=6 context=-1..1\nlayer type=pnorm dim=12 group=3\noutput dim=4\n", "feat_dim"},
      {"input dim=5 context=-2..1\nlayer type=pnorm dim=12 group=3\noutput dim=4\n", "context"},
      {"input dim=5 context=-1..1\nlayer type=pnorm dim=12 group=3\noutput dim=5\n", "classes"},
      {"input dim=5 context=-1..1\nlayer type=relu dim=12\noutput dim=4\n",
       "number of components"},
      {"input dim=5 context=-1..1\nlayer type=relu-renorm dim=12\noutput dim=4\n",
       "component 1: type pnorm vs relu"},
      {"input dim=5 context=-1..1\nlayer type=pnorm dim=12 group=4\noutput dim=4\n",
       "component 1 (pnorm): out_dim 4 vs 3"},
      {"input dim=5 context=-1..1\nlayer type=pnorm dim=15 group=5\noutput dim=4\n",
       "component 0 (affine): out_dim 12 vs 15"},
  };
  for (size_t i = 0; i < sizeof diffs / sizeof diffs[0]; i++) {
    ngt_nnet *c = parse_ok(diffs[i].cfg);
    ck_assert_int_eq(ngt_nnet_same_structure(a, c, why, sizeof why), 0);
    ck_assert_msg(strstr(why, diffs[i].want) != NULL, "case %zu: '%s' should contain '%s'", i, why,
                  diffs[i].want);
    ck_assert_int_eq(ngt_nnet_same_structure(a, c, NULL, 0), 0);
    ngt_nnet_free(c);
  }
  /* transform type */
  float *T = random_transform(a->input_dim, 1);
  ngt_nnet_set_transform(b, NGT_TRANSFORM_LDA, T);
  ck_assert_int_eq(ngt_nnet_same_structure(a, b, why, sizeof why), 0);
  ck_assert(strstr(why, "transform") != NULL);
  ngt_nnet_set_transform(a, NGT_TRANSFORM_LDA, T);
  ck_assert_int_eq(ngt_nnet_same_structure(a, b, why, sizeof why), 1);
  ngt_nnet_set_transform(a, NGT_TRANSFORM_NONE, NULL);
  ck_assert_ptr_null(a->transform);
  ck_assert_int_eq(a->transform_type, NGT_TRANSFORM_NONE);
  free(T);
  ngt_nnet_free(a);
  ngt_nnet_free(b);
}
END_TEST

START_TEST(test_copy_views_ws) {
  ngt_nnet *a = parse_ok(
      "input dim=3 context=-1..1\nlayer type=relu-renorm dim=6\noutput dim=4\n");
  ngt_nnet_init_params(a, 5);
  float *T = random_transform(a->input_dim, 2);
  ngt_nnet_set_transform(a, NGT_TRANSFORM_CMVN, T);
  float pri[4] = {0.1f, 0.2f, 0.3f, 0.4f};
  ngt_nnet_set_priors(a, pri);
  pri[0] = 9; /* copied, not referenced */
  ck_assert(a->priors[0] == 0.1f);
  ngt_nnet *b = ngt_nnet_copy(a);
  ck_assert(ngt_nnet_same_structure(a, b, NULL, 0));
  ck_assert(b->params != a->params && b->comps != a->comps && b->transform != a->transform);
  ck_assert(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ck_assert(memcmp(a->transform, b->transform, 9 * 10 * sizeof(float)) == 0);
  ck_assert(memcmp(a->priors, b->priors, 4 * sizeof(float)) == 0);
  ck_assert_str_eq(a->config_text, b->config_text);
  ck_assert((uintptr_t)b->params % 64 == 0);
  b->params[0] += 1;
  ck_assert(a->params[0] != b->params[0]);
  /* views */
  ngt_mat W = ngt_nnet_W(a, NULL, 0);
  ck_assert_ptr_eq(W.data, a->params + a->comps[0].w_off);
  ck_assert(W.rows == 6 && W.cols == 9 && W.stride == 9);
  ck_assert_ptr_eq(ngt_nnet_b(a, NULL, 3), a->params + a->comps[3].b_off);
  float *delta = calloc(a->num_params, sizeof(float));
  ck_assert_ptr_eq(ngt_nnet_W(a, delta, 3).data, delta + a->comps[3].w_off);
  ck_assert_ptr_eq(ngt_nnet_b(a, delta, 0), delta + a->comps[0].b_off);
  free(delta);
  /* names */
  ck_assert_str_eq(ngt_comp_type_name(NGT_COMP_AFFINE), "affine");
  ck_assert_str_eq(ngt_comp_type_name(NGT_COMP_RELU), "relu");
  ck_assert_str_eq(ngt_comp_type_name(NGT_COMP_PNORM), "pnorm");
  ck_assert_str_eq(ngt_comp_type_name(NGT_COMP_NORMALIZE), "normalize");
  ck_assert_str_eq(ngt_comp_type_name(NGT_COMP_LOGSOFTMAX), "log-softmax");
  ck_assert_str_eq(ngt_comp_type_name(77), "unknown");
  /* workspace shapes; rows follow the last forward */
  ngt_nnet_ws *ws = ngt_nnet_ws_new(a, 10);
  ck_assert_int_eq(ws->max_rows, 10);
  ck_assert_ptr_eq(ngt_nnet_ws_input(ws, 0).data, ws->in.data);
  for (int c = 0; c < a->num_comps; c++) {
    ck_assert_int_eq(ws->out[c].cols, a->comps[c].out_dim);
    ck_assert_int_eq(ws->deriv[c].cols, a->comps[c].out_dim);
    if (c > 0) ck_assert_ptr_eq(ngt_nnet_ws_input(ws, c).data, ws->out[c - 1].data);
  }
  float X[3 * 9];
  fill_normal(X, 27, 1, 1.0);
  ngt_nnet_forward(a, ws, ngt_mat_view(X, 3, 9, 9));
  ck_assert_int_eq(ws->rows, 3);
  ck_assert_int_eq(ws->out[a->num_comps - 1].rows, 3);
  ck_assert_int_eq(ngt_nnet_ws_input(ws, 2).rows, 3);
  ngt_nnet_ws_free(ws);
  ngt_nnet_ws_free(NULL);
  ngt_nnet_free(a);
  ngt_nnet_free(b);
  ngt_nnet_free(NULL);
  free(T);
}
END_TEST

static Suite *nnet_suite(void) {
  Suite *s = suite_create("nnet");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_forward_matches_reference);
  tcase_add_test(tc, test_param_gradient_fd);
  tcase_add_test(tc, test_component_input_deriv_fd);
  tcase_add_test(tc, test_directional_fd_real_network);
  tcase_add_test(tc, test_gradient_formula);
  tcase_add_test(tc, test_forward_strided_input);
  tcase_add_test(tc, test_huge_logits);
  tcase_add_test(tc, test_normalize_rms_and_floor);
  tcase_add_test(tc, test_init_determinism_and_stats);
  tcase_add_test(tc, test_config_structure_and_defaults);
  tcase_add_test(tc, test_config_errors);
  tcase_add_test(tc, test_config_files);
  tcase_add_test(tc, test_same_structure);
  tcase_add_test(tc, test_copy_views_ws);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(nnet_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}

/* test_ngrad.c — Check suite for src/ngrad.c (docs/algorithm.md §2, properties of §6).
 *
 * The centre piece is a slow double-precision D x D reference of the online estimator
 * (Kaldi's OnlineNaturalGradientSimple: explicit F_t, S_t, T_t, Y_t, Z_t, eig, R_{t+1},
 * Gram-Schmidt of R_{t+1} when it drifts, G_t^{-1}), run side by side with the fast code on
 * Kaldi's random shapes and spiked inputs. The other tests check the exact properties of
 * §6 (a)-(i), the simple method's leave-one-out identity, options, and state round trips.
 *
 * Dimension letters: N rows, D dimension, R rank.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/engine.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/ngrad.h"
#include "ngtrain/rng.h"

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                              */

/* Kaldi's scalar AssertEqual: |a - b| <= tol (|a| + |b|). */
static int approx_eq(double a, double b, double tol) {
  return fabs(a - b) <= tol * (fabs(a) + fabs(b));
}

static int rand_int(ngt_rng *r, int lo, int hi) { /* inclusive */
  return lo + (int)ngt_rng_below(r, (uint32_t)(hi - lo + 1));
}

static void fill_randn(ngt_rng *r, float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = (float)ngt_rng_normal(r);
}

/* Kaldi's test input: X = randn(N, D) + v s^T with v ~ randn(N) drawn per minibatch and the
 * spike s = randn(D) k^2 given (Kaldi draws s and k once per trial). */
static void fill_spiked_s(ngt_rng *r, float *X, int N, int D, const double *s) {
  double *v = malloc(sizeof(double) * (size_t)N);
  for (int n = 0; n < N; n++) v[n] = ngt_rng_normal(r);
  for (int n = 0; n < N; n++)
    for (int j = 0; j < D; j++) X[(size_t)n * D + j] = (float)(ngt_rng_normal(r) + v[n] * s[j]);
  free(v);
}

static void draw_spike(ngt_rng *r, double *s, int D, int k) {
  for (int j = 0; j < D; j++) s[j] = ngt_rng_normal(r) * k * k;
}

/* The same with a fresh spike direction every minibatch: harsher than Kaldi's test (the
 * estimate must keep rotating), used for the self-consistency properties. */
static void fill_spiked(ngt_rng *r, float *X, int N, int D, int k) {
  double *s = malloc(sizeof(double) * (size_t)D);
  draw_spike(r, s, D, k);
  fill_spiked_s(r, X, N, D, s);
  free(s);
}

static double frob2f(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

static int all_finite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

static ngt_ngrad_opts test_opts(int R, int P) {
  ngt_ngrad_opts o = ngt_ngrad_opts_default();
  o.rank = R;
  o.update_period = P;
  o.self_debug = 1;
  return o;
}

static void init_ok(ngt_ngrad *p, int D, const ngt_ngrad_opts *o) {
  ngt_err err = {0};
  int rc = ngt_ngrad_init(p, D, o, &err);
  ck_assert_msg(rc == 0, "ngt_ngrad_init failed: %s", err.msg);
}

/* Loop tests run with _i = 0 (fp32) and _i = 1 (bf16 mode, docs/algorithm.md §3.5: bf16
 * H = X W^T and X^ in every call, the statistics in fp32/fp64); 0 if bf16 cannot run here. */
static int precision_ok(int bf16, const char *test) {
  const char *why = bf16 ? ngt_engine_bf16_unavailable() : NULL;
  if (why) printf("%s (bf16): SKIPPED: %s\n", test, why);
  return why == NULL;
}

/* Max |R R^T - I| with R = E^{-1/2} W, in double (docs/algorithm.md §6 (d)). */
static double orth_error(const ngt_ngrad *p) {
  int R = p->R, D = p->D;
  double sd = 0;
  for (int i = 0; i < R; i++) sd += p->d[i];
  double beta = p->rho * (1 + p->o.alpha) + p->o.alpha * sd / D, maxerr = 0;
  for (int i = 0; i < R; i++)
    for (int j = 0; j <= i; j++) {
      double ei = 1 / (beta / p->d[i] + 1), ej = 1 / (beta / p->d[j] + 1), s = 0;
      for (int k = 0; k < D; k++) s += (double)p->W[(size_t)i * D + k] * p->W[(size_t)j * D + k];
      double err = fabs(s / sqrt(ei * ej) - (i == j));
      if (!(err <= maxerr)) maxerr = err; /* NaN propagates */
    }
  return maxerr;
}

/* Snapshot of the estimator state (W, d, rho) for bit-identity checks. */
typedef struct snap {
  float *W;
  double *d;
  double rho;
} snap;

static snap snap_take(const ngt_ngrad *p) {
  snap s;
  size_t nw = (size_t)p->R * (size_t)p->D;
  s.W = malloc(sizeof(float) * (nw ? nw : 1));
  s.d = malloc(sizeof(double) * (size_t)(p->R ? p->R : 1));
  memcpy(s.W, p->W, sizeof(float) * nw);
  memcpy(s.d, p->d, sizeof(double) * (size_t)p->R);
  s.rho = p->rho;
  return s;
}

static int snap_same(const snap *s, const ngt_ngrad *p) {
  size_t nw = (size_t)p->R * (size_t)p->D;
  return memcmp(s->W, p->W, sizeof(float) * nw) == 0 &&
         memcmp(s->d, p->d, sizeof(double) * (size_t)p->R) == 0 &&
         memcmp(&s->rho, &p->rho, sizeof(double)) == 0;
}

static void snap_free(snap *s) {
  free(s->W);
  free(s->d);
}

/* X - (X W^T) W in double, for checking which W was applied. */
static void apply_old_w(const float *X, int N, int D, const float *W, int R, double *out) {
  for (int n = 0; n < N; n++) {
    const float *x = X + (size_t)n * D;
    double *o = out + (size_t)n * D;
    for (int k = 0; k < D; k++) o[k] = x[k];
    for (int i = 0; i < R; i++) {
      const float *w = W + (size_t)i * D;
      double h = 0;
      for (int k = 0; k < D; k++) h += (double)x[k] * w[k];
      for (int k = 0; k < D; k++) o[k] -= h * w[k];
    }
  }
}

/* Inverse of the n x n SPD double matrix A (row-major), in place, via Cholesky. */
static int spd_inverse(int n, double *A) {
  int info = ngt_lapack_potrf_lower(n, A);
  if (info) return info;
  info = ngt_lapack_trtri_lower(n, A); /* A = L^{-1} (lower) */
  if (info) return info;
  double *T = calloc((size_t)n * n, sizeof(double));
  for (int i = 0; i < n; i++) /* (L^{-T} L^{-1})_ij = sum_k Linv_ki Linv_kj, k >= max(i, j) */
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int k = i > j ? i : j; k < n; k++) s += A[(size_t)k * n + i] * A[(size_t)k * n + j];
      T[(size_t)i * n + j] = s;
    }
  memcpy(A, T, sizeof(double) * (size_t)n * n);
  free(T);
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The brute-force reference (Kaldi OnlineNaturalGradientSimple, double, explicit D x D).     */

typedef struct ref_ng {
  int R, D;
  double alpha, epsilon, delta, S;
  double *Rt; /* (R, D) orthonormal rows */
  double *d;  /* (R) */
  double rho;
  int t;
  double last_floor; /* f = max(eps, delta max sigma) of the last update */
} ref_ng;

static void ref_init(ref_ng *r, int R, int D, const ngt_ngrad_opts *o) {
  memset(r, 0, sizeof *r);
  r->R = R;
  r->D = D;
  r->alpha = o->alpha;
  r->epsilon = o->epsilon;
  r->delta = o->delta;
  r->S = o->num_samples_history;
  r->Rt = calloc((size_t)R * D, sizeof(double));
  r->d = calloc((size_t)R, sizeof(double));
}

static void ref_free(ref_ng *r) {
  free(r->Rt);
  free(r->d);
}

/* Gram-Schmidt on the rows of M (R x D), in double. */
static void ref_gram_schmidt(double *M, int R, int D) {
  for (int i = 0; i < R; i++) {
    double *ri = M + (size_t)i * D;
    for (int j = 0; j < i; j++) {
      double *rj = M + (size_t)j * D, s = 0;
      for (int k = 0; k < D; k++) s += ri[k] * rj[k];
      for (int k = 0; k < D; k++) ri[k] -= s * rj[k];
    }
    double s = 0;
    for (int k = 0; k < D; k++) s += ri[k] * ri[k];
    ck_assert_msg(s > 0, "reference Gram-Schmidt: row %d vanished", i);
    for (int k = 0; k < D; k++) ri[k] /= sqrt(s);
  }
}

static double ref_orth_dev(const double *M, int R, int D) {
  double m = 0;
  for (int i = 0; i < R; i++)
    for (int j = 0; j <= i; j++) {
      double s = 0;
      for (int k = 0; k < D; k++) s += M[(size_t)i * D + k] * M[(size_t)j * D + k];
      double e = fabs(s - (i == j));
      if (!(e <= m)) m = e;
    }
  return m;
}

/* One step: X (N x D) -> Xhat (may be NULL), gamma; always updates (update period 1). */
static void ref_step(ref_ng *r, const double *X, int N, double *Xhat, double *gamma) {
  int R = r->R, D = r->D;
  size_t DD = (size_t)D * D;
  double eta = 1 - exp(-(double)N / r->S);
  if (eta > 0.9) eta = 0.9;
  double *F = calloc(DD, sizeof(double)), *T = calloc(DD, sizeof(double));
  double *Y = calloc((size_t)R * D, sizeof(double)), *Z = calloc((size_t)R * R, sizeof(double));
  double *w = calloc((size_t)(R > D ? R : D), sizeof(double));
  /* F_t = R^T D_t R + rho I */
  for (int a = 0; a < D; a++)
    for (int b = 0; b < D; b++) {
      double s = a == b ? r->rho : 0;
      for (int i = 0; i < R; i++)
        s += r->Rt[(size_t)i * D + a] * r->d[i] * r->Rt[(size_t)i * D + b];
      F[(size_t)a * D + b] = s;
    }
  { /* F_t is positive definite and d > 0 */
    double *Fc = malloc(sizeof(double) * DD);
    memcpy(Fc, F, sizeof(double) * DD);
    ck_assert_int_eq(ngt_lapack_syev(D, Fc, w), 0);
    ck_assert_msg(w[0] > 0, "reference F_t not positive definite (min eig %g)", w[0]);
    for (int i = 0; i < R; i++) ck_assert(r->d[i] > 0);
    free(Fc);
  }
  /* S_t = X^T X / N;  T_t = eta S + (1 - eta) F */
  double trS = 0, trF = 0, trXX = 0;
  for (int a = 0; a < D; a++)
    for (int b = 0; b < D; b++) {
      double s = 0;
      for (int n = 0; n < N; n++) s += X[(size_t)n * D + a] * X[(size_t)n * D + b];
      s /= N;
      if (a == b) {
        trS += s;
        trF += F[(size_t)a * D + a];
      }
      T[(size_t)a * D + b] = eta * s + (1 - eta) * F[(size_t)a * D + b];
    }
  for (size_t k = 0; k < (size_t)N * D; k++) trXX += X[k] * X[k];
  /* Y = R T;  Z = Y Y^T */
  for (int i = 0; i < R; i++)
    for (int b = 0; b < D; b++) {
      double s = 0;
      for (int a = 0; a < D; a++) s += r->Rt[(size_t)i * D + a] * T[(size_t)a * D + b];
      Y[(size_t)i * D + b] = s;
    }
  for (int i = 0; i < R; i++)
    for (int j = 0; j < R; j++) {
      double s = 0;
      for (int b = 0; b < D; b++) s += Y[(size_t)i * D + b] * Y[(size_t)j * D + b];
      Z[(size_t)i * R + j] = s;
    }
  ck_assert_int_eq(ngt_lapack_syev(R, Z, w), 0); /* ascending; eigvec k at Z[k*R..] */
  double *c = malloc(sizeof(double) * R), *sig = malloc(sizeof(double) * R);
  double cfloor = pow(r->rho * (1 - eta), 2);
  int floored = 0;
  for (int i = 0; i < R; i++) {
    c[i] = w[R - 1 - i];
    if (c[i] < cfloor) {
      c[i] = cfloor;
      floored = 1;
    }
  }
  double sum_sig = 0, max_sig = 0, sum_d = 0;
  for (int i = 0; i < R; i++) {
    sig[i] = sqrt(c[i]);
    sum_sig += sig[i];
    if (sig[i] > max_sig) max_sig = sig[i];
    sum_d += r->d[i];
  }
  /* rho_{t+1}; d_{t+1} = sigma - rho_{t+1} uses the unfloored rho (docs/algorithm.md §2.5) */
  double rho1 = (eta * trS + (1 - eta) * (D * r->rho + sum_d) - sum_sig) / (D - R);
  double *d1 = malloc(sizeof(double) * R);
  for (int i = 0; i < R; i++) d1[i] = sig[i] - rho1;
  double f = r->delta * max_sig > r->epsilon ? r->delta * max_sig : r->epsilon;
  if (rho1 < f) {
    rho1 = f;
    floored = 1;
  }
  for (int i = 0; i < R; i++)
    if (d1[i] < f) {
      d1[i] = f;
      floored = 1;
    }
  r->last_floor = f;
  /* R_{t+1} = C^{-1/2} U^T Y */
  double *R1 = calloc((size_t)R * D, sizeof(double));
  for (int i = 0; i < R; i++) {
    const double *ui = Z + (size_t)(R - 1 - i) * R;
    for (int b = 0; b < D; b++) {
      double s = 0;
      for (int j = 0; j < R; j++) s += ui[j] * Y[(size_t)j * D + b];
      R1[(size_t)i * D + b] = s / sig[i];
    }
  }
  if (!floored) { /* tr(F_{t+1}) = tr(T_t) */
    double trF1 = D * rho1, trT = eta * trS + (1 - eta) * trF;
    for (int i = 0; i < R; i++) {
      double nn = 0;
      for (int b = 0; b < D; b++) nn += R1[(size_t)i * D + b] * R1[(size_t)i * D + b];
      trF1 += d1[i] * nn;
    }
    ck_assert_msg(approx_eq(trF1, trT, 1e-3), "reference: tr F_t+1 %g != tr T_t %g", trF1, trT);
  }
  /* G_t = F_t + (alpha/D) tr(F_t) I;  Xhat = beta_t X G_t^{-1} */
  if (Xhat) {
    double *G = malloc(sizeof(double) * DD);
    memcpy(G, F, sizeof(double) * DD);
    for (int a = 0; a < D; a++) G[(size_t)a * D + a] += r->alpha / D * trF;
    ck_assert_int_eq(spd_inverse(D, G), 0);
    double beta = r->rho + r->alpha / D * trF, trXh = 0;
    for (int n = 0; n < N; n++)
      for (int b = 0; b < D; b++) {
        double s = 0;
        for (int a = 0; a < D; a++) s += X[(size_t)n * D + a] * G[(size_t)a * D + b];
        Xhat[(size_t)n * D + b] = beta * s;
        trXh += beta * s * beta * s;
      }
    *gamma = trXX > 0 ? sqrt(trXX / trXh) : 1.0;
    free(G);
  }
  /* Gram-Schmidt R_{t+1} whenever it drifts by more than 1e-3 (docs/algorithm.md §2.6). */
  if (!(ref_orth_dev(R1, R, D) <= 1e-3)) {
    ref_gram_schmidt(R1, R, D);
    ck_assert(ref_orth_dev(R1, R, D) <= 1e-3);
  }
  memcpy(r->Rt, R1, sizeof(double) * (size_t)R * D);
  memcpy(r->d, d1, sizeof(double) * R);
  r->rho = rho1;
  free(F);
  free(T);
  free(Y);
  free(Z);
  free(w);
  free(c);
  free(sig);
  free(d1);
  free(R1);
}

static void ref_precondition(ref_ng *r, const double *X, int N, double *Xhat, double *gamma) {
  int R = r->R, D = r->D;
  if (r->t == 0) { /* same init: special matrix, d = rho = eps, then 3 (or 1) iterations */
    r->rho = r->epsilon;
    memset(r->Rt, 0, sizeof(double) * (size_t)R * D);
    for (int i = 0; i < R; i++) {
      r->d[i] = r->epsilon;
      int nc = (D - 1 - i) / R + 1;
      double norm = 1 / sqrt(1.21 + (nc - 1));
      for (int k = 0, col = i; col < D; k++, col += R)
        r->Rt[(size_t)i * D + col] = norm * (k == 0 ? 1.1 : 1.0);
    }
    int iters = N > R ? 3 : 1;
    for (int i = 0; i < iters; i++) ref_step(r, X, N, NULL, NULL);
  }
  ref_step(r, X, N, Xhat, gamma);
  r->t++;
}

/* ---------------------------------------------------------------------------------------- */
/* §6: the fast estimator against the brute-force reference on Kaldi's random setup.          */

START_TEST(test_online_vs_reference) {
  ngt_rng rng = ngt_rng_make(1234, NGT_RNG_STREAM_TEST);
  int64_t total_reorth = 0;
  const int num_trials = 9;
  for (int trial = 0; trial < num_trials; trial++) {
    int R = rand_int(&rng, 1, 30);
    int N = rand_int(&rng, 2 * R, 2 * R + 29);
    int D = rand_int(&rng, R + 1, R + 20);
    int zero = trial % 3 == 0; /* one third of trials: all-zero input */
    ngt_ngrad_opts o = test_opts(R, 1);
    ngt_ngrad p;
    init_ok(&p, D, &o);
    ref_ng ref;
    ref_init(&ref, R, D, &o);
    size_t ND = (size_t)N * D;
    float *X = malloc(sizeof(float) * ND), *X0 = malloc(sizeof(float) * ND);
    double *Xd = malloc(sizeof(double) * ND), *Xh = malloc(sizeof(double) * ND);
    double *spike = malloc(sizeof(double) * (size_t)D);
    draw_spike(&rng, spike, D, rand_int(&rng, 1, 20)); /* once per trial, as Kaldi */
    for (int mb = 0; mb < 100; mb++) {
      if (zero) memset(X, 0, sizeof(float) * ND);
      else
        fill_spiked_s(&rng, X, N, D, spike);
      memcpy(X0, X, sizeof(float) * ND);
      for (size_t k = 0; k < ND; k++) Xd[k] = X[k];
      float gf;
      ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &gf);
      double gr;
      ref_precondition(&ref, Xd, N, Xh, &gr);
      ck_assert_msg(all_finite(X, ND) && isfinite(gf), "trial %d mb %d: non-finite output", trial,
                    mb);
      double trXX = frob2f(X0, ND), trXh_fast = frob2f(X, ND), trXh_ref = 0, diff = 0;
      for (size_t k = 0; k < ND; k++) {
        trXh_ref += Xh[k] * Xh[k];
        diff += (Xh[k] - X[k]) * (Xh[k] - X[k]);
      }
      /* 1. norm preservation (with the reference's Xhat and the fast gamma, and fast/fast) */
      ck_assert_msg(approx_eq(trXX, (double)gf * gf * trXh_ref, 1e-2),
                    "trial %d (R=%d N=%d D=%d) mb %d: tr(XX^T)=%g vs gamma^2 tr(XhXh^T)=%g", trial,
                    R, N, D, mb, trXX, (double)gf * gf * trXh_ref);
      ck_assert(approx_eq(trXX, (double)gf * gf * trXh_fast, 1e-2));
      /* 2. equivalence */
      ck_assert_msg(sqrt(diff) <= 0.01 * sqrt(trXh_ref),
                    "trial %d (R=%d N=%d D=%d) mb %d: ||Xh_ref - Xh_fast|| = %g > 0.01 * %g",
                    trial, R, N, D, mb, sqrt(diff), sqrt(trXh_ref));
      /* 3. gamma */
      ck_assert_msg(approx_eq(gr, gf, 1e-2), "trial %d mb %d: gamma ref %g fast %g", trial, mb, gr,
                    (double)gf);
      /* 4. positive definiteness, row by row */
      for (int n = 0; n < N; n++) {
        double ip = 0;
        for (int k = 0; k < D; k++) ip += (double)X0[(size_t)n * D + k] * X[(size_t)n * D + k];
        ck_assert_msg(ip >= 0, "trial %d mb %d row %d: <x, xhat> = %g < 0", trial, mb, n, ip);
      }
      /* (e) floors: exactly, via the invariants f >= max(eps, delta max d); and against the
       * reference's f = max(eps, delta max sigma), which float32 rounding moves by ~1% on
       * spiky inputs (the float64 build of this code matches the reference to ~1e-5). */
      double dmax = 0;
      for (int i = 0; i < R; i++) dmax = p.d[i] > dmax ? p.d[i] : dmax;
      double fl = o.delta * dmax > o.epsilon ? o.delta * dmax : o.epsilon;
      ck_assert_msg(p.rho >= o.epsilon && p.rho >= fl * (1 - 1e-4), "rho %g below floor %g", p.rho,
                    fl);
      double f = ref.last_floor;
      ck_assert_msg(p.rho >= f * (1 - 5e-2), "rho %g below reference floor %g", p.rho, f);
      for (int i = 0; i < R; i++) {
        ck_assert(p.d[i] >= o.epsilon && p.d[i] >= fl * (1 - 1e-4));
        ck_assert_msg(p.d[i] >= f * (1 - 5e-2),
                      "trial %d (R=%d N=%d D=%d) mb %d: d[%d] = %g "
                      "below reference floor %g",
                      trial, R, N, D, mb, i, p.d[i], f);
      }
      /* (d) orthonormality of R_t */
      double oe = orth_error(&p);
      ck_assert_msg(oe <= 1e-4, "trial %d (R=%d N=%d D=%d) mb %d: R_t R_t^T - I = %g", trial, R, N,
                    D, mb, oe);
      if (zero) {
        ck_assert(gf == 1.0f);
        ck_assert(p.rho == o.epsilon);
        for (int i = 0; i < R; i++) ck_assert(p.d[i] == o.epsilon);
      }
    }
    ck_assert_int_eq(p.t, 100);
    ck_assert_int_eq(p.stats.num_updates, 100 + 3);
    total_reorth += p.stats.num_reorth;
    free(X);
    free(X0);
    free(Xd);
    free(Xh);
    free(spike);
    ref_free(&ref);
    ngt_ngrad_deinit(&p);
  }
  (void)total_reorth;
}
END_TEST

/* One update from the same known state, fast vs reference, tightly: no drift can build up,
 * so float32 agrees to ~1e-5. Case 0 makes rho_{t+1} hit its floor f = delta max sigma (data
 * only in the span of R_t), which checks d_{t+1} = sigma - rho_{t+1} with the unfloored rho
 * and rho_{t+1} = f exactly (§2.5, §6 (e)); the others are random states and inputs. */
START_TEST(test_single_step_vs_reference) {
  ngt_rng rng = ngt_rng_make(4321, NGT_RNG_STREAM_TEST);
  for (int c = 0; c < 6; c++) {
    int D = c == 0 ? 12 : rand_int(&rng, 6, 40), R = c == 0 ? 4 : rand_int(&rng, 1, D - 1);
    int N = c == 0 ? 30 : rand_int(&rng, 1, 70);
    ngt_ngrad_opts o = test_opts(R, 1);
    ngt_ngrad p;
    init_ok(&p, D, &o);
    ref_ng ref;
    ref_init(&ref, R, D, &o);
    ref.t = 20; /* initialised: no Init */
    if (c == 0) {
      ref.rho = 1e-3;
      const double dd[4] = {400, 3, 2, 1};
      for (int i = 0; i < R; i++) {
        ref.d[i] = dd[i];
        for (int k = i; k < D; k += R) ref.Rt[(size_t)i * D + k] = 1.0 / sqrt((D - 1 - i) / R + 1);
      }
    } else {
      ref.rho = exp(ngt_rng_normal(&rng));
      for (int i = 0; i < R; i++) ref.d[i] = ref.rho * exp(3 * ngt_rng_uniform(&rng));
      for (size_t k = 0; k < (size_t)R * D; k++) ref.Rt[k] = ngt_rng_normal(&rng);
      ref_gram_schmidt(ref.Rt, R, D);
    }
    /* the fast state: t, R, rho, d, W = E^{1/2} R_t */
    size_t n = ngt_ngrad_state_doubles(&p);
    double *st = malloc(sizeof(double) * n), sd = 0;
    for (int i = 0; i < R; i++) sd += ref.d[i];
    double beta = ref.rho * (1 + o.alpha) + o.alpha * sd / D;
    st[0] = 20;
    st[1] = R;
    st[2] = ref.rho;
    for (int i = 0; i < R; i++) {
      st[3 + i] = ref.d[i];
      double se = sqrt(1 / (beta / ref.d[i] + 1));
      for (int k = 0; k < D; k++) {
        float w = (float)(se * ref.Rt[(size_t)i * D + k]);
        st[3 + R + (size_t)i * D + k] = w;
        ref.Rt[(size_t)i * D + k] = w / se; /* the reference uses exactly the same W */
      }
    }
    ngt_err err = {0};
    ck_assert_int_eq(ngt_ngrad_state_load(&p, st, n, &err), 0);
    size_t ND = (size_t)N * D;
    float *X = malloc(sizeof(float) * ND);
    double *Xd = malloc(sizeof(double) * ND), *Xh = malloc(sizeof(double) * ND);
    for (int r = 0; r < N; r++)
      for (int k = 0; k < D; k++) {
        double v = 0;
        if (c == 0) /* in the span of the first two rows of R_t */
          v = (r % 3 + 1) * ref.Rt[k] + ((r % 5) - 2) * ref.Rt[D + k];
        else
          v = ngt_rng_normal(&rng) * (1 + k % 4);
        X[(size_t)r * D + k] = (float)v;
      }
    for (size_t k = 0; k < ND; k++) Xd[k] = X[k];
    float gf;
    double gr;
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &gf);
    ref_precondition(&ref, Xd, N, Xh, &gr);
    double num = 0, den = 0;
    for (size_t k = 0; k < ND; k++) {
      num += (Xh[k] - X[k]) * (Xh[k] - X[k]);
      den += Xh[k] * Xh[k];
    }
    ck_assert_msg(num <= 1e-10 * den, "case %d (R=%d N=%d D=%d): Xhat rel err %g", c, R, N, D,
                  sqrt(num / den));
    ck_assert(approx_eq(gr, gf, 1e-6));
    ck_assert_msg(approx_eq(ref.rho, p.rho, 1e-5), "case %d: rho ref %.9g fast %.9g", c, ref.rho,
                  p.rho);
    for (int i = 0; i < R; i++)
      ck_assert_msg(approx_eq(ref.d[i], p.d[i], 1e-5),
                    "case %d (R=%d N=%d D=%d): d[%d] ref %.9g "
                    "fast %.9g",
                    c, R, N, D, i, ref.d[i], p.d[i]);
    if (c == 0) {
      ck_assert_msg(p.rho == ref.last_floor || approx_eq(p.rho, ref.last_floor, 1e-6),
                    "rho %g should sit at its floor %g", p.rho, ref.last_floor);
      ck_assert(p.d[R - 1] > 2 * p.rho); /* the smallest d is not at the floor */
    }
    free(st);
    free(X);
    free(Xd);
    free(Xh);
    ref_free(&ref);
    ngt_ngrad_deinit(&p);
  }
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (h) eta                                                                                    */

START_TEST(test_eta) {
  ngt_ngrad_opts o = ngt_ngrad_opts_default();
  const int Ns[] = {64, 128, 256, 512, 1024};
  const double want[] = {0.0315, 0.0620, 0.1201, 0.2259, 0.4007};
  for (int i = 0; i < 5; i++)
    ck_assert_msg(fabs(ngt_ngrad_eta(&o, Ns[i]) - want[i]) < 5e-5, "eta(%d) = %.5f, want %.4f",
                  Ns[i], ngt_ngrad_eta(&o, Ns[i]), want[i]);
  ck_assert(ngt_ngrad_eta(&o, 4605) < 0.9);
  ck_assert(ngt_ngrad_eta(&o, 4606) == 0.9);
  ck_assert(ngt_ngrad_eta(&o, 1000000) == 0.9);
  ck_assert(fabs(ngt_ngrad_eta(&o, 4605) - (1 - exp(-4605.0 / 2000))) < 1e-15);
  o.num_minibatches_history = 4;
  ck_assert(ngt_ngrad_eta(&o, 64) == 0.25);
  ck_assert(ngt_ngrad_eta(&o, 100000) == 0.25);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Options                                                                                    */

static void expect_bad(ngt_ngrad_opts o, int D, const char *needle) {
  ngt_err err = {0};
  int rc = ngt_ngrad_opts_check(&o, D, "layer 2 (relu) input side", &err);
  ck_assert_int_eq(rc, NGT_EINVAL);
  ck_assert_int_eq(err.code, NGT_EINVAL);
  ck_assert_msg(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
  ck_assert_msg(strstr(err.msg, "layer 2 (relu) input side") != NULL, "message '%s' lacks what",
                err.msg);
  ck_assert_msg(strstr(err.msg, "(") != NULL, "message '%s' gives no fix", err.msg);
  ngt_ngrad p;
  ngt_err err2 = {0};
  ck_assert_int_eq(ngt_ngrad_init(&p, D, &o, &err2), NGT_EINVAL);
  ngt_ngrad_deinit(&p);
}

START_TEST(test_opts_check) {
  ngt_ngrad_opts d = ngt_ngrad_opts_default();
  ck_assert_int_eq(d.rank, 40);
  ck_assert_int_eq(d.update_period, 4);
  ck_assert(d.num_samples_history == 2000 && d.num_minibatches_history == 0 && d.alpha == 4 &&
            d.epsilon == 1e-10 && d.delta == 5e-4 && d.self_debug == 0);
  ngt_err err = {0};
  ck_assert_int_eq(ngt_ngrad_opts_check(&d, 1025, "x", &err), 0);
  ck_assert_int_eq(ngt_ngrad_opts_check(&d, 1, "x", &err), 0); /* D == 1: any rank */
  ngt_ngrad_opts o = d;
  o.rank = 1024;
  expect_bad(o, 1024, "rank 1024 >= dim 1024");
  o.rank = 41;
  expect_bad(o, 40, "41");
  o.rank = 0;
  expect_bad(o, 100, "rank 0");
  o.rank = -3;
  expect_bad(o, 100, "-3");
  o = d;
  o.alpha = -0.5;
  expect_bad(o, 100, "-0.5");
  o = d;
  o.update_period = 0;
  expect_bad(o, 100, "period 0");
  o = d;
  o.num_samples_history = 0;
  expect_bad(o, 100, "history 0");
  o.num_samples_history = -7;
  expect_bad(o, 100, "-7");
  o = d;
  o.num_minibatches_history = 0.5;
  expect_bad(o, 100, "0.5");
  o.num_minibatches_history = 1;
  expect_bad(o, 100, "history 1 ");
  o = d;
  o.epsilon = 0;
  expect_bad(o, 100, "epsilon 0");
  o = d;
  o.delta = 0.5;
  expect_bad(o, 100, "delta 0.5");
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (a) D = 1                                                                                  */

START_TEST(test_dim1) {
  ngt_ngrad_opts o = test_opts(20, 1);
  ngt_ngrad p;
  init_ok(&p, 1, &o);
  ck_assert_int_eq(p.R, 0);
  ck_assert_int_eq(ngt_ngrad_state_doubles(&p), 3);
  ngt_rng rng = ngt_rng_make(5, NGT_RNG_STREAM_TEST);
  float X[17], X0[17];
  for (int it = 0; it < 5; it++) {
    fill_randn(&rng, X, 17);
    if (it == 2) memset(X, 0, sizeof X);
    memcpy(X0, X, sizeof X);
    float g = 0;
    ngt_ngrad_precondition(&p, ngt_mat_view(X, 17, 1, 1), &g);
    ck_assert(g == 1.0f);
    ck_assert(memcmp(X, X0, sizeof X) == 0);
  }
  ngt_ngrad_deinit(&p);
  ngt_ngrad_deinit(NULL);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (b) all-zero input; N = 1; huge N                                                          */

START_TEST(test_zero_input) {
  const int Ns[] = {64, 1, 5000};
  for (int c = 0; c < 3; c++) {
    int N = Ns[c], D = 100, R = 10;
    ngt_ngrad_opts o = test_opts(R, 1);
    ngt_ngrad p;
    init_ok(&p, D, &o);
    float *X = calloc((size_t)N * D, sizeof(float));
    for (int it = 0; it < 20; it++) {
      memset(X, 0, sizeof(float) * (size_t)N * D);
      float g = 0;
      ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
      ck_assert(g == 1.0f);
      ck_assert(all_finite(X, (size_t)N * D) && frob2f(X, (size_t)N * D) == 0);
      ck_assert(all_finite(p.W, (size_t)R * D));
      ck_assert_msg(p.rho == 1e-10, "N=%d: rho %g != eps", N, p.rho);
      for (int i = 0; i < R; i++) ck_assert_msg(p.d[i] == 1e-10, "N=%d: d %g != eps", N, p.d[i]);
      ck_assert(orth_error(&p) <= 1e-4);
    }
    free(X);
    ngt_ngrad_deinit(&p);
  }
  /* zero minibatches after real data, and N = 1 minibatches of real data: no NaN */
  ngt_rng rng = ngt_rng_make(77, NGT_RNG_STREAM_TEST);
  int D = 50, R = 8;
  ngt_ngrad_opts o = test_opts(R, 1);
  ngt_ngrad p;
  init_ok(&p, D, &o);
  float X[64 * 50];
  for (int it = 0; it < 60; it++) {
    int N = it % 3 == 0 ? 1 : 64;
    if (it >= 20 && it < 40) memset(X, 0, sizeof X);
    else
      fill_spiked(&rng, X, N, D, 3);
    float g = 0;
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
    ck_assert(isfinite(g) && g > 0);
    ck_assert(all_finite(X, (size_t)N * D) && all_finite(p.W, (size_t)R * D));
    ck_assert(isfinite(p.rho) && p.rho >= 1e-10);
  }
  ngt_ngrad_deinit(&p);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (c) update schedule, freeze                                                                */

START_TEST(test_schedule) {
  const int P = 3, N = 40, D = 30, R = 5;
  ngt_ngrad_opts o = test_opts(R, P);
  ngt_ngrad p;
  init_ok(&p, D, &o);
  ngt_rng rng = ngt_rng_make(9, NGT_RNG_STREAM_TEST);
  float X[40 * 30];
  int64_t expect_updates = 0;
  for (int call = 0; call < 45; call++) {
    ck_assert_int_eq(p.t, call);
    fill_spiked(&rng, X, N, D, 2);
    snap s = snap_take(&p);
    float g;
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
    int want = call <= 10 || (call - 10) % P == 0;
    int changed = !snap_same(&s, &p);
    ck_assert_msg(changed == want, "call %d: state changed=%d, expected %d", call, changed, want);
    expect_updates += want + (call == 0 ? 3 : 0);
    ck_assert_int_eq(p.stats.num_updates, expect_updates);
    snap_free(&s);
  }
  ngt_ngrad_deinit(&p);
}
END_TEST

START_TEST(test_freeze) {
  const int N = 40, D = 30, R = 5;
  ngt_ngrad_opts o = test_opts(R, 1);
  ngt_ngrad p;
  init_ok(&p, D, &o);
  snap s0 = snap_take(&p); /* the InitDefault state */
  ngt_rng rng = ngt_rng_make(11, NGT_RNG_STREAM_TEST);
  float X[40 * 30], X0[40 * 30];
  double ref[40 * 30];
  ngt_ngrad_freeze(&p, 1);
  ck_assert(p.frozen);
  /* Init still runs when frozen: 3 init iterations, the frozen real call does not update. */
  fill_spiked(&rng, X, N, D, 2);
  float g;
  ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  ck_assert_int_eq(p.t, 1);
  ck_assert_int_eq(p.stats.num_updates, 3);
  ck_assert(!snap_same(&s0, &p));
  snap s1 = snap_take(&p);
  for (int call = 1; call < 20; call++) {
    fill_spiked(&rng, X, N, D, 2);
    memcpy(X0, X, sizeof X);
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
    ck_assert_int_eq(p.t, call + 1); /* t increments even when frozen */
    ck_assert(snap_same(&s1, &p));   /* W, d, rho bit-identical */
    ck_assert_int_eq(p.stats.num_updates, 3);
    apply_old_w(X0, N, D, s1.W, R, ref); /* output uses the old W */
    double num = 0, den = 0;
    for (int k = 0; k < N * D; k++) {
      num += (ref[k] - X[k]) * (ref[k] - X[k]);
      den += ref[k] * ref[k];
    }
    ck_assert_msg(num <= 1e-10 * den, "frozen output differs from X - X W^T W: %g",
                  sqrt(num / den));
    ck_assert(
        approx_eq(frob2f(X0, (size_t)N * D), (double)g * g * frob2f(X, (size_t)N * D), 1e-5));
  }
  ngt_ngrad_freeze(&p, 0);
  fill_spiked(&rng, X, N, D, 2);
  ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  ck_assert_int_eq(p.stats.num_updates, 4);
  ck_assert(!snap_same(&s1, &p));
  /* reset: the next call initialises again (4 updates) */
  ngt_ngrad_reset(&p);
  ck_assert_int_eq(p.t, 0);
  fill_spiked(&rng, X, N, D, 2);
  ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  ck_assert_int_eq(p.stats.num_updates, 8);
  ck_assert_int_eq(p.t, 1);
  snap_free(&s0);
  snap_free(&s1);
  ngt_ngrad_deinit(&p);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (d) orthonormality at realistic sizes, (e) floors on rank-deficient data                    */

START_TEST(test_orthonormal_and_floors) {
  if (!precision_ok(_i, "test_orthonormal_and_floors")) return;
  ngt_rng rng = ngt_rng_make(21, NGT_RNG_STREAM_TEST);
  struct {
    int N, D, R, rank_data;
  } cases[] = {{128, 201, 20, 0}, {96, 120, 30, 0}, {60, 40, 10, 2}, {64, 300, 40, 5}};
  for (int c = 0; c < 4; c++) {
    int N = cases[c].N, D = cases[c].D, R = cases[c].R, rd = cases[c].rank_data;
    ngt_ngrad_opts o = test_opts(R, 2);
    ngt_ngrad p;
    init_ok(&p, D, &o);
    p.bf16 = _i;
    float *X = malloc(sizeof(float) * (size_t)N * D);
    float *B = malloc(sizeof(float) * (size_t)(rd ? rd : 1) * D);
    float *C = malloc(sizeof(float) * (size_t)N * (rd ? rd : 1));
    for (int it = 0; it < 60; it++) {
      if (rd) { /* exactly rank rd < R: most of C_t sits at its floors */
        fill_randn(&rng, B, (size_t)rd * D);
        if (it == 0 || it % 10 == 5) fill_randn(&rng, C, (size_t)N * rd);
        for (int n = 0; n < N; n++)
          for (int k = 0; k < D; k++) {
            double s = 0;
            for (int j = 0; j < rd; j++)
              s += (double)C[n * rd + j] * B[(size_t)j * D + k] * (j + 1) * 10;
            X[(size_t)n * D + k] = (float)s;
          }
      } else {
        fill_spiked(&rng, X, N, D, rand_int(&rng, 1, 20));
      }
      float g;
      int64_t before = p.stats.num_updates;
      ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
      double oe = orth_error(&p);
      ck_assert_msg(oe <= 1e-4, "case %d it %d: R_t R_t^T - I = %g", c, it, oe);
      if (p.stats.num_updates > before) { /* (e) right after an update */
        double dmax = 0;
        for (int i = 0; i < R; i++) dmax = p.d[i] > dmax ? p.d[i] : dmax;
        double fl = o.delta * dmax > o.epsilon ? o.delta * dmax : o.epsilon;
        ck_assert(p.rho >= o.epsilon && p.rho >= fl * (1 - 1e-4));
        for (int i = 0; i < R; i++) ck_assert(p.d[i] >= o.epsilon && p.d[i] >= fl * (1 - 1e-4));
      }
    }
    if (rd) ck_assert_msg(p.stats.num_floored > 0, "rank-%d data never hit a floor", rd);
    free(X);
    free(B);
    free(C);
    ngt_ngrad_deinit(&p);
  }
}
END_TEST

/* Re-orthogonalisation with the Gram-Schmidt fallback: a state whose W rows all coincide
 * makes W_{t+1} rank one, so Cholesky of O fails and the rows must be rebuilt. */
START_TEST(test_gram_schmidt_fallback) {
  const int N = 50, D = 40, R = 6;
  ngt_ngrad_opts o = test_opts(R, 1);
  ngt_ngrad p;
  init_ok(&p, D, &o);
  ngt_rng rng = ngt_rng_make(31, NGT_RNG_STREAM_TEST);
  float X[50 * 40];
  float g;
  for (int it = 0; it < 15; it++) {
    fill_spiked(&rng, X, N, D, 2);
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  }
  size_t n = ngt_ngrad_state_doubles(&p);
  double *st = malloc(sizeof(double) * n);
  ngt_ngrad_state_save(&p, st);
  for (int i = 0; i < R; i++) st[3 + i] = st[3]; /* equal d */
  for (int i = 1; i < R; i++)
    for (int k = 0; k < D; k++) st[3 + R + (size_t)i * D + k] = st[3 + R + k]; /* equal rows */
  ngt_err err = {0};
  ck_assert_int_eq(ngt_ngrad_state_load(&p, st, n, &err), 0);
  int64_t gs = p.stats.num_gram_schmidt, ro = p.stats.num_reorth;
  fill_spiked(&rng, X, N, D, 2);
  ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  ck_assert_int_gt(p.stats.num_reorth, ro);
  ck_assert_int_gt(p.stats.num_gram_schmidt, gs);
  ck_assert(all_finite(p.W, (size_t)R * D));
  ck_assert_msg(orth_error(&p) <= 1e-4, "after Gram-Schmidt: %g", orth_error(&p));
  for (int it = 0; it < 10; it++) { /* and it goes on working */
    fill_spiked(&rng, X, N, D, 2);
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
    ck_assert(all_finite(X, (size_t)N * D) && isfinite(g));
  }
  free(st);
  ngt_ngrad_deinit(&p);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (f) the preconditioner at call t depends only on earlier minibatches                       */

START_TEST(test_depends_only_on_past) {
  if (!precision_ok(_i, "test_depends_only_on_past")) return;
  const int N = 48, D = 60, R = 12;
  /* bf16: X^ = X - H W from bf16 operands, ~2^-8 of H W off the fp32/fp64 reference */
  const double tol = _i ? 1e-4 : 1e-10;
  ngt_ngrad_opts o = test_opts(R, 1);
  ngt_ngrad p, q;
  init_ok(&p, D, &o);
  init_ok(&q, D, &o);
  p.bf16 = q.bf16 = _i;
  ngt_rng rng = ngt_rng_make(41, NGT_RNG_STREAM_TEST);
  float Xa[48 * 60], Xb[48 * 60], Xa0[48 * 60], Xb0[48 * 60];
  double ref[48 * 60];
  float g;
  for (int it = 0; it < 5; it++) {
    fill_spiked(&rng, Xa, N, D, 3);
    ngt_ngrad_precondition(&p, ngt_mat_view(Xa, N, D, D), &g);
  }
  size_t n = ngt_ngrad_state_doubles(&p);
  double *st = malloc(sizeof(double) * n);
  ngt_err err = {0};
  for (int it = 0; it < 12; it++) {
    ngt_ngrad_state_save(&p, st);
    ck_assert_int_eq(ngt_ngrad_state_load(&q, st, n, &err), 0);
    snap s = snap_take(&p);
    fill_spiked(&rng, Xa, N, D, 3);
    fill_spiked(&rng, Xb, N, D, 7); /* a different minibatch at the same call */
    memcpy(Xb, Xa, sizeof(float) * (size_t)(N / 2) * D); /* first half of the rows shared */
    memcpy(Xa0, Xa, sizeof Xa);
    memcpy(Xb0, Xb, sizeof Xb);
    float ga, gb;
    ngt_ngrad_precondition(&p, ngt_mat_view(Xa, N, D, D), &ga);
    ngt_ngrad_precondition(&q, ngt_mat_view(Xb, N, D, D), &gb);
    for (int which = 0; which < 2; which++) {
      const float *in = which ? Xb0 : Xa0, *out = which ? Xb : Xa;
      apply_old_w(in, N, D, s.W, R, ref);
      double num = 0, den = 0;
      for (int k = 0; k < N * D; k++) {
        num += (ref[k] - out[k]) * (ref[k] - out[k]);
        den += ref[k] * ref[k];
      }
      ck_assert_msg(num <= tol * den, "it %d: output not X - X W_t^T W_t with the old W", it);
    }
    for (int k = 0; k < (N / 2) * D; k++) /* shared rows: same preconditioned rows */
      ck_assert(fabsf(Xa[k] - Xb[k]) <= 1e-5f * (fabsf(Xa[k]) + 1e-3f));
    ck_assert(!snap_same(&s, &p) && !snap_same(&s, &q)); /* both then updated, differently */
    ck_assert(memcmp(p.W, q.W, sizeof(float) * (size_t)R * D) != 0);
    snap_free(&s);
  }
  free(st);
  ngt_ngrad_deinit(&p);
  ngt_ngrad_deinit(&q);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (g) first minibatch: 4 updates when N > R, 2 when N <= R                                   */

START_TEST(test_first_minibatch_updates) {
  if (!precision_ok(_i, "test_first_minibatch_updates")) return;
  const int D = 30, R = 10;
  const int Ns[] = {11, 64, 10, 3, 1};
  const int want[] = {4, 4, 2, 2, 2};
  ngt_rng rng = ngt_rng_make(51, NGT_RNG_STREAM_TEST);
  float X[64 * 30];
  for (int c = 0; c < 5; c++) {
    ngt_ngrad_opts o = test_opts(R, 4);
    ngt_ngrad p;
    init_ok(&p, D, &o);
    p.bf16 = _i;
    fill_spiked(&rng, X, Ns[c], D, 2);
    float g;
    ngt_ngrad_precondition(&p, ngt_mat_view(X, Ns[c], D, D), &g);
    ck_assert_msg(p.stats.num_updates == want[c], "N=%d R=%d: %lld updates, want %d", Ns[c], R,
                  (long long)p.stats.num_updates, want[c]);
    ck_assert_int_eq(p.t, 1);
    ngt_ngrad_deinit(&p);
  }
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* (i) trace identity tr(XX^T) = tr(X^X^^T) + sum_i L_ii (2 - e_i)                            */

START_TEST(test_trace_identity) {
  if (!precision_ok(_i, "test_trace_identity")) return;
  const int N = 64, D = 80, R = 16;
  const double tol = _i ? 1e-2 : 1e-4; /* bf16: X^ from bf16 H and W, L_ii here exact */
  ngt_ngrad_opts o = test_opts(R, 3);
  ngt_ngrad p;
  init_ok(&p, D, &o);
  p.bf16 = _i;
  ngt_rng rng = ngt_rng_make(61, NGT_RNG_STREAM_TEST);
  float X[64 * 80], X0[64 * 80];
  float g;
  fill_spiked(&rng, X, N, D, 4);
  ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g); /* initialise */
  for (int it = 0; it < 20; it++) {
    fill_spiked(&rng, X, N, D, rand_int(&rng, 1, 10));
    memcpy(X0, X, sizeof X);
    snap s = snap_take(&p);
    double sd = 0;
    for (int i = 0; i < R; i++) sd += s.d[i];
    double beta = s.rho * (1 + o.alpha) + o.alpha * sd / D, sumL = 0;
    for (int i = 0; i < R; i++) {
      double e = 1 / (beta / s.d[i] + 1), Lii = 0;
      for (int n = 0; n < N; n++) {
        double h = 0;
        for (int k = 0; k < D; k++) h += (double)X0[n * D + k] * s.W[(size_t)i * D + k];
        Lii += h * h;
      }
      sumL += Lii * (2 - e);
    }
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
    double trXX = frob2f(X0, (size_t)N * D), trXh = frob2f(X, (size_t)N * D);
    ck_assert_msg(fabs(trXX - (trXh + sumL)) <= tol * trXX, "it %d: %g vs %g + %g", it, trXX, trXh,
                  sumL);
    ck_assert(approx_eq(trXX, (double)g * g * trXh, 1e-5));
    snap_free(&s);
  }
  ngt_ngrad_deinit(&p);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Non-finite minibatches do not poison the estimate                                          */

START_TEST(test_nonfinite_input_keeps_state) {
  if (!precision_ok(_i, "test_nonfinite_input_keeps_state")) return;
  const int N = 32, D = 20, R = 4;
  int saved = ngt_log_level_current;
  ngt_log_set_level(NGT_ERROR); /* the warning is expected */
  ngt_ngrad_opts o = test_opts(R, 1);
  ngt_ngrad p;
  init_ok(&p, D, &o);
  p.bf16 = _i;
  ngt_rng rng = ngt_rng_make(71, NGT_RNG_STREAM_TEST);
  float X[32 * 20];
  float g;
  for (int it = 0; it < 5; it++) {
    fill_spiked(&rng, X, N, D, 2);
    ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  }
  snap s = snap_take(&p);
  int64_t upd = p.stats.num_updates;
  fill_spiked(&rng, X, N, D, 2);
  X[17] = NAN;
  ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  ck_assert(snap_same(&s, &p));
  ck_assert_int_eq(p.stats.num_updates, upd);
  ck_assert_int_eq(p.t, 6);
  fill_spiked(&rng, X, N, D, 2);
  ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &g);
  ck_assert(all_finite(X, (size_t)N * D) && all_finite(p.W, (size_t)R * D) && isfinite(g));
  snap_free(&s);
  ngt_ngrad_deinit(&p);
  ngt_log_set_level(saved);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* State save/load                                                                            */

START_TEST(test_state_roundtrip) {
  const int N = 40, D = 50, R = 7;
  ngt_ngrad_opts o = test_opts(R, 4);
  ngt_ngrad p, q;
  init_ok(&p, D, &o);
  init_ok(&q, D, &o);
  ngt_rng rng = ngt_rng_make(81, NGT_RNG_STREAM_TEST);
  float Xp[40 * 50 + 7], Xq[40 * 50 + 7];
  float gp, gq;
  for (int it = 0; it < 17; it++) {
    fill_spiked(&rng, Xp, N, D, 3);
    ngt_ngrad_precondition(&p, ngt_mat_view(Xp, N, D, D), &gp);
  }
  size_t n = ngt_ngrad_state_doubles(&p);
  ck_assert_uint_eq(n, 3 + (size_t)R + (size_t)R * D);
  double *st = malloc(sizeof(double) * (n + 1));
  ngt_ngrad_state_save(&p, st);
  ck_assert(st[0] == 17 && st[1] == R && st[2] == p.rho);
  ngt_err err = {0};
  ck_assert_int_eq(ngt_ngrad_state_load(&q, st, n, &err), 0);
  ck_assert_int_eq(q.t, 17);
  for (int it = 0; it < 20; it++) { /* both updating and non-updating calls, N varies */
    int Ni = it % 5 == 3 ? 7 : N;
    fill_spiked(&rng, Xp, Ni, D, 3);
    memcpy(Xq, Xp, sizeof(float) * (size_t)Ni * D);
    ngt_ngrad_precondition(&p, ngt_mat_view(Xp, Ni, D, D), &gp);
    ngt_ngrad_precondition(&q, ngt_mat_view(Xq, Ni, D, D), &gq);
    ck_assert(memcmp(Xp, Xq, sizeof(float) * (size_t)Ni * D) == 0);
    ck_assert(memcmp(&gp, &gq, sizeof gp) == 0);
  }
  ck_assert(memcmp(p.W, q.W, sizeof(float) * (size_t)R * D) == 0);
  ck_assert(memcmp(p.d, q.d, sizeof(double) * R) == 0 && p.rho == q.rho && p.t == q.t);
  /* a save/load/save gives the same doubles */
  double *st2 = malloc(sizeof(double) * n);
  ngt_ngrad_state_save(&q, st);
  ck_assert_int_eq(ngt_ngrad_state_load(&p, st, n, &err), 0);
  ngt_ngrad_state_save(&p, st2);
  ck_assert(memcmp(st, st2, sizeof(double) * n) == 0);
  /* bad states */
  ck_assert_int_eq(ngt_ngrad_state_load(&q, st, n + 1, &err), NGT_EFORMAT);
  ck_assert_msg(strstr(err.msg, "needs") && strstr(err.msg, "rank 7"), "%s", err.msg);
  ngt_ngrad_state_save(&p, st);
  st[1] = R + 1;
  ck_assert_int_eq(ngt_ngrad_state_load(&q, st, n, &err), NGT_EFORMAT);
  ngt_ngrad_state_save(&p, st);
  st[0] = -3;
  ck_assert_int_eq(ngt_ngrad_state_load(&q, st, n, &err), NGT_EFORMAT);
  ck_assert_msg(strstr(err.msg, "-3") != NULL, "%s", err.msg);
  ngt_ngrad_state_save(&p, st);
  st[4] = -1;
  ck_assert_int_eq(ngt_ngrad_state_load(&q, st, n, &err), NGT_EFORMAT);
  ngt_ngrad_state_save(&p, st);
  st[2] = NAN;
  ck_assert_int_eq(ngt_ngrad_state_load(&q, st, n, &err), NGT_EFORMAT);
  ck_assert(q.t == p.t); /* failed loads leave the state alone */
  free(st);
  free(st2);
  ngt_ngrad_deinit(&p);
  ngt_ngrad_deinit(&q);
}
END_TEST

/* Strided views: the result equals the contiguous one. */
START_TEST(test_strided_view) {
  const int N = 30, D = 25, R = 5, S = 31;
  ngt_ngrad_opts o = test_opts(R, 1);
  ngt_ngrad p, q;
  init_ok(&p, D, &o);
  init_ok(&q, D, &o);
  ngt_rng rng = ngt_rng_make(91, NGT_RNG_STREAM_TEST);
  float A[30 * 25], B[30 * 31];
  for (int it = 0; it < 12; it++) {
    fill_spiked(&rng, A, N, D, 2);
    for (int n = 0; n < N; n++) {
      memcpy(B + n * S, A + n * D, sizeof(float) * D);
      for (int k = D; k < S; k++) B[n * S + k] = 12345.0f;
    }
    float ga, gb;
    ngt_ngrad_precondition(&p, ngt_mat_view(A, N, D, D), &ga);
    ngt_ngrad_precondition(&q, ngt_mat_view(B, N, D, S), &gb);
    for (int n = 0; n < N; n++) {
      for (int k = 0; k < D; k++)
        ck_assert(fabsf(A[n * D + k] - B[n * S + k]) <= 1e-4f * (1 + fabsf(A[n * D + k])));
      for (int k = D; k < S; k++) ck_assert(B[n * S + k] == 12345.0f); /* padding untouched */
    }
    ck_assert(fabsf(ga - gb) <= 1e-4f * ga);
  }
  ngt_ngrad_deinit(&p);
  ngt_ngrad_deinit(&q);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* The simple method (§2.2): exact leave-one-out identity                                     */

START_TEST(test_simple_leave_one_out) {
  ngt_rng rng = ngt_rng_make(101, NGT_RNG_STREAM_TEST);
  const double alpha = 0.1;
  int saw_wide = 0, saw_tall = 0;
  for (int trial = 0; trial < 40; trial++) {
    int N = rand_int(&rng, 2, 31), D = rand_int(&rng, 1, 20);
    if (N >= D) saw_tall = 1;
    else
      saw_wide = 1;
    size_t ND = (size_t)N * D;
    float *Rm = malloc(sizeof(float) * ND);
    fill_randn(&rng, Rm, ND);
    if (trial % 4 == 1) /* a dominant direction as well */
      for (int n = 0; n < N; n++) {
        double v = ngt_rng_normal(&rng) * 5;
        for (int k = 0; k < D; k++) Rm[(size_t)n * D + k] += (float)(v * (k % 3 - 1));
      }
    double tr = frob2f(Rm, ND), lambda = alpha * tr / ((double)N * D);
    /* expected p_n = (lambda I + 1/(N-1) sum_{m != n} r_m r_m^T)^{-1} r_n, explicitly */
    double *P = malloc(sizeof(double) * ND), *G = malloc(sizeof(double) * D * D), trP = 0;
    for (int n = 0; n < N; n++) {
      for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) {
          double s = a == b ? lambda : 0;
          for (int m = 0; m < N; m++)
            if (m != n) s += (double)Rm[(size_t)m * D + a] * Rm[(size_t)m * D + b] / (N - 1);
          G[a * D + b] = s;
        }
      ck_assert_int_eq(spd_inverse(D, G), 0);
      for (int a = 0; a < D; a++) {
        double s = 0;
        for (int b = 0; b < D; b++) s += G[a * D + b] * Rm[(size_t)n * D + b];
        P[(size_t)n * D + a] = s;
        trP += s * s;
      }
    }
    double scale = sqrt(tr / trP); /* the expected step-3 rescale */
    ngt_err err = {0};
    int rc = ngt_ngrad_simple_precondition(ngt_mat_view(Rm, N, D, D), alpha, &err);
    ck_assert_msg(rc == 0, "N=%d D=%d: %s", N, D, err.msg);
    ck_assert(approx_eq(frob2f(Rm, ND), tr, 1e-5)); /* ||P|| = ||R|| */
    for (int n = 0; n < N; n++) {
      double num = 0, den = 0;
      for (int k = 0; k < D; k++) {
        double e = scale * P[(size_t)n * D + k];
        num += (e - Rm[(size_t)n * D + k]) * (e - Rm[(size_t)n * D + k]);
        den += e * e;
      }
      /* Kaldi's tolerance is relative 0.1; in double with float I/O we get far closer */
      ck_assert_msg(sqrt(num) <= 1e-3 * sqrt(den) + 1e-6, "N=%d D=%d row %d: rel err %g", N, D, n,
                    sqrt(num / den));
    }
    free(Rm);
    free(P);
    free(G);
  }
  ck_assert(saw_wide && saw_tall);
}
END_TEST

START_TEST(test_simple_degenerate) {
  ngt_err err = {0};
  float one[5] = {1, -2, 3, 0.5f, 7}, one0[5];
  memcpy(one0, one, sizeof one);
  ck_assert_int_eq(ngt_ngrad_simple_precondition(ngt_mat_view(one, 1, 5, 5), 4.0, &err), 0);
  ck_assert(memcmp(one, one0, sizeof one) == 0); /* N = 1 unchanged */
  float z[12 * 7] = {0};
  ck_assert_int_eq(ngt_ngrad_simple_precondition(ngt_mat_view(z, 12, 7, 7), 4.0, &err), 0);
  for (int k = 0; k < 12 * 7; k++) ck_assert(z[k] == 0.0f); /* zero unchanged */
  float same[10 * 4];                                       /* identical rows: rank one */
  for (int n = 0; n < 10; n++)
    for (int k = 0; k < 4; k++) same[n * 4 + k] = (float)(k + 1);
  ck_assert_int_eq(ngt_ngrad_simple_precondition(ngt_mat_view(same, 10, 4, 4), 4.0, &err), 0);
  ck_assert(all_finite(same, 40));
  float tiny[3 * 6]; /* wide, tiny values */
  for (int k = 0; k < 18; k++) tiny[k] = (float)((k % 5) - 2) * 1e-19f;
  ck_assert_int_eq(ngt_ngrad_simple_precondition(ngt_mat_view(tiny, 3, 6, 6), 0.1, &err), 0);
  ck_assert(all_finite(tiny, 18));
  float bad[6] = {1, 2, 3, 4, 5, 6};
  ck_assert_int_eq(ngt_ngrad_simple_precondition(ngt_mat_view(bad, 2, 3, 3), 0.0, &err),
                   NGT_EINVAL);
  ck_assert_msg(strstr(err.msg, "alpha 0") != NULL, "%s", err.msg);
  bad[2] = INFINITY;
  ck_assert_int_eq(ngt_ngrad_simple_precondition(ngt_mat_view(bad, 2, 3, 3), 4.0, &err), NGT_ENUM);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */

static Suite *ngrad_suite(void) {
  Suite *s = suite_create("ngrad");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_eta);
  tcase_add_test(tc, test_opts_check);
  tcase_add_test(tc, test_dim1);
  tcase_add_test(tc, test_zero_input);
  tcase_add_test(tc, test_schedule);
  tcase_add_test(tc, test_freeze);
  tcase_add_loop_test(tc, test_orthonormal_and_floors, 0, 2);
  tcase_add_test(tc, test_gram_schmidt_fallback);
  tcase_add_loop_test(tc, test_depends_only_on_past, 0, 2);
  tcase_add_loop_test(tc, test_first_minibatch_updates, 0, 2);
  tcase_add_loop_test(tc, test_trace_identity, 0, 2);
  tcase_add_loop_test(tc, test_nonfinite_input_keeps_state, 0, 2);
  tcase_add_test(tc, test_state_roundtrip);
  tcase_add_test(tc, test_strided_view);
  tcase_add_test(tc, test_simple_leave_one_out);
  tcase_add_test(tc, test_simple_degenerate);
  tcase_add_test(tc, test_single_step_vs_reference);
  tcase_add_test(tc, test_online_vs_reference);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(ngrad_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}

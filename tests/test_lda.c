/* test_lda.c — Check suite for src/lda.c (docs/algorithm.md §4.9: scaled LDA without
 * dimensionality reduction, and CMVN).
 *
 * The algebra is checked on the accumulated statistics themselves, so it is exact to
 * ~1e-9 rather than to sampling error: a slow reference in this file recomputes μ, T,
 * B, W from the buffer and checks M W Mᵀ = diag((w+s)/(1+s)), M B Mᵀ = diag(s(w+s)/(1+s)),
 * M T Mᵀ = diag(w+s), s against LAPACK's generalized eigensolver dsygv (a different
 * path from lda.c's Cholesky + syev), the singular-value ceiling through an
 * independent SVD, and [M, −Mμ][μ; 1] = 0. Sampling is checked separately: the s_i
 * against the population generalized eigenvalues of the generating Gaussians.
 *
 * Letters: N frames, D dim, C classes.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/lda.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/rng.h"

extern void dsygv_(const int *itype, const char *jobz, const char *uplo, const int *n, double *a,
                   const int *lda, double *b, const int *ldb, double *w, double *work,
                   const int *lwork, int *info);
extern void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
                    const int *lda, double *s, double *u, const int *ldu, double *vt,
                    const int *ldvt, double *work, const int *lwork, int *info);

/* ---- synthetic data ---------------------------------------------------------------- */

/* Gaussian classes x = off + m_c + A z with a shared non-diagonal covariance Σ = A Aᵀ
 * and unequal class priors π_c ∝ c + 1 over the first Cused of C classes. */
typedef struct gen {
  int N, D, C, Cused;
  ngt_mat X;       /* (N, D) */
  int32_t *labels; /* (N) */
  double *A;       /* (D, D) */
  double *means;   /* (C, D) m_c (without off) */
  double *prior;   /* (C) π_c */
} gen;

static void gen_make(gen *g, uint64_t seed, int N, int D, int C, int Cused, double mscale) {
  g->N = N, g->D = D, g->C = C, g->Cused = Cused;
  g->X = ngt_mat_alloc(N, D);
  g->labels = calloc((size_t)N, sizeof(int32_t));
  g->A = calloc((size_t)(D * D), sizeof(double));
  g->means = calloc((size_t)(C * D), sizeof(double));
  g->prior = calloc((size_t)C, sizeof(double));
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_TEST);
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++)
      g->A[i * D + j] = (i == j ? 1.0 + 0.5 * i / D : 0.0) + 0.4 * ngt_rng_normal(&r);
  for (int c = 0; c < Cused; c++)
    for (int j = 0; j < D; j++) g->means[c * D + j] = mscale * ngt_rng_normal(&r);
  double tot = 0.0;
  for (int c = 0; c < Cused; c++) tot += c + 1;
  for (int c = 0; c < Cused; c++) g->prior[c] = (c + 1) / tot;
  double *z = calloc((size_t)D, sizeof(double));
  for (int n = 0; n < N; n++) {
    double u = ngt_rng_uniform(&r), acc = 0.0;
    int c = Cused - 1;
    for (int k = 0; k < Cused; k++) {
      acc += g->prior[k];
      if (u < acc) {
        c = k;
        break;
      }
    }
    g->labels[n] = c;
    for (int j = 0; j < D; j++) z[j] = ngt_rng_normal(&r);
    for (int i = 0; i < D; i++) {
      double x = 5.0 + 0.5 * i + g->means[c * D + i]; /* a nonzero global offset */
      for (int j = 0; j < D; j++) x += g->A[i * D + j] * z[j];
      NGT_AT(g->X, n, i) = (float)x;
    }
  }
  free(z);
}

static void gen_free(gen *g) {
  ngt_mat_free(&g->X);
  free(g->labels);
  free(g->A);
  free(g->means);
  free(g->prior);
}

/* ---- slow reference -------------------------------------------------------------- */

/* μ (D), T, B, W (D, D) straight from the statistics buffer, by loops. */
static void ref_stats(const ngt_lda_stats *st, double *mu, double *T, double *B, double *W) {
  const int D = st->dim, C = st->num_classes;
  const double *buf = st->buf, N = buf[0];
  const double *sum = buf + 1, *sc = sum + D, *cc = sc + D * D, *cs = cc + C;
  for (int i = 0; i < D; i++) mu[i] = sum[i] / N;
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      T[i * D + j] = sc[i * D + j] / N - mu[i] * mu[j];
      double b = 0.0;
      for (int c = 0; c < C; c++) {
        if (cc[c] <= 0.0) continue;
        b += cc[c] / N * (cs[c * D + i] / cc[c] - mu[i]) * (cs[c * D + j] / cc[c] - mu[j]);
      }
      B[i * D + j] = b;
    }
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) W[i * D + j] = T[i * D + j] - B[i * D + j];
}

/* Q = M X Mᵀ with M the first D columns of T (D, D+1). */
static void quad(int D, const double *T, const double *X, double *Q) {
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      double q = 0.0;
      for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) q += T[i * (D + 1) + a] * X[a * D + b] * T[j * (D + 1) + b];
      Q[i * D + j] = q;
    }
}

/* Generalized eigenvalues λ (descending) and vectors (row i = z_i, zᵀ W z = 1) of
 * B z = λ W z, via dsygv. A copy of W is used. */
static void ref_geneig(int D, const double *B, const double *W, double *lam, double *Z) {
  double *a = malloc(sizeof(double) * (size_t)(D * D)),
         *b = malloc(sizeof(double) * (size_t)(D * D));
  double *w = malloc(sizeof(double) * (size_t)D);
  memcpy(a, B, sizeof(double) * (size_t)(D * D));
  memcpy(b, W, sizeof(double) * (size_t)(D * D));
  int itype = 1, info = 0, lwork = -1;
  double wq;
  dsygv_(&itype, "V", "U", &D, a, &D, b, &D, w, &wq, &lwork, &info);
  ck_assert_int_eq(info, 0);
  lwork = (int)wq;
  double *work = malloc(sizeof(double) * (size_t)lwork);
  dsygv_(&itype, "V", "U", &D, a, &D, b, &D, w, work, &lwork, &info);
  ck_assert_int_eq(info, 0);
  for (int i = 0; i < D; i++) {
    lam[i] = w[D - 1 - i];
    if (Z) memcpy(Z + i * D, a + (D - 1 - i) * D, sizeof(double) * (size_t)D);
  }
  free(work), free(w), free(a), free(b);
}

/* Singular values (descending) of the D x D matrix M (row-major), with U (D, D)
 * column k = u_k and V (D, D) column k = v_k, so M = U diag(sv) Vᵀ. */
static void ref_svd(int D, const double *M, double *sv, double *U, double *V) {
  /* Column-major view of row-major M is Mᵀ = V Σ Uᵀ: LAPACK's "U" is our V. */
  double *a = malloc(sizeof(double) * (size_t)(D * D));
  double *lu = malloc(sizeof(double) * (size_t)(D * D)),
         *lvt = malloc(sizeof(double) * (size_t)(D * D));
  memcpy(a, M, sizeof(double) * (size_t)(D * D));
  int info = 0, lwork = -1;
  double wq;
  dgesvd_("A", "A", &D, &D, a, &D, sv, lu, &D, lvt, &D, &wq, &lwork, &info);
  ck_assert_int_eq(info, 0);
  lwork = (int)wq;
  double *work = malloc(sizeof(double) * (size_t)lwork);
  dgesvd_("A", "A", &D, &D, a, &D, sv, lu, &D, lvt, &D, work, &lwork, &info);
  ck_assert_int_eq(info, 0);
  /* Mᵀ = LU Σ LVT (col-major) ⇒ M = LVTᵀ Σ LUᵀ: u_k = row k of LVT (col-major), v_k = col k of LU */
  for (int k = 0; k < D; k++)
    for (int i = 0; i < D; i++) {
      U[i * D + k] = lvt[i * D + k]; /* col-major lvt(k, i) = lvt[i*D + k] */
      V[i * D + k] = lu[k * D + i];  /* col-major lu(i, k) */
    }
  free(work), free(a), free(lu), free(lvt);
}

static void stats_of(const gen *g, ngt_lda_stats *st) {
  ngt_lda_stats_init(st, g->D, g->C);
  ngt_lda_stats_add(st, g->X, g->labels);
}

static double max_abs(const double *x, size_t n) {
  double m = 0.0;
  for (size_t k = 0; k < n; k++) m = fmax(m, fabs(x[k]));
  return m;
}

/* ---- tests -------------------------------------------------------------------------- */

START_TEST(test_lda_stats_layout) {
  /* [count, sum, scatter (full, symmetric), class_count, class_sum], exact. */
  const int N = 37, D = 5, C = 4;
  gen g;
  gen_make(&g, 7, N, D, C, 3, 1.0);
  ngt_lda_stats st;
  ngt_lda_stats_init(&st, D, C);
  ck_assert_uint_eq(st.size, (size_t)(1 + D + D * D + C + C * D));
  /* in three minibatches of uneven size */
  ngt_lda_stats_add(&st, ngt_mat_rows(g.X, 0, 10), g.labels);
  ngt_lda_stats_add(&st, ngt_mat_rows(g.X, 10, 0), g.labels + 10);
  ngt_lda_stats_add(&st, ngt_mat_rows(g.X, 10, 27), g.labels + 10);
  double *ref = calloc(st.size, sizeof(double));
  double *sum = ref + 1, *sc = sum + D, *cc = sc + D * D, *cs = cc + C;
  for (int n = 0; n < N; n++) {
    ref[0] += 1;
    int c = g.labels[n];
    cc[c] += 1;
    for (int i = 0; i < D; i++) {
      double xi = NGT_AT(g.X, n, i);
      sum[i] += xi;
      cs[c * D + i] += xi;
      for (int j = 0; j < D; j++) sc[i * D + j] += xi * (double)NGT_AT(g.X, n, j);
    }
  }
  for (size_t k = 0; k < st.size; k++)
    ck_assert_msg(fabs(st.buf[k] - ref[k]) <= 1e-12 * (1 + fabs(ref[k])),
                  "stats[%zu] = %.17g, expected %.17g", k, st.buf[k], ref[k]);
  ck_assert(cc[3] == 0.0 && st.buf[1 + D + D * D + 3] == 0.0);
  /* labels == NULL: only count, sum and scatter grow */
  ngt_lda_stats st2;
  ngt_lda_stats_init(&st2, D, C);
  ngt_lda_stats_add(&st2, g.X, NULL);
  for (size_t k = 0; k < 1 + (size_t)(D + D * D); k++)
    ck_assert(fabs(st2.buf[k] - ref[k]) <= 1e-12 * (1 + fabs(ref[k])));
  for (size_t k = 1 + (size_t)(D + D * D); k < st2.size; k++) ck_assert(st2.buf[k] == 0.0);
  free(ref);
  ngt_lda_stats_deinit(&st);
  ngt_lda_stats_deinit(&st2);
  ngt_lda_stats_deinit(NULL);
  gen_free(&g);
}
END_TEST

/* Steps 1-6 exactly on the statistics: within, between and total covariance of the
 * output are diag((w+s)/(1+s)), diag(s(w+s)/(1+s)), diag(w+s), s = dsygv's eigenvalues,
 * the offset removes the mean; for several w; two absent classes are skipped. */
START_TEST(test_lda_algebra_exact) {
  const int D = 10, C = 7, Cused = 5, N = 20000;
  gen g;
  gen_make(&g, 11, N, D, C, Cused, 1.5);
  ngt_lda_stats st;
  stats_of(&g, &st);
  double mu[10], Tc[100], B[100], W[100], Wt[100], Bt[100], Tt[100], lam[10];
  double T[10 * 11];
  ref_stats(&st, mu, Tc, B, W);
  ref_geneig(D, B, W, lam, NULL);
  const double ws[] = {0.001, 0.1, 1.0, 0.0};
  for (size_t t = 0; t < sizeof ws / sizeof ws[0]; t++) {
    ngt_lda_opts o = {.within_class_factor = ws[t], .max_singular_value = 0.0};
    ngt_lda_info info;
    ngt_err err = {0};
    memset(&info, 0xff, sizeof info);
    ck_assert_msg(ngt_lda_compute_f64(&st, &o, T, &info, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(info.used_fallback, 0);
    ck_assert_int_eq(info.num_classes_seen, Cused);
    ck_assert_int_eq(info.num_ceiled, 0);
    quad(D, T, W, Wt);
    quad(D, T, B, Bt);
    quad(D, T, Tc, Tt);
    const double w = ws[t], scale = 1.0 + lam[0];
    for (int i = 0; i < D; i++) {
      for (int j = 0; j < D; j++) {
        if (i == j) continue;
        ck_assert_msg(fabs(Wt[i * D + j]) < 1e-9 * scale && fabs(Bt[i * D + j]) < 1e-9 * scale,
                      "w=%g: off-diagonal (%d,%d): within %g between %g", w, i, j, Wt[i * D + j],
                      Bt[i * D + j]);
      }
      const double s = lam[i] > 0 ? lam[i] : 0.0;
      const double a = (w + s) / (1 + s);
      ck_assert_msg(fabs(Wt[i * D + i] - a) < 1e-9 * scale,
                    "w=%g i=%d: within %.12g expected %.12g", w, i, Wt[i * D + i], a);
      ck_assert_msg(fabs(Bt[i * D + i] - s * a) < 1e-9 * scale,
                    "w=%g i=%d: between %.12g expected %.12g", w, i, Bt[i * D + i], s * a);
      ck_assert_msg(fabs(Tt[i * D + i] - (w + s)) < 1e-9 * scale,
                    "w=%g i=%d: total %.12g expected %.12g", w, i, Tt[i * D + i], w + s);
      /* mean removal: [M, −Mμ] [μ; 1] = 0 */
      double y = T[i * (D + 1) + D];
      for (int k = 0; k < D; k++) y += T[i * (D + 1) + k] * mu[k];
      ck_assert_msg(fabs(y) < 1e-9 * (1 + max_abs(mu, D)), "w=%g: mean of output %d = %g", w, i,
                    y);
    }
    ck_assert(fabs(info.max_between - lam[0]) < 1e-9 * scale);
    ck_assert(fabs(info.min_between) < 1e-9 * scale);
    /* rank(B) = Cused - 1: the rest of s is zero */
    ck_assert(lam[Cused - 2] > 1e-3 && fabs(lam[Cused - 1]) < 1e-9 * scale);
  }
  ngt_lda_stats_deinit(&st);
  gen_free(&g);
}
END_TEST

/* Against a slow reference, elementwise: with C-1 >= D all s_i are distinct and M's
 * rows are sqrt((w+s_i)/(1+s_i)) z_iᵀ, z_i the W-normalised generalized eigenvectors
 * (up to sign). */
START_TEST(test_lda_matches_reference) {
  const int D = 6, C = 12, N = 30000;
  gen g;
  gen_make(&g, 12, N, D, C, C, 1.0);
  ngt_lda_stats st;
  stats_of(&g, &st);
  double mu[6], Tc[36], B[36], W[36], lam[6], Z[36], T[6 * 7];
  ref_stats(&st, mu, Tc, B, W);
  ref_geneig(D, B, W, lam, Z);
  for (int i = 0; i + 1 < D; i++) ck_assert(lam[i] > lam[i + 1] * 1.01);
  ngt_lda_opts o = {.within_class_factor = 0.05, .max_singular_value = 0.0};
  ngt_lda_info info;
  ngt_err err = {0};
  ck_assert_msg(ngt_lda_compute_f64(&st, &o, T, &info, &err) == 0, "%s", err.msg);
  for (int i = 0; i < D; i++) {
    const double f = sqrt((0.05 + lam[i]) / (1 + lam[i]));
    double dot = 0.0, nrm = 0.0;
    for (int k = 0; k < D; k++) dot += T[i * (D + 1) + k] * Z[i * D + k];
    const double sg = dot < 0 ? -1.0 : 1.0;
    for (int k = 0; k < D; k++) nrm = fmax(nrm, fabs(f * Z[i * D + k]));
    for (int k = 0; k < D; k++)
      ck_assert_msg(fabs(T[i * (D + 1) + k] - sg * f * Z[i * D + k]) < 1e-8 * nrm,
                    "M[%d][%d] = %.12g, reference %.12g", i, k, T[i * (D + 1) + k],
                    sg * f * Z[i * D + k]);
  }
  ngt_lda_stats_deinit(&st);
  gen_free(&g);
}
END_TEST

/* Sampling: the s_i estimate the population generalized eigenvalues of
 * (Σ_c π_c (m_c − m̄)(m_c − m̄)ᵀ, A Aᵀ); the float transform applied to the frames
 * gives zero mean and within-class covariance diag((w+s)/(1+s)). */
START_TEST(test_lda_population_and_data) {
  const int D = 8, C = 5, N = 40000;
  gen g;
  gen_make(&g, 13, N, D, C, C, 1.0);
  ngt_lda_stats st;
  stats_of(&g, &st);
  double Sig[64], Bp[64], mbar[8] = {0}, lam_pop[8], s[8];
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      double a = 0.0;
      for (int k = 0; k < D; k++) a += g.A[i * D + k] * g.A[j * D + k];
      Sig[i * D + j] = a;
    }
  for (int c = 0; c < C; c++)
    for (int j = 0; j < D; j++) mbar[j] += g.prior[c] * g.means[c * D + j];
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      double b = 0.0;
      for (int c = 0; c < C; c++)
        b += g.prior[c] * (g.means[c * D + i] - mbar[i]) * (g.means[c * D + j] - mbar[j]);
      Bp[i * D + j] = b;
    }
  ref_geneig(D, Bp, Sig, lam_pop, NULL);

  ngt_lda_opts o = {.within_class_factor = 0.001, .max_singular_value = 1e30};
  float T[8 * 9];
  ngt_lda_info info;
  ngt_err err = {0};
  ck_assert_msg(ngt_lda_compute(&st, &o, T, &info, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(info.num_ceiled, 0);

  /* output statistics on the frames, in double */
  double ymean[8] = {0}, cmean[5][8] = {{0}}, ccount[5] = {0}, Wy[64] = {0}, y[8];
  for (int pass = 0; pass < 2; pass++)
    for (int n = 0; n < N; n++) {
      int c = g.labels[n];
      for (int i = 0; i < D; i++) {
        double a = T[i * (D + 1) + D];
        for (int k = 0; k < D; k++) a += (double)T[i * (D + 1) + k] * NGT_AT(g.X, n, k);
        y[i] = a;
      }
      if (pass == 0) {
        ccount[c] += 1;
        for (int i = 0; i < D; i++) ymean[i] += y[i] / N, cmean[c][i] += y[i];
      } else {
        for (int i = 0; i < D; i++)
          for (int j = 0; j < D; j++)
            Wy[i * D + j] += (y[i] - cmean[c][i]) * (y[j] - cmean[c][j]) / N;
      }
      if (pass == 0 && n == N - 1)
        for (int c2 = 0; c2 < C; c2++)
          for (int i = 0; i < D; i++) cmean[c2][i] /= ccount[c2];
    }
  for (int i = 0; i < D; i++) {
    ck_assert_msg(fabs(ymean[i]) < 1e-4, "output %d has mean %g", i, ymean[i]);
    /* s_i from the output's own between/within ratio */
    double bi = 0.0;
    for (int c = 0; c < C; c++)
      bi += ccount[c] / N * (cmean[c][i] - ymean[i]) * (cmean[c][i] - ymean[i]);
    s[i] = bi / Wy[i * D + i];
    const double a = (0.001 + s[i]) / (1 + s[i]);
    ck_assert_msg(fabs(Wy[i * D + i] - a) < 1e-4 * (1 + s[i]),
                  "output %d: within-class variance %.8g, expected %.8g", i, Wy[i * D + i], a);
    for (int j = 0; j < i; j++)
      ck_assert_msg(fabs(Wy[i * D + j]) < 1e-4, "outputs %d,%d correlated: %g", i, j,
                    Wy[i * D + j]);
  }
  ck_assert(fabs(s[0] - info.max_between) < 1e-3 * (1 + s[0]));
  for (int i = 0; i < C - 1; i++)
    ck_assert_msg(fabs(s[i] - lam_pop[i]) < 0.05 * lam_pop[i] + 3.0 * sqrt((double)D / N),
                  "s_%d = %g but the population value is %g", i, s[i], lam_pop[i]);
  for (int i = C - 1; i < D; i++) ck_assert_msg(s[i] < 1e-6, "s_%d = %g, expected 0", i, s[i]);
  ngt_lda_stats_deinit(&st);
  gen_free(&g);
}
END_TEST

/* Step 7: singular values above the ceiling become exactly the ceiling, the rest and
 * all singular vectors are unchanged. */
START_TEST(test_lda_ceiling) {
  const int D = 9, C = 6, N = 20000;
  gen g;
  gen_make(&g, 14, N, D, C, C, 2.0);
  ngt_lda_stats st;
  stats_of(&g, &st);
  double T0[9 * 10], T1[9 * 10], M0[81], M1[81], sv0[9], U0[81], V0[81], sv1[9], U1[81], V1[81];
  ngt_lda_opts o = {.within_class_factor = 0.001, .max_singular_value = 0.0};
  ngt_lda_info info;
  ngt_err err = {0};
  ck_assert(ngt_lda_compute_f64(&st, &o, T0, &info, &err) == 0);
  for (int i = 0; i < D; i++) memcpy(M0 + i * D, T0 + i * (D + 1), sizeof(double) * D);
  ref_svd(D, M0, sv0, U0, V0);
  const int nceil = 3;
  ck_assert(sv0[nceil - 1] > 1.05 * sv0[nceil]);
  const double c = sqrt(sv0[nceil - 1] * sv0[nceil]);
  o.max_singular_value = c;
  ck_assert_msg(ngt_lda_compute_f64(&st, &o, T1, &info, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(info.num_ceiled, nceil);
  for (int i = 0; i < D; i++) memcpy(M1 + i * D, T1 + i * (D + 1), sizeof(double) * D);
  ref_svd(D, M1, sv1, U1, V1);
  for (int k = 0; k < D; k++) {
    const double want = fmin(sv0[k], c);
    ck_assert_msg(fabs(sv1[k] - want) < 1e-9 * sv0[0], "sigma_%d = %.15g, expected %.15g", k,
                  sv1[k], want);
    /* M1 v_k = min(σ_k, c) u_k for the old singular pairs */
    for (int i = 0; i < D; i++) {
      double mv = 0.0;
      for (int j = 0; j < D; j++) mv += M1[i * D + j] * V0[j * D + k];
      ck_assert_msg(fabs(mv - want * U0[i * D + k]) < 1e-9 * sv0[0],
                    "singular vector %d changed: %g vs %g", k, mv, want * U0[i * D + k]);
    }
  }
  ck_assert(sv1[0] <= c * (1 + 1e-12));
  /* the offset is still −M μ for the new M */
  const double *buf = st.buf;
  for (int i = 0; i < D; i++) {
    double y = T1[i * (D + 1) + D];
    for (int k = 0; k < D; k++) y += M1[i * D + k] * buf[1 + k] / buf[0];
    ck_assert(fabs(y) < 1e-9 * 10);
  }
  /* defaults: w = 0.001, ceiling 5 */
  o = ngt_lda_opts_default();
  ck_assert(o.within_class_factor == 0.001 && o.max_singular_value == 5.0);
  float Tf[9 * 10];
  ck_assert(ngt_lda_compute(&st, &o, Tf, &info, &err) == 0);
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) M1[i * D + j] = Tf[i * (D + 1) + j];
  ref_svd(D, M1, sv1, U1, V1);
  ck_assert_msg(sv1[0] <= 5.0 * (1 + 1e-6), "largest singular value %g > 5", sv1[0]);
  ck_assert_int_eq(info.num_ceiled, (sv0[0] > 5.0) + (sv0[1] > 5.0) + (sv0[2] > 5.0) +
                                        (sv0[3] > 5.0) + (sv0[4] > 5.0) + (sv0[5] > 5.0) +
                                        (sv0[6] > 5.0) + (sv0[7] > 5.0) + (sv0[8] > 5.0));
  ngt_lda_stats_deinit(&st);
  gen_free(&g);
}
END_TEST

/* The multi-rank property: statistics accumulated in parts and summed elementwise
 * give the transform of the single accumulation. */
START_TEST(test_lda_sum_of_parts) {
  /* (a) C-1 >= D: distinct s_i, the transform is unique: compare elementwise. */
  {
    const int D = 6, C = 12, N = 25000;
    gen g;
    gen_make(&g, 15, N, D, C, C, 1.0);
    ngt_lda_stats all, p1, p2;
    stats_of(&g, &all);
    ngt_lda_stats_init(&p1, D, C);
    ngt_lda_stats_init(&p2, D, C);
    ngt_lda_stats_add(&p1, ngt_mat_rows(g.X, 0, 7001), g.labels);
    ngt_lda_stats_add(&p2, ngt_mat_rows(g.X, 7001, 9000), g.labels + 7001);
    ngt_lda_stats_add(&p2, ngt_mat_rows(g.X, 16001, N - 16001), g.labels + 16001);
    ck_assert_uint_eq(p1.size, all.size);
    for (size_t k = 0; k < p1.size; k++) p1.buf[k] += p2.buf[k];
    ngt_lda_opts o = ngt_lda_opts_default();
    float Ta[6 * 7], Tb[6 * 7];
    double Da[6 * 7], Db[6 * 7];
    ngt_lda_info ia, ib;
    ngt_err err = {0};
    ck_assert(ngt_lda_compute(&all, &o, Ta, &ia, &err) == 0);
    ck_assert(ngt_lda_compute(&p1, &o, Tb, &ib, &err) == 0);
    ck_assert(ngt_lda_compute_f64(&all, &o, Da, &ia, &err) == 0);
    ck_assert(ngt_lda_compute_f64(&p1, &o, Db, &ib, &err) == 0);
    double mx = 0.0;
    for (int k = 0; k < D * (D + 1); k++) mx = fmax(mx, fabs(Ta[k]));
    for (int k = 0; k < D * (D + 1); k++) {
      ck_assert_msg(fabs(Ta[k] - Tb[k]) <= 1e-6 * mx, "T[%d]: %.9g vs %.9g", k, Ta[k], Tb[k]);
      ck_assert_msg(fabs(Da[k] - Db[k]) <= 1e-9 * mx, "T64[%d]: %.15g vs %.15g", k, Da[k], Db[k]);
    }
    ck_assert_int_eq(ia.num_ceiled, ib.num_ceiled);
    ngt_lda_stats_deinit(&all);
    ngt_lda_stats_deinit(&p1);
    ngt_lda_stats_deinit(&p2);
    gen_free(&g);
  }
  /* (b) C-1 < D: the s_i = 0 outputs are determined only up to a rotation among
   * themselves, so compare the rotation-invariant Tᵀ T ((D+1) x (D+1)). */
  {
    const int D = 10, C = 5, N = 20000;
    gen g;
    gen_make(&g, 16, N, D, C, C, 1.0);
    ngt_lda_stats all, p1, p2;
    stats_of(&g, &all);
    ngt_lda_stats_init(&p1, D, C);
    ngt_lda_stats_init(&p2, D, C);
    ngt_lda_stats_add(&p1, ngt_mat_rows(g.X, 0, 12345), g.labels);
    ngt_lda_stats_add(&p2, ngt_mat_rows(g.X, 12345, N - 12345), g.labels + 12345);
    for (size_t k = 0; k < p1.size; k++) p1.buf[k] += p2.buf[k];
    ngt_lda_opts o = ngt_lda_opts_default();
    double Ta[10 * 11], Tb[10 * 11], Ga[121], Gb[121];
    ngt_err err = {0};
    ck_assert(ngt_lda_compute_f64(&all, &o, Ta, NULL, &err) == 0);
    ck_assert(ngt_lda_compute_f64(&p1, &o, Tb, NULL, &err) == 0);
    for (int a = 0; a <= D; a++)
      for (int b = 0; b <= D; b++) {
        double ga = 0.0, gb = 0.0;
        for (int i = 0; i < D; i++) {
          ga += Ta[i * (D + 1) + a] * Ta[i * (D + 1) + b];
          gb += Tb[i * (D + 1) + a] * Tb[i * (D + 1) + b];
        }
        Ga[a * (D + 1) + b] = ga, Gb[a * (D + 1) + b] = gb;
      }
    const double mx = max_abs(Ga, 121);
    for (int k = 0; k < 121; k++)
      ck_assert_msg(fabs(Ga[k] - Gb[k]) <= 1e-6 * mx, "TᵀT[%d]: %.12g vs %.12g", k, Ga[k], Gb[k]);
    /* and the first C-1 (informative, distinct) rows agree elementwise */
    for (int i = 0; i < C - 1; i++)
      for (int k = 0; k <= D; k++)
        ck_assert_msg(fabs(Ta[i * (D + 1) + k] - Tb[i * (D + 1) + k]) <= 1e-6 * sqrt(mx),
                      "row %d col %d: %.12g vs %.12g", i, k, Ta[i * (D + 1) + k],
                      Tb[i * (D + 1) + k]);
    ngt_lda_stats_deinit(&all);
    ngt_lda_stats_deinit(&p1);
    ngt_lda_stats_deinit(&p2);
    gen_free(&g);
  }
}
END_TEST

/* A constant, duplicated or linearly dependent input dimension makes W singular (or
 * singular but for float rounding, where potrf alone would succeed with a pivot of
 * pure noise): the diagonal fallback is taken and the transform is finite and bounded. */
START_TEST(test_lda_singular_within) {
  const int D = 8, C = 5, N = 10000;
  for (int mode = 0; mode < 6; mode++) {
    gen g;
    gen_make(&g, 17, N, D, C, C, 1.0);
    ngt_rng r = ngt_rng_make(170, NGT_RNG_STREAM_TEST);
    for (int n = 0; n < N; n++) {
      if (mode == 0 || mode == 2) NGT_AT(g.X, n, 2) = 3.7f;              /* constant */
      if (mode == 1 || mode == 2) NGT_AT(g.X, n, 5) = NGT_AT(g.X, n, 1); /* duplicate */
      if (mode == 3)                                                     /* all equal */
        for (int j = 0; j < D; j++) NGT_AT(g.X, n, j) = 1.25f;
      if (mode == 4) /* a sum of two others: dependent up to float rounding */
        NGT_AT(g.X, n, 6) = NGT_AT(g.X, n, 0) + NGT_AT(g.X, n, 3);
      if (mode == 5) /* dependent but for 1e-6 noise: potrf succeeds, pivot² ~1e-12 */
        NGT_AT(g.X, n, 6) = NGT_AT(g.X, n, 0) + 1e-6f * (float)ngt_rng_normal(&r);
    }
    ngt_lda_stats st;
    stats_of(&g, &st);
    const ngt_lda_opts opts[2] = {ngt_lda_opts_default(), {0.001, 0.0}};
    for (int t = 0; t < 2; t++) {
      float T[8 * 9];
      ngt_lda_info info;
      ngt_err err = {0};
      int rc = ngt_lda_compute(&st, &opts[t], T, &info, &err);
      ck_assert_msg(rc == 0, "mode %d: %s", mode, err.msg);
      ck_assert_msg(info.used_fallback == 1, "mode %d: fallback not taken", mode);
      ck_assert(isfinite(info.max_between) && isfinite(info.min_between));
      ck_assert(ngt_vec_all_finite(T, (size_t)(D * (D + 1))));
      /* bounded: by the ceiling (t == 0), or by the fallback alone (t == 1; without
       * it mode 5 would give entries ~1e4, rounding noise amplified) */
      for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++)
          ck_assert_msg(fabsf(T[i * (D + 1) + j]) <= (t == 0 ? 5.0f * (1 + 1e-5f) : 1e3f),
                        "mode %d: M[%d][%d] = %g", mode, i, j, T[i * (D + 1) + j]);
      if (mode != 3)
        ck_assert_msg(info.max_between > 0.1, "mode %d: s_1 = %g", mode, info.max_between);
      /* the output of every frame is finite, and the first output still separates
       * the classes (its between-class variance is nonzero) */
      double m0[5] = {0}, cnt[5] = {0};
      for (int n = 0; n < N; n++) {
        double y = T[D];
        for (int k = 0; k < D; k++) y += (double)T[k] * NGT_AT(g.X, n, k);
        ck_assert(isfinite(y));
        m0[g.labels[n]] += y, cnt[g.labels[n]] += 1;
      }
      if (mode != 3) {
        double spread = 0.0;
        for (int c = 0; c < C; c++) spread = fmax(spread, fabs(m0[c] / cnt[c] - m0[0] / cnt[0]));
        ck_assert_msg(spread > 0.1, "mode %d: output 0 does not separate classes", mode);
      }
    }
    ngt_lda_stats_deinit(&st);
    gen_free(&g);
  }
}
END_TEST

START_TEST(test_lda_errors) {
  const int D = 10, C = 3;
  gen g;
  gen_make(&g, 18, 100, D, C, C, 1.0);
  ngt_lda_opts o = ngt_lda_opts_default();
  float T[10 * 11];
  ngt_lda_info info;
  /* too few frames for the dimension */
  {
    ngt_lda_stats st;
    ngt_lda_stats_init(&st, D, C);
    ngt_lda_stats_add(&st, ngt_mat_rows(g.X, 0, 5), g.labels);
    ngt_err err = {0};
    ck_assert_int_eq(ngt_lda_compute(&st, &o, T, &info, &err), NGT_EINVAL);
    ck_assert_int_eq(err.code, NGT_EINVAL);
    ck_assert_msg(strstr(err.msg, "5 frames") && strstr(err.msg, "D=10") &&
                      strstr(err.msg, "--lda-frames") && strstr(err.msg, "--input-transform=cmvn"),
                  "message: %s", err.msg);
    /* exactly D frames is still too few; D+1 is enough to get past the count check */
    ngt_lda_stats_add(&st, ngt_mat_rows(g.X, 5, 5), g.labels + 5);
    ck_assert_int_eq(ngt_lda_compute(&st, &o, T, &info, &err), NGT_EINVAL);
    ngt_lda_stats_add(&st, ngt_mat_rows(g.X, 10, 1), g.labels + 10);
    ck_assert_msg(ngt_lda_compute(&st, &o, T, &info, &err) == 0, "%s", err.msg);
    ngt_lda_stats_deinit(&st);
  }
  /* a single class */
  {
    int32_t *lab0 = calloc(100, sizeof(int32_t));
    for (int n = 0; n < 100; n++) lab0[n] = 2;
    ngt_lda_stats st;
    ngt_lda_stats_init(&st, D, C);
    ngt_lda_stats_add(&st, g.X, lab0);
    ngt_err err = {0};
    ck_assert_int_eq(ngt_lda_compute(&st, &o, T, &info, &err), NGT_EINVAL);
    ck_assert_msg(strstr(err.msg, "only 1 of 3 classes") && strstr(err.msg, "cmvn"), "message: %s",
                  err.msg);
    ck_assert_int_eq(info.num_classes_seen, 1);
    /* CMVN is fine with it */
    ck_assert(ngt_cmvn_compute(&st, T, &err) == 0);
    ngt_lda_stats_deinit(&st);
    free(lab0);
  }
  /* NaN / Inf in the features */
  {
    const float bad[2] = {NAN, INFINITY};
    for (int b = 0; b < 2; b++) {
      gen h;
      gen_make(&h, 19, 100, D, C, C, 1.0);
      NGT_AT(h.X, 42, 3) = bad[b];
      ngt_lda_stats st;
      stats_of(&h, &st);
      ngt_err err = {0};
      ck_assert_int_eq(ngt_lda_compute(&st, &o, T, &info, &err), NGT_ENUM);
      ck_assert_msg(strstr(err.msg, "NaN") && strstr(err.msg, "100 frames") &&
                        strstr(err.msg, "dimension 3"),
                    "message: %s", err.msg);
      ngt_err err2 = {0};
      ck_assert_int_eq(ngt_cmvn_compute(&st, T, &err2), NGT_ENUM);
      ck_assert_msg(strstr(err2.msg, "NaN") && strstr(err2.msg, "CMVN"), "message: %s", err2.msg);
      ngt_lda_stats_deinit(&st);
      gen_free(&h);
    }
  }
  /* bad options */
  {
    ngt_lda_stats st;
    stats_of(&g, &st);
    ngt_err err = {0};
    ngt_lda_opts bo = {-1.0, 5.0};
    ck_assert_int_eq(ngt_lda_compute(&st, &bo, T, &info, &err), NGT_EINVAL);
    ck_assert(strstr(err.msg, "within-class factor") != NULL);
    bo.within_class_factor = 0.001, bo.max_singular_value = NAN;
    ck_assert_int_eq(ngt_lda_compute(&st, &bo, T, &info, &err), NGT_EINVAL);
    ngt_lda_stats_deinit(&st);
  }
  /* CMVN with fewer than 2 frames */
  {
    ngt_lda_stats st;
    ngt_lda_stats_init(&st, D, C);
    ngt_lda_stats_add(&st, ngt_mat_rows(g.X, 0, 1), NULL);
    ngt_err err = {0};
    ck_assert_int_eq(ngt_cmvn_compute(&st, T, &err), NGT_EINVAL);
    ck_assert_msg(strstr(err.msg, "1 frame"), "message: %s", err.msg);
    ngt_lda_stats_deinit(&st);
  }
  gen_free(&g);
}
END_TEST

START_TEST(test_cmvn) {
  const int D = 7, C = 3, N = 20000;
  gen g;
  gen_make(&g, 20, N, D, C, C, 1.0);
  for (int n = 0; n < N; n++) {
    NGT_AT(g.X, n, 0) *= 30.0f; /* a large variance */
    NGT_AT(g.X, n, 4) = 3.7f;   /* a constant dimension */
  }
  ngt_lda_stats st;
  ngt_lda_stats_init(&st, D, C);
  ngt_lda_stats_add(&st, g.X, NULL);
  float T[7 * 8];
  ngt_err err = {0};
  ck_assert_msg(ngt_cmvn_compute(&st, T, &err) == 0, "%s", err.msg);
  ck_assert(ngt_vec_all_finite(T, (size_t)(D * (D + 1))));
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++)
      if (i != j) ck_assert(T[i * (D + 1) + j] == 0.0f);
  double m[7] = {0}, v[7] = {0};
  for (int n = 0; n < N; n++)
    for (int i = 0; i < D; i++) {
      double y = (double)T[i * (D + 1) + i] * NGT_AT(g.X, n, i) + T[i * (D + 1) + D];
      m[i] += y / N, v[i] += y * y / N;
    }
  for (int i = 0; i < D; i++) {
    v[i] -= m[i] * m[i];
    if (i == 4) {
      ck_assert(isfinite(m[i]) && v[i] < 1e-3);
      continue;
    }
    ck_assert_msg(fabs(m[i]) < 1e-5, "dim %d: mean %g", i, m[i]);
    ck_assert_msg(fabs(v[i] - 1.0) < 1e-4, "dim %d: variance %g", i, v[i]);
  }
  ngt_lda_stats_deinit(&st);
  gen_free(&g);
}
END_TEST

static Suite *lda_suite(void) {
  Suite *s = suite_create("lda");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_lda_stats_layout);
  tcase_add_test(tc, test_lda_algebra_exact);
  tcase_add_test(tc, test_lda_matches_reference);
  tcase_add_test(tc, test_lda_population_and_data);
  tcase_add_test(tc, test_lda_ceiling);
  tcase_add_test(tc, test_lda_sum_of_parts);
  tcase_add_test(tc, test_lda_singular_within);
  tcase_add_test(tc, test_lda_errors);
  tcase_add_test(tc, test_cmvn);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  ngt_log_set_level(NGT_ERROR);
  SRunner *sr = srunner_create(lda_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}

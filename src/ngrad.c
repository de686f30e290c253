/* ngrad.c — Kaldi's online natural-gradient preconditioner (nnet3 OnlineNaturalGradient)
 * and the older stateless "simple" method; see include/ngtrain/ngrad.h for the contract
 * and docs/algorithm.md §2 for the long form.
 *
 * Dimension letters used throughout this file:
 *   N  rows of the minibatch X (vectors), D  dimension (columns), R  rank of the estimate.
 *
 * Model (docs/algorithm.md §2.3). The Fisher estimate after t calls is
 *   F_t = R_t^T D_t R_t + rho_t I,  R_t (R x D) orthonormal rows, D_t = diag(d_t) > 0  (eqn:F)
 *   beta_t = rho_t (1 + alpha) + (alpha / D) sum_i d_t,i                            (eqn:beta)
 *   e_t,i = 1 / (beta_t / d_t,i + 1),   u_i = e_t,i^{-1/2}                             (eqn:e)
 * We store W_t = E_t^{1/2} R_t, so the preconditioned minibatch is
 *   X^_t = X_t - (X_t W_t^T) W_t = beta_t X_t G_t^{-1},
 *          G_t = F_t + (alpha/D) tr(F_t) I                                          (eqn:Xhat)
 *   gamma_t = sqrt(tr(X X^T) / tr(X^ X^^T))  (1 if tr(X X^T) <= 0)                 (eqn:gamma)
 * Update with forgetting factor eta (eqn:eta, §2.3), one power-iteration step (§2.4):
 *   H = X W^T (N x R),  J = H^T X (R x D),  K = J J^T,  L = H^T H  (R x R)         (eqn:HJKL)
 *   Z_ij = (eta/N)^2 u_i K_ij u_j + (eta/N)(1-eta) u_i L_ij u_j (c_i + c_j)
 *          + [i=j] (1-eta)^2 c_i^2,         c_i = d_t,i + rho_t   (double)            (eqn:Z)
 *   Z = U C U^T, C descending; floor C at (rho_t (1-eta))^2; sigma = C^{1/2}          (eqn:C)
 *   rho_t+1 = ((eta/N) tr(X X^T) + (1-eta)(D rho_t + sum d_t) - sum sigma) / (D - R)
 *                                                                                   (eqn:rho1)
 *   d_t+1 = sigma - rho_t+1 (unfloored rho); both floored at
 *           f = max(epsilon, delta max sigma)                                         (eqn:d1)
 *   B = J + ((1-eta)/(eta/N)) diag(c) W_t                                              (eqn:B)
 *   A_ij = (eta/N) sqrt(e_t+1,i) sigma_i^{-1} U_ji u_j,   W_t+1 = A B                 (eqn:W1)
 * Re-orthogonalisation (§2.6; Kaldi: when cond(C) > 1e6 or a C floor was hit; here whenever
 * R_{t+1} is off by more than 1e-4, see NGRAD_ORTH_THRESHOLD):
 *   O = E_t+1^{-1/2} W W^T E_t+1^{-1/2} = C C^T (Cholesky),
 *   W <- (E_t+1^{1/2} C^{-1} E_t+1^{-1/2}) W, with a Gram-Schmidt fallback.        (eqn:reorth)
 *
 * Cost per updating call: three N x D x R sgemm (H, J, X^), three syrk (K and O: R^2 D each,
 * L: R^2 N), one R x R x D sgemm (W_t+1), two read passes over X for the traces, and O(R^3)
 * work in double (the R x R eigensolve by divide and conquer, dsyevd: at R = 80 it is 1.6
 * times faster than dsyev's QR sweeps). A non-updating call: one trace pass, two sgemm, one
 * trace pass. In bf16 mode (docs/algorithm.md §3.5) H and X^ are bf16 matmuls in every call
 * and the first trace pass also rounds X to bf16; an updating call forms J from the same
 * bf16 X and -H; K, L, Z, W_t+1 and the rest stay fp32/fp64.
 *
 * Safeguards beyond Kaldi (reported, not silent): a minibatch whose tr(X X^T) is not finite
 * never updates the estimate (it would poison every later call; the output is NaN and the
 * caller's non-finite check refuses the step), and a failed R x R eigensolve skips the
 * update with a warning instead of aborting.
 */
#include "ngtrain/ngrad.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/engine.h"
#include "ngtrain/rng.h"

/* Kaldi constants (docs/algorithm.md §2.7). */
#define NGRAD_NUM_INITIAL_UPDATES 10
#define NGRAD_CONDITION_THRESHOLD 1.0e6
/* Kaldi re-orthogonalises only when must_reorth and only if R_{t+1} is off by > 1e-3. In
 * float32 the power step alone drifts R_{t+1} by up to ~1e-2 on spiky inputs at condition
 * numbers far below 1e6 (measured 6.8e-3 at R=29, D=41, cond(C)=2e5), so ngtrain checks O
 * after every update (one R^2 D syrk, ~R/(3N) of the call) and re-orthogonalises beyond
 * 1e-4, the SelfTest tolerance; this keeps docs/algorithm.md §6 (d) true. */
#define NGRAD_ORTH_THRESHOLD 1.0e-4
/* The fused bf16 path forms H with ngt_bf16_gemm_thin up to this rank, with oneDNN above:
 * measured on Zen 4 at N = 256, D = 1024: R = 20 0.063 vs 0.170 ms, R = 80 0.25 vs 0.24 ms. */
#define NGRAD_THIN_RANK 40
#define NGRAD_CHOLESKY_BOUND 100.0
#define NGRAD_SELFTEST_ORTH_TOL 1.0e-4
#define NGRAD_SELFTEST_WARN_TOL 1.0e-2

/* Private workspace, allocated in ngt_ngrad_init; only H grows (with N). */
typedef struct ngrad_ws {
  int cap_N;    /* rows H can hold */
  float *H;     /* (cap_N, R) H_t = X_t W_t^T (eqn:HJKL) */
  uint16_t *Xb; /* (cap_N, D) bf16 X (bf16 mode only) */
  uint16_t *Hb; /* (cap_N, R) bf16 -H */
  uint16_t *Wb; /* (R, D) bf16 W */
  /* the fused bf16 path (ngt_ngrad_precondition_bf16): */
  int cap_Hn;         /* rows Hn can hold */
  uint16_t *Hn;       /* (cap_Hn, R rounded up to even) bf16 -H, zero pad column */
  uint16_t *Wp;       /* W[:, :Dx] packed by ngt_bf16_pack_pairs */
  float *wlast;       /* (R) W[:, Dx] when the rows are [x, 1] */
  int wb_ok, wb_dx;   /* Wb, Wp, wlast hold the current W (for Dx = wb_dx columns) */
  float *J;           /* (R, D) J_t = H_t^T X_t, then B_t in place (eqn:B) */
  float *W1;          /* (R, D) W_{t+1}; swapped with p->W when the update commits */
  float *K;           /* (R, R) K_t = J J^T, upper triangle (ssyrk); also self-test scratch */
  float *L;           /* (R, R) L_t = H^T H, upper triangle (ssyrk) */
  float *A;           /* (R, R) A_t (eqn:W1), then the lower-triangular reorth transform */
  double *Z;          /* (R, R) Z_t / s, then its eigenvectors (eigenvector k = Z[k*R .. k*R+R)) */
  double *O;          /* (R, R) O_{t+1}, its Cholesky factor, then C^{-1} */
  double *w;          /* (R) eigenvalues of Z_t / s, ascending (LAPACK order) */
  double *c;          /* (R) C_t, descending */
  double *sigma;      /* (R) sigma = C_t^{1/2} */
  double *e;          /* (R) e_t */
  double *u;          /* (R) u = e_t^{-1/2} */
  double *dr;         /* (R) d_t + rho_t */
  double *d1;         /* (R) d_{t+1} */
  double *e1;         /* (R) e_{t+1} */
  double *se1;        /* (R) e_{t+1}^{1/2} */
  ngt_syevd_work eig; /* LAPACK workspace of the R x R eigensolve, sized on first use */
} ngrad_ws;

ngt_ngrad_opts ngt_ngrad_opts_default(void) {
  ngt_ngrad_opts o;
  o.rank = 40;
  o.update_period = 4;
  o.num_samples_history = 2000.0;
  o.num_minibatches_history = 0.0;
  o.alpha = 4.0;
  o.epsilon = 1.0e-10;
  o.delta = 5.0e-4;
  o.self_debug = 0;
  return o;
}

int ngt_ngrad_opts_check(const ngt_ngrad_opts *o, int D, const char *what, ngt_err *err) {
  if (!what) what = "natural-gradient preconditioner";
  if (D < 1)
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: dimension %d must be >= 1 (a layer side needs at "
                       "least one column)",
                       what, D);
  if (o->rank < 1)
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient rank %d must be >= 1 (use e.g. "
                       "20 for an input side, 80 for an output side)",
                       what, o->rank);
  if (D > 1 && o->rank >= D) {
    int sug = (D + 1) / 2 < D ? (D + 1) / 2 : D - 1;
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient rank %d >= dim %d (use a rank "
                       "below the dimension, e.g. %d = (dim+1)/2 as Kaldi does)",
                       what, o->rank, D, sug);
  }
  if (o->update_period < 1)
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient update period %d must be >= 1 "
                       "(1 updates on every minibatch; Kaldi's component default is 4)",
                       what, o->update_period);
  if (!(o->num_samples_history > 0.0 && o->num_samples_history <= 1.0e6))
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient num-samples-history %g must be in "
                       "(0, 1e6] (default 2000)",
                       what, o->num_samples_history);
  if (!(o->num_minibatches_history == 0.0 ||
        (o->num_minibatches_history > 1.0 && o->num_minibatches_history < 1.0e6)))
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient num-minibatches-history %g must be "
                       "0 (use num-samples-history) or in (1, 1e6) (e.g. 4)",
                       what, o->num_minibatches_history);
  if (!(o->alpha >= 0.0 && isfinite(o->alpha)))
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient alpha %g must be a finite value "
                       ">= 0 (default 4)",
                       what, o->alpha);
  if (!(o->epsilon > 0.0 && o->epsilon <= 1.0e-5))
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient epsilon %g must be in (0, 1e-5] "
                       "(default 1e-10)",
                       what, o->epsilon);
  if (!(o->delta > 0.0 && o->delta <= 1.0e-2))
    return ngt_err_set(err, NGT_EINVAL,
                       "%s: natural-gradient delta %g must be in (0, 1e-2] "
                       "(default 5e-4)",
                       what, o->delta);
  return 0;
}

/* (eqn:eta) docs/algorithm.md §2.3. */
double ngt_ngrad_eta(const ngt_ngrad_opts *o, int N) {
  if (o->num_minibatches_history > 0.0) return 1.0 / o->num_minibatches_history;
  double eta = 1.0 - exp(-(double)N / o->num_samples_history);
  return eta > 0.9 ? 0.9 : eta; /* clamp: avoids NaN for all-zero input with huge N */
}

/* ---------------------------------------------------------------------------------------- */
/* State helpers                                                                              */

static inline float *ws_row(float *m, int i, int cols) { return m + (size_t)i * (size_t)cols; }

/* (eqn:beta), (eqn:e): e_i = 1/(beta/d_i + 1). */
static double compute_beta(const ngt_ngrad *p, const double *d, double rho) {
  double sd = 0.0;
  for (int i = 0; i < p->R; i++) sd += d[i];
  return rho * (1.0 + p->o.alpha) + p->o.alpha * sd / p->D;
}

/* InitDefault (docs/algorithm.md §2.6 step 1): rho = d_i = epsilon, W = sqrt(e) R_0 with R_0 the
 * special orthonormal matrix (row r: columns r, r+R, ..., first entry 1.1, then normalised). */
static void init_default(ngt_ngrad *p) {
  int R = p->R, D = p->D;
  ((ngrad_ws *)p->ws)->wb_ok = 0;
  p->rho = p->o.epsilon;
  for (int i = 0; i < R; i++) p->d[i] = p->o.epsilon;
  memset(p->W, 0, sizeof(float) * (size_t)R * (size_t)D);
  double e0 = 1.0 / (2.0 + (double)(D + R) * p->o.alpha / D); /* e_i when d_i = rho = eps */
  double se0 = sqrt(e0);
  for (int r = 0; r < R; r++) {
    int ncols = (D - 1 - r) / R + 1; /* columns r, r+R, ... < D */
    double norm = 1.0 / sqrt(1.1 * 1.1 + (ncols - 1));
    float *row = ws_row(p->W, r, D);
    for (int k = 0, col = r; col < D; k++, col += R)
      row[col] = (float)(se0 * norm * (k == 0 ? 1.1 : 1.0));
  }
}

/* tr(X X^T): per-row sdot (float lanes over D, ~1e-7 relative) summed in double. Five times
 * faster than the all-double ngt_mat_frob2 here, which matters: it runs twice per call. If
 * float squares overflow, fall back to the double sum. */
static double sum_squares(ngt_mat X) {
  double s = 0.0;
  for (int i = 0; i < X.rows; i++) {
    const float *x = &NGT_AT(X, i, 0);
    s += (double)cblas_sdot(X.cols, x, 1, x, 1);
  }
  return isfinite(s) ? s : ngt_mat_frob2(X);
}

/* The same sum, and in bf16 mode ws->Xb = bf16(X) in the same pass (docs/algorithm.md §3.5):
 * each row is rounded right after its sdot, while it is still in cache, which spares the
 * separate read of X that the rounding would otherwise cost on every call. */
static double sum_squares_to_bf16(ngt_ngrad *p, ngt_mat X) {
  uint16_t *Xb = ((ngrad_ws *)p->ws)->Xb;
  int D = X.cols;
  const int fast = ngt_cpu_avx512bf16();
  double s = 0.0;
  for (int i0 = 0; i0 < X.rows; i0 += 16) { /* 16 rows: in cache, and few generic calls */
    int i1 = i0 + 16 < X.rows ? i0 + 16 : X.rows;
    for (int i = i0; i < i1; i++) {
      const float *x = &NGT_AT(X, i, 0);
      s += (double)cblas_sdot(D, x, 1, x, 1);
      if (fast) ngt_bf16_row_avx512(Xb + (size_t)i * (size_t)D, x, D, 1.0f);
    }
    if (!fast)
      ngt_bf16_from_f32(Xb + (size_t)i0 * (size_t)D, D, &NGT_AT(X, i0, 0), X.stride, i1 - i0, D,
                        1.0f);
  }
  return isfinite(s) ? s : ngt_mat_frob2(X);
}

static void ws_reserve(ngt_ngrad *p, int N) {
  ngrad_ws *ws = p->ws;
  if (N <= ws->cap_N && (!p->bf16 || ws->Xb)) return; /* bf16 may be set after a call */
  if (N < ws->cap_N) N = ws->cap_N;
  free(ws->H);
  ws->H = ngt_xmalloc(sizeof(float) * (size_t)N * (size_t)p->R);
  if (p->bf16) {
    free(ws->Xb);
    free(ws->Hb);
    free(ws->Wb);
    ws->Xb = ngt_xmalloc(sizeof(uint16_t) * (size_t)N * (size_t)p->D);
    ws->Hb = ngt_xmalloc(sizeof(uint16_t) * (size_t)N * (size_t)p->R);
    ws->Wb = ngt_xmalloc(sizeof(uint16_t) * (size_t)p->R * (size_t)p->D);
    ws->wb_ok = 0;
  }
  ws->cap_N = N;
}

/* Gram-Schmidt on the rows of W (R x D, float storage, double dot products), re-randomising
 * rows that vanish (Kaldi MatrixBase::OrthogonalizeRows; docs/algorithm.md §2.6 step 4). */
static void gram_schmidt_rows(ngt_ngrad *p, float *W) {
  int R = p->R, D = p->D;
  ngt_rng rng = ngt_rng_make(ngt_rng_mix((uint64_t)p->t, (uint64_t)D), NGT_RNG_STREAM_NGRAD);
  for (int i = 0; i < R; i++) {
    float *ri = ws_row(W, i, D);
    int counter = 0;
    for (;;) {
      double start = ngt_vec_norm2(ri, (size_t)D);
      if (!isfinite(start) || start == 0.0) {
        NGT_LOG(NGT_DEBUG, "ngrad: row %d of W has self-product %g, randomising", i, start);
        for (int k = 0; k < D; k++) ri[k] = (float)ngt_rng_normal(&rng);
        counter++;
        NGT_ASSERT(counter <= 100);
        continue;
      }
      for (int j = 0; j < i; j++) {
        const float *rj = ws_row(W, j, D);
        double prod = ngt_vec_dot(ri, rj, (size_t)D);
        cblas_saxpy(D, (float)-prod, rj, 1, ri, 1);
      }
      double end = ngt_vec_norm2(ri, (size_t)D);
      if (end <= 0.01 * start) { /* removed > 99% of the norm: suspicious, do it again */
        if (end == 0.0)
          for (int k = 0; k < D; k++) ri[k] = (float)ngt_rng_normal(&rng);
        counter++;
        NGT_ASSERT(counter <= 100); /* Kaldi: "Loop detected while orthogonalizing matrix" */
      } else {
        cblas_sscal(D, (float)(1.0 / sqrt(end)), ri, 1);
        break;
      }
    }
  }
}

/* (eqn:reorth) docs/algorithm.md §2.6 ReorthogonalizeRt1 on W1 = ws->W1, given e_{t+1}; run
 * after every update (see NGRAD_ORTH_THRESHOLD), must_reorth only says Kaldi would run it. */
static void reorthogonalize(ngt_ngrad *p, int must_reorth) {
  ngrad_ws *ws = p->ws;
  int R = p->R, D = p->D;
  float *Of = ws->K; /* free after Z was formed */
  double *O = ws->O;
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, R, D, 1.0f, ws->W1, D, 0.0f, Of, R);
  double maxdev = 0.0;
  int bad = 0;
  for (int i = 0; i < R; i++)
    for (int j = i; j < R; j++) {
      double o = (double)Of[i * R + j] / (ws->se1[i] * ws->se1[j]);
      O[i * R + j] = O[j * R + i] = o;
      double dev = fabs(o - (i == j ? 1.0 : 0.0));
      if (!(dev <= maxdev)) {
        if (isnan(dev)) bad = 1;
        else
          maxdev = dev;
      }
    }
  if (!bad && maxdev <= NGRAD_ORTH_THRESHOLD) {
    if (must_reorth)
      NGT_LOG(NGT_DEBUG, "ngrad: not re-orthogonalising, R_t+1 already orthonormal (%g)", maxdev);
    return;
  }
  NGT_LOG(NGT_DEBUG, "ngrad: re-orthogonalising R_t+1 (off by %g%s, must_reorth %d)", maxdev,
          bad ? ", NaN" : "", must_reorth);
  int cholesky_ok = !bad && ngt_lapack_potrf_lower(R, O) == 0 && ngt_lapack_trtri_lower(R, O) == 0;
  if (cholesky_ok) {
    double cmax = -INFINITY;
    int has_nan = 0;
    for (int i = 0; i < R; i++)
      for (int j = 0; j <= i; j++) {
        double v = O[i * R + j];
        if (isnan(v)) has_nan = 1;
        if (v > cmax) cmax = v;
      }
    if (has_nan || !(cmax < NGRAD_CHOLESKY_BOUND)) cholesky_ok = 0;
  }
  p->stats.num_reorth++;
  if (!cholesky_ok) {
    NGT_LOG(NGT_DEBUG, "ngrad: Cholesky failed or out of range while re-orthogonalising; "
                       "using Gram-Schmidt");
    p->stats.num_gram_schmidt++;
    gram_schmidt_rows(p, ws->W1); /* now R_{t+1} */
    for (int i = 0; i < R; i++) cblas_sscal(D, (float)ws->se1[i], ws_row(ws->W1, i, D), 1);
    return;
  }
  /* M = E^{1/2} C^{-1} E^{-1/2}, lower-triangular; W1 <- M W1 in place (strmm). */
  float *M = ws->A;
  for (int i = 0; i < R; i++)
    for (int j = 0; j < R; j++)
      M[i * R + j] = j > i    ? 0.0f
                     : j == i ? (float)O[i * R + i]
                              : (float)(ws->se1[i] * O[i * R + j] / ws->se1[j]);
  cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, R, D, 1.0f, M, R,
              ws->W1, D);
}

/* SelfTest (docs/algorithm.md §2.8): die on broken invariants, warn on non-orthonormal R_t. */
static void self_test(ngt_ngrad *p) {
  ngrad_ws *ws = p->ws;
  int R = p->R, D = p->D;
  const ngt_ngrad_opts *o = &p->o;
  double dmax = p->d[0], dmin = p->d[0];
  for (int i = 1; i < R; i++) {
    if (p->d[i] > dmax) dmax = p->d[i];
    if (p->d[i] < dmin) dmin = p->d[i];
  }
  NGT_ASSERT(p->rho >= o->epsilon);
  NGT_ASSERT(dmin >= o->epsilon);
  NGT_ASSERT(dmin > 0.9 * o->delta * dmax);
  NGT_ASSERT(p->rho > 0.9 * o->delta * dmax);
  double beta = compute_beta(p, p->d, p->rho);
  for (int i = 0; i < R; i++) ws->e[i] = 1.0 / (beta / p->d[i] + 1.0);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, R, D, 1.0f, p->W, D, 0.0f, ws->K, R);
  double maxerr = 0.0;
  int nan = 0;
  for (int i = 0; i < R; i++)
    for (int j = i; j < R; j++) {
      double v = (double)ws->K[i * R + j] / sqrt(ws->e[i] * ws->e[j]);
      double err = fabs(v - (i == j ? 1.0 : 0.0));
      if (isnan(err)) nan = 1;
      else if (err > maxerr)
        maxerr = err;
    }
  if (nan || maxerr > NGRAD_SELFTEST_ORTH_TOL) {
    if (nan || maxerr > NGRAD_SELFTEST_WARN_TOL)
      NGT_WARN_MSG("ngrad self-test: R_t = E^{-1/2} W_t is not orthonormal (max error %g%s, "
                   "D=%d R=%d t=%lld)",
                   maxerr, nan ? ", NaN" : "", D, R, (long long)p->t);
    else
      NGT_LOG(NGT_DEBUG, "ngrad self-test: R_t orthonormal only to %g", maxerr);
  }
}

/* The R x R part of an update and W_{t+1} = A B (docs/algorithm.md §2.4–§2.5). Expects ws->J,
 * ws->K, ws->L to hold J_t, K_t, L_t (upper triangles for K, L). Commits W, d, rho. */
static void update_estimate(ngt_ngrad *p, int N, double trXX) {
  ngrad_ws *ws = p->ws;
  const ngt_ngrad_opts *o = &p->o;
  int R = p->R, D = p->D;
  double eta = ngt_ngrad_eta(o, N);
  double etaN = eta / N, eta1 = 1.0 - eta;
  double sum_d = 0.0;
  for (int i = 0; i < R; i++) sum_d += p->d[i];
  double beta = compute_beta(p, p->d, p->rho);
  for (int i = 0; i < R; i++) {
    ws->e[i] = 1.0 / (beta / p->d[i] + 1.0); /* (eqn:e) */
    ws->u[i] = 1.0 / sqrt(ws->e[i]);
    ws->dr[i] = p->d[i] + p->rho;
  }
  /* (eqn:Z), in double: Z scales like data^4. */
  double trZ = 0.0;
  for (int i = 0; i < R; i++)
    for (int j = i; j < R; j++) {
      double uu = ws->u[i] * ws->u[j];
      double z = etaN * etaN * uu * (double)ws->K[i * R + j] +
                 etaN * eta1 * uu * (double)ws->L[i * R + j] * (ws->dr[i] + ws->dr[j]);
      if (i == j) {
        z += eta1 * eta1 * ws->dr[i] * ws->dr[i];
        trZ += z;
      }
      ws->Z[i * R + j] = ws->Z[j * R + i] = z;
    }
  double s = trZ > 1.0 ? trZ : 1.0; /* safeguard 4: normalise before the eigensolver */
  if (!isfinite(s)) {
    NGT_WARN_MSG("ngrad: Z_t is not finite (D=%d R=%d t=%lld); skipping this Fisher update", D, R,
                 (long long)p->t);
    return;
  }
  for (size_t k = 0; k < (size_t)R * (size_t)R; k++) ws->Z[k] /= s;
  int info = ngt_lapack_syevd(R, ws->Z, ws->w, &ws->eig);
  if (info != 0) {
    NGT_WARN_MSG("ngrad: eigendecomposition of Z_t failed (LAPACK info %d, D=%d R=%d); "
                 "skipping this Fisher update",
                 info, D, R);
    return;
  }
  for (int i = 0; i < R; i++) ws->c[i] = s * ws->w[R - 1 - i]; /* descending (eqn:C) */
  /* must_reorth is also true when c_R <= 0 (safeguard 7). */
  int must_reorth = ws->c[0] > NGRAD_CONDITION_THRESHOLD * ws->c[R - 1];
  int floored = 0;
  double c_floor = (p->rho * eta1) * (p->rho * eta1); /* safeguard 5: T_t >= (1-eta) rho I */
  for (int i = 0; i < R; i++)
    if (ws->c[i] < c_floor) {
      ws->c[i] = c_floor;
      floored = must_reorth = 1;
    }
  double sum_sigma = 0.0, max_sigma = 0.0;
  for (int i = 0; i < R; i++) {
    ws->sigma[i] = sqrt(ws->c[i]);
    sum_sigma += ws->sigma[i];
    if (ws->sigma[i] > max_sigma) max_sigma = ws->sigma[i];
  }
  double rho1 = (etaN * trXX + eta1 * (D * p->rho + sum_d) - sum_sigma) / (D - R); /* (eqn:rho1) */
  for (int i = 0; i < R; i++) ws->d1[i] = ws->sigma[i] - rho1;                     /* (eqn:d1) */
  double f = o->delta * max_sigma; /* safeguard 6 */
  if (!(f > o->epsilon)) f = o->epsilon;
  if (rho1 < f) {
    rho1 = f;
    floored = 1;
  }
  for (int i = 0; i < R; i++)
    if (ws->d1[i] < f) {
      ws->d1[i] = f;
      floored = 1;
    }
  double beta1 = compute_beta(p, ws->d1, rho1);
  NGT_ASSERT(beta1 > 0.0); /* safeguard 9 */
  for (int i = 0; i < R; i++) {
    ws->e1[i] = 1.0 / (beta1 / ws->d1[i] + 1.0);
    ws->se1[i] = sqrt(ws->e1[i]);
  }
  /* (eqn:B) B = J + ((1-eta)/(eta/N)) diag(d + rho) W, in place of J. */
  for (int i = 0; i < R; i++)
    cblas_saxpy(D, (float)(eta1 / etaN * ws->dr[i]), ws_row(p->W, i, D), 1, ws_row(ws->J, i, D),
                1);
  /* (eqn:W1) A_ij = (eta/N) sqrt(e1_i) / sigma_i * U_ji * u_j; column i of U is the
   * eigenvector of c_i, stored contiguously at Z[(R-1-i)*R]. */
  for (int i = 0; i < R; i++) {
    const double *Ui = ws->Z + (size_t)(R - 1 - i) * (size_t)R;
    double fi = etaN * ws->se1[i] / ws->sigma[i];
    for (int j = 0; j < R; j++) ws->A[i * R + j] = (float)(fi * Ui[j] * ws->u[j]);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, R, 1.0f, ws->A, R, ws->J, D, 0.0f,
              ws->W1, D);
  reorthogonalize(p, must_reorth);
  /* Commit. */
  float *tmp = p->W;
  p->W = ws->W1;
  ws->W1 = tmp;
  memcpy(p->d, ws->d1, sizeof(double) * (size_t)R);
  p->rho = rho1;
  ws->wb_ok = 0;
  p->stats.num_updates++;
  if (floored) p->stats.num_floored++;
  if (o->self_debug) self_test(p);
}

/* One pass of PreconditionDirectionsInternal (docs/algorithm.md §2.5) on X (N x D) with the
 * current estimate. If write_xhat, X is overwritten by X^ = X - H W (old W); the Init
 * iterations pass 0 because only the estimate matters there, which spares a copy of X0.
 * In bf16 mode (docs/algorithm.md §3.5) H = X W^T and X^ = X - H W take bf16 operands (X,
 * already rounded into ws->Xb by the caller's trace pass; W, rounded once per pass; -H for
 * X^) with fp32 accumulation, in every call; an updating call then forms J = H^T X as
 * -((-H)^T X) from the same bf16 operands, and K, L, Z, the eigensolve and W_t+1 in
 * fp32/fp64 as in fp32 mode. */
static void ngrad_step(ngt_ngrad *p, ngt_mat X, double trXX, int updating, int write_xhat) {
  ngrad_ws *ws = p->ws;
  int N = X.rows, R = p->R, D = p->D;
  ngt_mat W = ngt_mat_view(p->W, R, D, D);
  ngt_mat H = ngt_mat_view(ws->H, N, R, R);
  if (p->bf16) {
    ngt_bf16_from_f32(ws->Wb, D, p->W, D, R, D, 1.0f);
    ngt_gemm_bf16(0, 1, N, R, D, ws->Xb, D, ws->Wb, D, NULL, ws->H, R); /* H = X W^T */
  } else {
    ngt_gemm(0, 1, 1.0f, X, W, 0.0f, H); /* H = X W^T (N x R) (eqn:HJKL) */
  }
  if (p->bf16 && (updating || write_xhat)) ngt_bf16_from_f32(ws->Hb, R, ws->H, R, N, R, -1.0f);
  if (updating) {  /* J, K, L before X is overwritten */
    if (p->bf16) { /* J = H^T X = -((-H)^T X), bf16 operands, fp32 accumulation */
      ngt_gemm_bf16(1, 0, R, D, N, ws->Hb, R, ws->Xb, D, NULL, ws->J, D);
      cblas_sscal(R * D, -1.0f, ws->J, 1);
    } else {
      ngt_gemm(1, 0, 1.0f, H, X, 0.0f, ngt_mat_view(ws->J, R, D, D)); /* J = H^T X (R x D) */
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, R, D, 1.0f, ws->J, D, 0.0f, ws->K, R);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, R, N, 1.0f, ws->H, R, 0.0f, ws->L, R);
  }
  if (write_xhat) { /* X^ = X - H W with the OLD W (eqn:Xhat) */
    if (p->bf16) {
      ngt_gemm_bf16_beta(0, 0, N, D, R, ws->Hb, R, ws->Wb, D, NULL, 1.0f, X.data, X.stride);
    } else {
      ngt_gemm(0, 0, -1.0f, H, W, 1.0f, X);
    }
  }
  if (updating) update_estimate(p, N, trXX);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API                                                                                 */

int ngt_ngrad_init(ngt_ngrad *p, int D, const ngt_ngrad_opts *o, ngt_err *err) {
  memset(p, 0, sizeof *p);
  int rc = ngt_ngrad_opts_check(o, D, NULL, err);
  if (rc) return rc;
  p->o = *o;
  p->D = D;
  p->R = D == 1 ? 0 : o->rank;
  p->o.rank = p->R;
  p->rho = o->epsilon;
  if (p->R == 0) return 0; /* D == 1: identity (safeguard 1), no state */
  size_t R = (size_t)p->R, Dz = (size_t)D;
  p->W = ngt_xcalloc(R * Dz, sizeof(float));
  p->d = ngt_xcalloc(R, sizeof(double));
  ngrad_ws *ws = ngt_xcalloc(1, sizeof *ws);
  ws->J = ngt_xcalloc(R * Dz, sizeof(float));
  ws->W1 = ngt_xcalloc(R * Dz, sizeof(float));
  ws->K = ngt_xcalloc(R * R, sizeof(float));
  ws->L = ngt_xcalloc(R * R, sizeof(float));
  ws->A = ngt_xcalloc(R * R, sizeof(float));
  double *blk = ngt_xcalloc(2 * R * R + 10 * R, sizeof(double));
  ws->Z = blk;
  ws->O = blk + R * R;
  double *v = blk + 2 * R * R;
  ws->w = v;
  v += R;
  ws->c = v;
  v += R;
  ws->sigma = v;
  v += R;
  ws->e = v;
  v += R;
  ws->u = v;
  v += R;
  ws->dr = v;
  v += R;
  ws->d1 = v;
  v += R;
  ws->e1 = v;
  v += R;
  ws->se1 = v;
  p->ws = ws;
  init_default(p);
  return 0;
}

void ngt_ngrad_deinit(ngt_ngrad *p) {
  if (!p) return;
  ngrad_ws *ws = p->ws;
  if (ws) {
    free(ws->H);
    free(ws->Xb);
    free(ws->Hb);
    free(ws->Wb);
    free(ws->Hn);
    free(ws->Wp);
    free(ws->wlast);
    free(ws->J);
    free(ws->W1);
    free(ws->K);
    free(ws->L);
    free(ws->A);
    free(ws->Z); /* the double block */
    ngt_syevd_work_free(&ws->eig);
    free(ws);
  }
  free(p->W);
  free(p->d);
  memset(p, 0, sizeof *p);
}

void ngt_ngrad_precondition(ngt_ngrad *p, ngt_mat X, float *gamma) {
  NGT_ASSERT(X.cols == p->D && X.rows >= 1);
  if (p->R == 0) { /* D == 1: NG is a no-op (safeguard 1); Kaldi does not count the call */
    *gamma = 1.0f;
    return;
  }
  int N = X.rows;
  ws_reserve(p, N);
  double trXX = p->bf16 ? sum_squares_to_bf16(p, X) : sum_squares(X);
  int finite = isfinite(trXX);
  if (!finite)
    NGT_WARN_MSG("ngrad: minibatch (N=%d, D=%d) is not finite; the Fisher estimate is not "
                 "updated on it",
                 N, p->D);
  if (p->t == 0) {
    /* Init (docs/algorithm.md §2.6): default, then num_init_iters updating passes on X0 that
     * ignore the frozen flag; the real call below updates once more. */
    init_default(p);
    int iters = N > p->R ? 3 : 1;
    for (int i = 0; finite && i < iters; i++) ngrad_step(p, X, trXX, 1, 0);
  }
  int updating = finite && !p->frozen &&
                 (p->t <= NGRAD_NUM_INITIAL_UPDATES ||
                  (p->t - NGRAD_NUM_INITIAL_UPDATES) % p->o.update_period == 0);
  ngrad_step(p, X, trXX, updating, 1);
  /* (eqn:gamma); X now holds X^ (safeguard 8; tr(X^X^T) = 0 also gives 1, as nnet2). */
  double trXhat = sum_squares(X);
  *gamma = (trXX <= 0.0 || trXhat == 0.0) ? 1.0f : (float)sqrt(trXX / trXhat);
  p->t++;
}

/* ---------------------------------------------------------------------------------------- */
/* The fused bf16 path (docs/algorithm.md §3.5): X is not copied or modified; H comes from the
 * caller's bf16 copy of X (the one its forward or backward GEMM used), and one pass over X
 * (ngt_bf16_lowrank_update) forms X^ = X - H W, its bf16 rounding for the weight gradient,
 * tr(X^ X^^T) and, on request, the bias gradient c^T X^.                                      */

static void fused_reserve(ngt_ngrad *p, int N, int Dx) {
  ngrad_ws *ws = p->ws;
  int R = p->R, D = p->D, Rp = R + (R & 1);
  if (!ws->Wp || ws->wb_dx != Dx) {
    free(ws->Wp);
    ws->Wp = ngt_xmalloc(sizeof(uint16_t) * 2 * (size_t)((R + 1) / 2) *
                         (size_t)ngt_bf16_pack_cols(Dx));
    if (!ws->wlast) ws->wlast = ngt_xcalloc((size_t)R, sizeof(float));
    if (!ws->Wb) ws->Wb = ngt_xmalloc(sizeof(uint16_t) * (size_t)R * (size_t)D);
    ws->wb_dx = Dx;
    ws->wb_ok = 0;
  }
  if (N > ws->cap_Hn) {
    free(ws->Hn);
    ws->Hn = ngt_xcalloc((size_t)N * (size_t)Rp, sizeof(uint16_t)); /* pad column stays 0 */
    ws->cap_Hn = N;
  }
  if (N > ws->cap_N) {
    free(ws->H);
    ws->H = ngt_xmalloc(sizeof(float) * (size_t)N * (size_t)R);
    ws->cap_N = N;
  }
  if (!ws->wb_ok) { /* W changed (an update, init, a state load): its bf16 forms */
    ngt_bf16_from_f32(ws->Wb, D, p->W, D, R, D, 1.0f);
    ngt_bf16_pack_pairs(ws->Wp, p->W, D, R, Dx);
    for (int r = 0; r < R; r++) ws->wlast[r] = Dx < D ? p->W[(size_t)r * (size_t)D + Dx] : 0.0f;
    ws->wb_ok = 1;
  }
}

/* ngrad_step for the fused path: H = X W^T from io->Xb (+ W[:, Dx] for the ones column);
 * updating: J, K, L; write_xhat: io->out, io->last, io->v, and *trXhat. */
static void ngrad_step_fused(ngt_ngrad *p, const ngt_ngrad_bf16_io *io, double trXX, int updating,
                             int write_xhat, double *trXhat) {
  ngrad_ws *ws = p->ws;
  const ngt_mat X = io->X;
  const int N = X.rows, R = p->R, D = p->D, Dx = X.cols, Rp = R + (R & 1);
  fused_reserve(p, N, Dx);
  /* H = [X, 1] W^T (eqn:HJKL): at the input side's small ranks oneDNN's matmul runs this
   * shape at a third of its rate, the row-dot kernel at full rate (bench: tests/bench) */
  const float *hb = io->ones ? ws->wlast : NULL;
  if (R <= NGRAD_THIN_RANK)
    ngt_bf16_gemm_thin(N, R, Dx, io->Xb, io->ldxb, ws->Wb, D, hb, ws->H, R);
  else
    ngt_gemm_bf16(0, 1, N, R, Dx, io->Xb, io->ldxb, ws->Wb, D, hb, ws->H, R);
  ngt_bf16_from_f32(ws->Hn, Rp, ws->H, R, N, R, -1.0f); /* -H, rounded */
  if (updating) { /* J = H^T [X, 1] = -((-H)^T [X, 1]), bf16 operands, fp32 accumulation */
    ngt_gemm_bf16(1, 0, R, Dx, N, ws->Hn, Rp, io->Xb, io->ldxb, NULL, ws->J, D);
    cblas_sscal(R * D, -1.0f, ws->J, 1);
    if (io->ones)
      for (int r = 0; r < R; r++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += ngt_bf16_round(ws->H[(size_t)n * (size_t)R + r]);
        ws->J[(size_t)r * (size_t)D + Dx] = s;
      }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, R, D, 1.0f, ws->J, D, 0.0f, ws->K, R);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, R, N, 1.0f, ws->H, R, 0.0f, ws->L, R);
  }
  if (write_xhat) { /* X^ = X - H W with the OLD W (eqn:Xhat) */
    double s = ngt_bf16_lowrank_update(N, Dx, X.data, X.stride, ws->Hn, Rp, R, ws->Wp, io->out,
                                       io->ldo, io->c, io->v);
    if (io->ones) { /* column Dx of [X, 1]: 1 - h_n . W[:, Dx], from the same rounded values */
      for (int n = 0; n < N; n++) {
        const uint16_t *hn = ws->Hn + (size_t)n * (size_t)Rp;
        float a = 1.0f;
        for (int r = 0; r < R; r++) a += ngt_bf16_value(hn[r]) * ngt_bf16_round(ws->wlast[r]);
        io->last[n] = a;
        s += (double)a * a;
      }
    }
    *trXhat = s;
  }
  if (updating) update_estimate(p, N, trXX);
}

void ngt_ngrad_precondition_bf16(ngt_ngrad *p, const ngt_ngrad_bf16_io *io, float *gamma) {
  const ngt_mat X = io->X;
  const int N = X.rows, Dx = X.cols;
  NGT_ASSERT(Dx + (io->ones ? 1 : 0) == p->D && N >= 1 && (!io->ones || io->last));
  if (p->R == 0) { /* D == 1: identity (safeguard 1) */
    ngt_bf16_from_f32(io->out, io->ldo, X.data, X.stride, N, Dx, 1.0f);
    for (int n = 0; n < N; n++) {
      if (io->ones) io->last[n] = 1.0f;
      if (io->c)
        for (int j = 0; j < Dx; j++) io->v[j] += io->c[n] * NGT_AT(X, n, j);
    }
    *gamma = 1.0f;
    return;
  }
  double trXX = sum_squares(X) + (io->ones ? (double)N : 0.0);
  int finite = isfinite(trXX);
  if (!finite)
    NGT_WARN_MSG("ngrad: minibatch (N=%d, D=%d) is not finite; the Fisher estimate is not "
                 "updated on it",
                 N, p->D);
  if (p->t == 0) { /* Init, as in ngt_ngrad_precondition */
    init_default(p);
    int iters = N > p->R ? 3 : 1;
    for (int i = 0; finite && i < iters; i++) ngrad_step_fused(p, io, trXX, 1, 0, NULL);
  }
  int updating = finite && !p->frozen &&
                 (p->t <= NGRAD_NUM_INITIAL_UPDATES ||
                  (p->t - NGRAD_NUM_INITIAL_UPDATES) % p->o.update_period == 0);
  double trXhat = 0.0;
  ngrad_step_fused(p, io, trXX, updating, 1, &trXhat);
  *gamma = (trXX <= 0.0 || trXhat == 0.0) ? 1.0f : (float)sqrt(trXX / trXhat);
  p->t++;
}

void ngt_ngrad_reset(ngt_ngrad *p) { p->t = 0; }

void ngt_ngrad_freeze(ngt_ngrad *p, int frozen) { p->frozen = frozen != 0; }

size_t ngt_ngrad_state_doubles(const ngt_ngrad *p) {
  return 3 + (size_t)p->R + (size_t)p->R * (size_t)p->D;
}

void ngt_ngrad_state_save(const ngt_ngrad *p, double *out) {
  size_t R = (size_t)p->R, n = R * (size_t)p->D;
  out[0] = (double)p->t;
  out[1] = (double)p->R;
  out[2] = p->rho;
  for (size_t i = 0; i < R; i++) out[3 + i] = p->d[i];
  for (size_t k = 0; k < n; k++) out[3 + R + k] = (double)p->W[k];
}

int ngt_ngrad_state_load(ngt_ngrad *p, const double *in, size_t n, ngt_err *err) {
  size_t need = ngt_ngrad_state_doubles(p);
  if (n < 3 || n != need || in[1] != (double)p->R)
    return ngt_err_set(err, NGT_EFORMAT,
                       "natural-gradient state has %zu values (rank %g) but "
                       "this preconditioner (dim %d, rank %d) needs %zu (the checkpoint was "
                       "written for a different network or rank; start without it)",
                       n, n >= 2 ? in[1] : -1.0, p->D, p->R, need);
  double t = in[0];
  if (!(t >= 0.0 && t < 9007199254740992.0 && t == floor(t)))
    return ngt_err_set(err, NGT_EFORMAT,
                       "natural-gradient state: call counter %g is not a "
                       "non-negative integer (corrupt checkpoint)",
                       t);
  size_t R = (size_t)p->R, nw = R * (size_t)p->D;
  if (t > 0.0) {
    if (!(in[2] > 0.0 && isfinite(in[2])))
      return ngt_err_set(err, NGT_EFORMAT,
                         "natural-gradient state: rho %g must be finite and "
                         "> 0 (corrupt checkpoint)",
                         in[2]);
    for (size_t i = 0; i < R; i++)
      if (!(in[3 + i] > 0.0 && isfinite(in[3 + i])))
        return ngt_err_set(err, NGT_EFORMAT,
                           "natural-gradient state: d[%zu] = %g must be finite "
                           "and > 0 (corrupt checkpoint)",
                           i, in[3 + i]);
    for (size_t k = 0; k < nw; k++) {
      double w = in[3 + R + k];
      if (!isfinite(w) || (double)(float)w != w)
        return ngt_err_set(err, NGT_EFORMAT,
                           "natural-gradient state: W[%zu] = %g is not a "
                           "finite float (corrupt checkpoint)",
                           k, w);
    }
  }
  p->t = (int64_t)t;
  p->rho = in[2];
  ((ngrad_ws *)p->ws)->wb_ok = 0;
  for (size_t i = 0; i < R; i++) p->d[i] = in[3 + i];
  for (size_t k = 0; k < nw; k++) p->W[k] = (float)in[3 + R + k];
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The simple method (docs/algorithm.md §2.2; nnet2 PreconditionDirectionsAlphaRescaled).        */

int ngt_ngrad_simple_precondition(ngt_mat Rm, double alpha, ngt_err *err) {
  int N = Rm.rows, D = Rm.cols;
  if (N < 1 || D < 1) return 0;
  double tr = ngt_mat_frob2(Rm);
  if (tr == 0.0) return 0; /* step 1: all-zero input unchanged */
  if (!isfinite(tr))
    return ngt_err_set(err, NGT_ENUM,
                       "simple natural gradient: %dx%d minibatch has "
                       "non-finite values (sum of squares %g)",
                       N, D, tr);
  if (!(alpha > 0.0 && isfinite(alpha)))
    return ngt_err_set(err, NGT_EINVAL,
                       "simple natural gradient: alpha %g must be > 0 "
                       "(Kaldi uses 0.1 in the component, 4 in the nnet2 scripts)",
                       alpha);
  if (N == 1) {
    NGT_LOG(NGT_DEBUG, "simple natural gradient: minibatch of one row returned unchanged");
    return 0;
  }
  double tf = tr < 1e-20 ? 1e-20 : tr;
  double lambda = alpha * tf / ((double)N * (double)D);
  int M = N >= D ? D : N;                                     /* size of the SPD system */
  double *Q = malloc(sizeof(double) * (size_t)N * (size_t)D); /* (N, D): R, then Q, then P */
  double *S = malloc(sizeof(double) * (size_t)M * (size_t)M); /* (M, M) */
  int rc = 0;
  if (!Q || !S) {
    rc = ngt_err_set(err, NGT_ENOMEM,
                     "simple natural gradient: out of memory for a %dx%d "
                     "minibatch (use a smaller minibatch)",
                     N, D);
    goto out_free;
  }
  for (int n = 0; n < N; n++)
    for (int k = 0; k < D; k++) Q[(size_t)n * D + k] = NGT_AT(Rm, n, k);
  memset(S, 0, sizeof(double) * (size_t)M * (size_t)M);
  for (int i = 0; i < M; i++) S[(size_t)i * M + i] = lambda;
  double inv = 1.0 / (N - 1);
  if (N >= D) /* S = lambda I + R^T R / (N-1)  (D x D) */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, D, N, inv, Q, D, 1.0, S, M);
  else /* S = lambda I + R R^T / (N-1)  (N x N), Woodbury form */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, N, D, inv, Q, D, 1.0, S, M);
  if (ngt_lapack_potrf_lower(M, S) != 0 || ngt_lapack_trtri_lower(M, S) != 0) {
    rc = ngt_err_set(err, NGT_ENUM,
                     "simple natural gradient: %dx%d Fisher matrix of a %dx%d "
                     "minibatch is not positive definite (lambda %g)",
                     M, M, N, D, lambda);
    goto out_free;
  }
  /* S = L^{-1}; S_full^{-1} = L^{-T} L^{-1}. */
  if (N >= D) { /* Q = R L^{-T} L^{-1} */
    cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, N, D, 1.0, S, M,
                Q, D);
    cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, N, D, 1.0, S, M,
                Q, D);
  } else { /* Q = L^{-T} L^{-1} R */
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, N, D, 1.0, S, M,
                Q, D);
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, N, D, 1.0, S, M, Q,
                D);
  }
  /* Sherman-Morrison leave-one-out: gamma_n = r_n . q_n, beta_n = 1 + gamma/(N-1-gamma). */
  double trP = 0.0;
  for (int n = 0; n < N; n++) {
    double *q = Q + (size_t)n * D, g = 0.0;
    for (int k = 0; k < D; k++) g += (double)NGT_AT(Rm, n, k) * q[k];
    double divisor = (N - 1) - g;
    if (!(divisor > 0.0)) {
      rc = ngt_err_set(err, NGT_ENUM,
                       "simple natural gradient: leave-one-out factor for row %d "
                       "is not positive (gamma %g, N-1 = %d); the minibatch is numerically "
                       "degenerate",
                       n, g, N - 1);
      goto out_free;
    }
    double b = 1.0 + g / divisor, rn = 0.0;
    for (int k = 0; k < D; k++) {
      q[k] *= b;
      rn += q[k] * q[k];
    }
    trP += rn;
  }
  if (!(trP > 0.0 && isfinite(trP))) {
    rc = ngt_err_set(err, NGT_ENUM,
                     "simple natural gradient: preconditioned %dx%d minibatch "
                     "has sum of squares %g",
                     N, D, trP);
    goto out_free;
  }
  double scale = sqrt(tr / trP); /* step 3: ||P||_F = ||R||_F */
  for (int n = 0; n < N; n++)
    for (int k = 0; k < D; k++) NGT_AT(Rm, n, k) = (float)(scale * Q[(size_t)n * D + k]);
out_free:
  free(S);
  free(Q);
  return rc;
}

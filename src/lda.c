/* lda.c — the fixed input transform of docs/algorithm.md §4.9 (Kaldi's "scaled LDA
 * without dimensionality reduction", nnet3 lda.mat; paper Appendix C.6) and CMVN.
 * See include/ngtrain/lda.h for the contract.
 *
 * Letters: N frames, D spliced input dim, C classes (C' of them seen, n_c > 0).
 *
 * Statistics, ONE contiguous double buffer so ranks sum them with one reduction:
 *   buf = [N (1), sum (D), scatter (D, D), class_count (C), class_sum (C, D)]
 * scatter = Σ x xᵀ about the origin, both triangles kept (it is symmetric), so the
 * elementwise sum of two buffers is the buffer of the union of their frames.
 *
 * Derivation (docs/algorithm.md §4.9 steps 1-8; Kaldi LdaEstimate::Estimate):
 *   (eqn:mu)    μ = sum / N,   μ_c = class_sum_c / n_c
 *   (eqn:T)     T = scatter / N − μ μᵀ                        total covariance
 *   (eqn:B)     B = Σ_c (n_c/N)(μ_c − μ)(μ_c − μ)ᵀ = ZᵀZ,      between-class,
 *               Z (C', D) has rows sqrt(n_c/N)(μ_c − μ)ᵀ
 *   (eqn:W)     W = T − B                                    within-class
 *   (eqn:chol)  W = L Lᵀ. If W is singular (potrf fails, or a pivot L_ii² falls
 *               below 1e-10·max_j W_jj — a constant or duplicated input dimension
 *               gives a pivot that is only rounding noise), add ε = 1e-3·tr(W)/D to
 *               the diagonal and retry, ε ×10 per further retry (if tr(W) is not
 *               positive, tr(T)/D and then 1 stand in for tr(W)/D).
 *   (eqn:S)     S = L⁻¹ B L⁻ᵀ = U diag(s) Uᵀ, s descending, s_i floored at 0.
 *   (eqn:M)     M = Uᵀ L⁻¹, so M W Mᵀ = I and M B Mᵀ = diag(s).
 *   (eqn:scale) row i of M *= sqrt((w + s_i)/(1 + s_i)), so M W Mᵀ = diag((w+s)/(1+s)),
 *               M B Mᵀ = diag(s (w+s)/(1+s)) and M T Mᵀ = diag(w + s_i).
 *   (eqn:ceil)  M = U' Σ V'ᵀ (SVD); M −= Σ_{σ_k > c} (σ_k − c) u'_k v'_kᵀ, i.e. the
 *               singular values are ceiled at c and nothing else changes.
 *   (eqn:off)   the transform is [M, −M μ] applied to [x; 1]: zero-mean output.
 *
 * Sign convention: each eigenvector u_i is flipped so that its largest-magnitude
 * component is positive. The transform is then a function of the statistics alone
 * (not of LAPACK's arbitrary signs), so summing the statistics over any split of the
 * frames gives the same transform — up to a rotation among outputs whose s_i are
 * equal (with C' − 1 < D the D − C' + 1 outputs with s_i = 0 span a subspace whose
 * basis is fixed only by rounding; M Mᵀ-invariant quantities do not depend on it).
 */
#include "ngtrain/lda.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran interface, shipped inside OpenBLAS). */
extern void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
                    const int *lda, double *s, double *u, const int *ldu, double *vt,
                    const int *ldvt, double *work, const int *lwork, int *info);

/* (eqn:chol) a pivot L_ii² below this times max_j W_jj counts as singular. */
#define NGT_LDA_PIVOT_REL 1e-10
/* (eqn:chol) first diagonal addition relative to tr(W)/D (Kaldi's value). */
#define NGT_LDA_SMOOTH_REL 1e-3
/* (eqn:chol) retries after the first failure, each with 10x the previous ε. */
#define NGT_LDA_MAX_RETRIES 6
/* stats_add converts at most this many rows to double at a time. */
#define NGT_LDA_CHUNK_ROWS 256

/* Views into the statistics buffer (layout in the file header). */
typedef struct lda_views {
  double *count;       /* (1) */
  double *sum;         /* (D) */
  double *scatter;     /* (D, D) */
  double *class_count; /* (C) */
  double *class_sum;   /* (C, D) */
} lda_views;

static lda_views lda_stats_views(const ngt_lda_stats *st) {
  const size_t D = (size_t)st->dim, C = (size_t)st->num_classes;
  lda_views v;
  v.count = st->buf;
  v.sum = v.count + 1;
  v.scatter = v.sum + D;
  v.class_count = v.scatter + D * D;
  v.class_sum = v.class_count + C;
  return v;
}

void ngt_lda_stats_init(ngt_lda_stats *st, int D, int C) {
  NGT_ASSERT(st != NULL && D > 0 && C >= 0);
  const size_t d = (size_t)D, c = (size_t)C;
  st->dim = D;
  st->num_classes = C;
  st->size = 1 + d + d * d + c + c * d;
  st->buf = ngt_xcalloc(st->size, sizeof(double));
}

void ngt_lda_stats_deinit(ngt_lda_stats *st) {
  if (!st) return;
  free(st->buf);
  memset(st, 0, sizeof *st);
}

/* labels may be NULL (no labels: only N, sum and scatter grow, enough for CMVN). A
 * label outside [0, C) is a caller bug: the shard reader validates labels. */
void ngt_lda_stats_add(ngt_lda_stats *st, ngt_mat X, const int32_t *labels) {
  NGT_ASSERT(st != NULL && st->buf != NULL);
  NGT_ASSERT(X.cols == st->dim && X.rows >= 0);
  if (X.rows == 0) return;
  const int D = st->dim;
  const size_t d = (size_t)D;
  lda_views v = lda_stats_views(st);
  const int chunk = X.rows < NGT_LDA_CHUNK_ROWS ? X.rows : NGT_LDA_CHUNK_ROWS;
  double *Xd = ngt_xmalloc(sizeof(double) * (size_t)chunk * d); /* (chunk, D) */

  for (int r0 = 0; r0 < X.rows; r0 += chunk) {
    const int n = X.rows - r0 < chunk ? X.rows - r0 : chunk;
    for (int i = 0; i < n; i++) {
      const float *x = &NGT_AT(X, r0 + i, 0);
      double *xd = Xd + (size_t)i * d;
      for (int j = 0; j < D; j++) {
        xd[j] = (double)x[j];
        v.sum[j] += xd[j];
      }
      if (labels) {
        const int32_t c = labels[r0 + i];
        NGT_ASSERT(c >= 0 && c < st->num_classes);
        double *cs = v.class_sum + (size_t)c * d;
        v.class_count[c] += 1.0;
        for (int j = 0; j < D; j++) cs[j] += xd[j];
      }
    }
    /* scatter += Xdᵀ Xd, lower triangle (row-major) */
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, D, n, 1.0, Xd, D, 1.0, v.scatter, D);
  }
  *v.count += (double)X.rows;
  /* Mirror the lower triangle (which holds the full running sum) into the upper. */
  for (int i = 0; i < D; i++)
    for (int j = 0; j < i; j++) v.scatter[(size_t)j * d + i] = v.scatter[(size_t)i * d + j];
  free(Xd);
}

ngt_lda_opts ngt_lda_opts_default(void) {
  ngt_lda_opts o = {.within_class_factor = 0.001, .max_singular_value = 5.0};
  return o;
}

/* NGT_ENUM if any statistic is NaN/Inf, naming the frame count and where. */
static int lda_check_finite(const ngt_lda_stats *st, const char *what, ngt_err *err) {
  lda_views v = lda_stats_views(st);
  const size_t D = (size_t)st->dim;
  for (size_t k = 0; k < st->size; k++) {
    if (isfinite(st->buf[k])) continue;
    const double *p = st->buf + k;
    char where[96];
    if (p == v.count) snprintf(where, sizeof where, "the frame count");
    else if (p < v.scatter)
      snprintf(where, sizeof where, "the sum of input dimension %zu", (size_t)(p - v.sum));
    else if (p < v.class_count)
      snprintf(where, sizeof where, "the scatter of input dimensions %zu,%zu",
               (size_t)(p - v.scatter) / D, (size_t)(p - v.scatter) % D);
    else if (p < v.class_sum)
      snprintf(where, sizeof where, "the count of class %zu", (size_t)(p - v.class_count));
    else
      snprintf(where, sizeof where, "the sum of class %zu", (size_t)(p - v.class_sum) / D);
    return ngt_err_set(err, NGT_ENUM,
                       "%s input transform: statistics over %.0f frames are not finite "
                       "(NaN/Inf in %s): the input features contain NaN or Inf; check the "
                       "shards' /feats (e.g. with nninfo) or the feature extraction",
                       what, *v.count, where);
  }
  return NGT_OK;
}

/* Steps 1-8 of docs/algorithm.md §4.9 in double; T (D, D+1) row-major = [M, −M μ]. */
int ngt_lda_compute_f64(const ngt_lda_stats *st, const ngt_lda_opts *o, double *T,
                        ngt_lda_info *info, ngt_err *err) {
  NGT_ASSERT(st != NULL && st->buf != NULL && o != NULL && T != NULL);
  ngt_lda_info inf = {0};
  const int D = st->dim, C = st->num_classes;
  const size_t d = (size_t)D, dd = d * d;
  const double w = o->within_class_factor, cmax = o->max_singular_value;
  if (info) *info = inf;

  if (!(isfinite(w) && w >= 0.0))
    return ngt_err_set(err, NGT_EINVAL,
                       "LDA input transform: within-class factor %g must be finite and >= 0 "
                       "(Kaldi's default is 0.001)",
                       w);
  if (isnan(cmax))
    return ngt_err_set(err, NGT_EINVAL,
                       "LDA input transform: max singular value is NaN (use a positive value "
                       "such as Kaldi's 5.0, or 0 for no ceiling)");
  int rc = lda_check_finite(st, "LDA", err);
  if (rc) return rc;

  lda_views v = lda_stats_views(st);
  const double N = *v.count;
  if (N < (double)D + 1.0)
    return ngt_err_set(err, NGT_EINVAL,
                       "LDA input transform: only %.0f frames for spliced input dimension "
                       "D=%d, but at least D+1=%d are needed (raise --lda-frames, or use "
                       "--input-transform=cmvn)",
                       N, D, D + 1);
  int nseen = 0;
  for (int c = 0; c < C; c++) nseen += v.class_count[c] > 0.0;
  inf.num_classes_seen = nseen;
  if (info) *info = inf;
  if (nseen < 2)
    return ngt_err_set(err, NGT_EINVAL,
                       "LDA input transform: the %.0f frames carry labels of only %d of %d "
                       "classes, but LDA needs at least 2 (use --input-transform=cmvn, or "
                       "check the labels)",
                       N, nseen, C);

  /* Workspace, one block carved by a size table. */
  const size_t n_mu = d, n_mat = dd, n_Z = (size_t)nseen * d;
  double *ws = malloc(sizeof(double) * (n_mu + 2 * d + 7 * n_mat + n_Z));
  if (!ws)
    return ngt_err_set(err, NGT_ENOMEM,
                       "LDA input transform: cannot allocate the workspace for D=%d, %d "
                       "classes (lower the splice context)",
                       D, nseen);
  double *mu = ws;         /* (D)    μ */
  double *s = mu + n_mu;   /* (D)    s, descending */
  double *sv = s + d;      /* (D)    singular values of M */
  double *Tc = sv + d;     /* (D, D) total covariance T */
  double *B = Tc + n_mat;  /* (D, D) between-class B */
  double *W = B + n_mat;   /* (D, D) within-class W */
  double *L = W + n_mat;   /* (D, D) L, then L⁻¹ */
  double *S = L + n_mat;   /* (D, D) S, then its eigenvectors (row j = vector j) */
  double *M = S + n_mat;   /* (D, D) M */
  double *tmp = M + n_mat; /* (D, D) Uᵀ, then U' of the SVD (whose A, V'ᵀ reuse T, B) */
  double *Z = tmp + n_mat; /* (C', D) rows sqrt(n_c/N)(μ_c − μ) */
  double *work = NULL;

  /* (eqn:mu), (eqn:T) */
  for (size_t j = 0; j < d; j++) mu[j] = v.sum[j] / N;
  for (size_t i = 0; i < d; i++)
    for (size_t j = 0; j < d; j++) Tc[i * d + j] = v.scatter[i * d + j] / N - mu[i] * mu[j];
  for (size_t i = 0; i < d; i++)
    for (size_t j = 0; j < i; j++) {
      const double a = 0.5 * (Tc[i * d + j] + Tc[j * d + i]);
      Tc[i * d + j] = Tc[j * d + i] = a;
    }
  /* (eqn:B) */
  for (int c = 0, k = 0; c < C; c++) {
    const double nc = v.class_count[c];
    if (!(nc > 0.0)) continue;
    const double *cs = v.class_sum + (size_t)c * d, a = sqrt(nc / N);
    for (size_t j = 0; j < d; j++) Z[(size_t)k * d + j] = a * (cs[j] / nc - mu[j]);
    k++;
  }
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, D, nseen, 1.0, Z, D, 0.0, B, D);
  for (size_t i = 0; i < d; i++)
    for (size_t j = 0; j < i; j++) B[j * d + i] = B[i * d + j];
  /* (eqn:W) */
  double trW = 0.0, trT = 0.0;
  for (size_t k = 0; k < dd; k++) W[k] = Tc[k] - B[k];
  for (size_t i = 0; i < d; i++) trW += W[i * d + i], trT += Tc[i * d + i];

  /* (eqn:chol) with the fallback */
  double base = trW / D;
  if (!(base > 0.0)) base = trT / D;
  if (!(base > 0.0)) base = 1.0;
  double eps = 0.0;
  int ok = 0;
  for (int attempt = 0; attempt <= NGT_LDA_MAX_RETRIES && !ok; attempt++) {
    if (attempt > 0) {
      eps = attempt == 1 ? NGT_LDA_SMOOTH_REL * base : 10.0 * eps;
      inf.used_fallback = 1;
    }
    double maxdiag = 0.0;
    memcpy(L, W, sizeof(double) * dd);
    for (size_t i = 0; i < d; i++) {
      L[i * d + i] += eps;
      if (L[i * d + i] > maxdiag) maxdiag = L[i * d + i];
    }
    if (ngt_lapack_potrf_lower(D, L) != 0) continue;
    double minpiv = INFINITY;
    for (size_t i = 0; i < d; i++) minpiv = fmin(minpiv, L[i * d + i] * L[i * d + i]);
    ok = minpiv > NGT_LDA_PIVOT_REL * maxdiag;
  }
  if (!ok) {
    rc = ngt_err_set(err, NGT_ENUM,
                     "LDA input transform: the within-class covariance (trace %g, %.0f "
                     "frames, D=%d) stays singular even after adding %g to its diagonal "
                     "(use --input-transform=cmvn)",
                     trW, N, D, eps);
    goto out_free_ws;
  }
  if (inf.used_fallback) {
    NGT_WARN_MSG("LDA input transform: within-class covariance is singular (a constant or "
                 "duplicated input dimension?); added %g to its diagonal",
                 eps);
  }
  if (ngt_lapack_trtri_lower(D, L) != 0) {
    rc = ngt_err_set(err, NGT_ENUM,
                     "LDA input transform: cannot invert the Cholesky factor "
                     "of the within-class covariance (D=%d; use --input-transform=cmvn)",
                     D);
    goto out_free_ws;
  }
  /* (eqn:S) S = L⁻¹ B L⁻ᵀ, symmetrised, then eigen-decomposed */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, D, D, 1.0, L, D, B, D, 0.0, tmp, D);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, D, D, D, 1.0, tmp, D, L, D, 0.0, S, D);
  for (size_t i = 0; i < d; i++)
    for (size_t j = 0; j < i; j++) {
      const double a = 0.5 * (S[i * d + j] + S[j * d + i]);
      S[i * d + j] = S[j * d + i] = a;
    }
  if (ngt_lapack_syev(D, S, sv) != 0) { /* sv: eigenvalues ascending, for now */
    rc = ngt_err_set(err, NGT_ENUM,
                     "LDA input transform: the eigen-decomposition of "
                     "L^-1 B L^-T did not converge (D=%d; use --input-transform=cmvn)",
                     D);
    goto out_free_ws;
  }
  /* tmp row i = u_iᵀ for s descending, sign-normalised (file header). */
  for (size_t i = 0; i < d; i++) {
    const size_t j = d - 1 - i;
    const double *u = S + j * d;
    size_t kmax = 0;
    for (size_t k = 1; k < d; k++)
      if (fabs(u[k]) > fabs(u[kmax])) kmax = k;
    const double sg = u[kmax] < 0.0 ? -1.0 : 1.0;
    for (size_t k = 0; k < d; k++) tmp[i * d + k] = sg * u[k];
    s[i] = sv[j] > 0.0 ? sv[j] : 0.0;
  }
  /* (eqn:M) M = Uᵀ L⁻¹, then (eqn:scale) */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, D, D, 1.0, tmp, D, L, D, 0.0, M, D);
  for (size_t i = 0; i < d; i++) {
    const double f = sqrt((w + s[i]) / (1.0 + s[i]));
    for (size_t k = 0; k < d; k++) M[i * d + k] *= f;
  }
  inf.max_between = s[0];
  inf.min_between = s[d - 1];

  /* (eqn:ceil) Row-major M is column-major Mᵀ = U' Σ V'ᵀ; subtracting
   * (σ_k − c) u'_k v'_kᵀ from that memory ceils σ_k for M as well. */
  if (cmax > 0.0 && isfinite(cmax)) {
    double *A = Tc, *VT = B; /* T and B are no longer needed */
    memcpy(A, M, sizeof(double) * dd);
    int info_l = 0, lwork = -1;
    double wq = 0.0;
    dgesvd_("S", "S", &D, &D, A, &D, sv, tmp, &D, VT, &D, &wq, &lwork, &info_l);
    if (info_l == 0) {
      lwork = (int)wq;
      work = malloc(sizeof(double) * (size_t)(lwork > 1 ? lwork : 1));
      if (!work) {
        rc = ngt_err_set(err, NGT_ENOMEM, "LDA input transform: out of memory (D=%d)", D);
        goto out_free_ws;
      }
      dgesvd_("S", "S", &D, &D, A, &D, sv, tmp, &D, VT, &D, work, &lwork, &info_l);
    }
    if (info_l != 0) {
      rc = ngt_err_set(err, NGT_ENUM,
                       "LDA input transform: the SVD for the singular-value "
                       "ceiling did not converge (LAPACK info %d, D=%d; try "
                       "--input-transform=cmvn)",
                       info_l, D);
      goto out_free_work;
    }
    for (int k = 0; k < D; k++) {
      if (!(sv[k] > cmax)) continue;
      inf.num_ceiled++;
      cblas_dger(CblasColMajor, D, D, -(sv[k] - cmax), tmp + (size_t)k * d, 1, VT + k, D, M, D);
    }
  }

  /* (eqn:off) T = [M, −M μ] */
  for (size_t i = 0; i < d; i++) {
    double b = 0.0;
    for (size_t k = 0; k < d; k++) {
      T[i * (d + 1) + k] = M[i * d + k];
      b += M[i * d + k] * mu[k];
    }
    T[i * (d + 1) + d] = -b;
  }
  NGT_LOG(NGT_INFO,
          "LDA input transform: %.0f frames, D=%d, %d classes seen; between-class "
          "eigenvalues %.4g .. %.4g; %d singular values ceiled at %g%s",
          N, D, nseen, inf.max_between, inf.min_between, inf.num_ceiled, cmax,
          inf.used_fallback ? "; singular within-class covariance regularised" : "");
  rc = NGT_OK;

out_free_work:
  free(work);
out_free_ws:
  free(ws);
  if (info) *info = inf;
  return rc;
}

int ngt_lda_compute(const ngt_lda_stats *st, const ngt_lda_opts *o, float *T, ngt_lda_info *info,
                    ngt_err *err) {
  NGT_ASSERT(st != NULL && T != NULL);
  const size_t n = (size_t)st->dim * ((size_t)st->dim + 1);
  double *Td = malloc(sizeof(double) * n); /* (D, D+1) */
  if (!Td)
    return ngt_err_set(err, NGT_ENOMEM, "LDA input transform: out of memory (D=%d)", st->dim);
  int rc = ngt_lda_compute_f64(st, o, Td, info, err);
  if (rc == NGT_OK)
    for (size_t k = 0; k < n; k++) T[k] = (float)Td[k];
  free(Td);
  return rc;
}

int ngt_cmvn_compute(const ngt_lda_stats *st, float *T, ngt_err *err) {
  NGT_ASSERT(st != NULL && st->buf != NULL && T != NULL);
  int rc = lda_check_finite(st, "CMVN", err);
  if (rc) return rc;
  lda_views v = lda_stats_views(st);
  const size_t d = (size_t)st->dim;
  const double N = *v.count;
  if (N < 2.0)
    return ngt_err_set(err, NGT_EINVAL,
                       "CMVN input transform: only %.0f frame(s), but at least 2 are needed to "
                       "estimate a variance (give it more frames, e.g. raise --lda-frames)",
                       N);
  double *sigma = malloc(sizeof(double) * d); /* (D) */
  if (!sigma)
    return ngt_err_set(err, NGT_ENOMEM, "CMVN input transform: out of memory (D=%zu)", d);
  double smax = 0.0;
  for (size_t i = 0; i < d; i++) {
    const double m = v.sum[i] / N, var = v.scatter[i * d + i] / N - m * m;
    sigma[i] = var > 0.0 ? sqrt(var) : 0.0;
    if (sigma[i] > smax) smax = sigma[i];
  }
  const double floor_ = fmax(1e-5 * smax, 1e-10);
  int nfloored = 0;
  memset(T, 0, sizeof(float) * d * (d + 1));
  for (size_t i = 0; i < d; i++) {
    if (sigma[i] < floor_) sigma[i] = floor_, nfloored++;
    const double m = v.sum[i] / N;
    T[i * (d + 1) + i] = (float)(1.0 / sigma[i]);
    T[i * (d + 1) + d] = (float)(-m / sigma[i]);
  }
  if (nfloored)
    NGT_WARN_MSG("CMVN input transform: %d of %zu input dimensions have (almost) zero "
                 "variance; their standard deviation was floored at %g",
                 nfloored, d, floor_);
  free(sigma);
  return NGT_OK;
}

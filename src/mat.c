/* mat.c — see include/ngtrain/mat.h. */
#include "ngtrain/mat.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/log.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* LAPACK (Fortran interface, shipped inside OpenBLAS). */
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                   double *w, double *work, const int *lwork, int *info);
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info);
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda,
                    int *info);

ngt_mat ngt_mat_alloc(int rows, int cols) {
  NGT_ASSERT(rows >= 0 && cols >= 0);
  ngt_mat m = {NULL, rows, cols, cols};
  m.data = ngt_xcalloc((size_t)rows * (size_t)cols, sizeof(float));
  return m;
}

void ngt_mat_free(ngt_mat *m) {
  if (!m) return;
  free(m->data);
  memset(m, 0, sizeof *m);
}

void ngt_mat_zero(ngt_mat m) {
  if (m.stride == m.cols) {
    memset(m.data, 0, sizeof(float) * (size_t)m.rows * (size_t)m.cols);
    return;
  }
  for (int i = 0; i < m.rows; i++) memset(&NGT_AT(m, i, 0), 0, sizeof(float) * (size_t)m.cols);
}

void ngt_mat_copy(ngt_mat dst, ngt_mat src) {
  NGT_ASSERT(dst.rows == src.rows && dst.cols == src.cols);
  for (int i = 0; i < src.rows; i++)
    memcpy(&NGT_AT(dst, i, 0), &NGT_AT(src, i, 0), sizeof(float) * (size_t)src.cols);
}

void ngt_mat_scale(ngt_mat m, float a) {
  for (int i = 0; i < m.rows; i++) cblas_sscal(m.cols, a, &NGT_AT(m, i, 0), 1);
}

double ngt_mat_frob2(ngt_mat m) {
  double s = 0;
  for (int i = 0; i < m.rows; i++) s += ngt_vec_norm2(&NGT_AT(m, i, 0), (size_t)m.cols);
  return s;
}

int ngt_mat_all_finite(ngt_mat m) {
  for (int i = 0; i < m.rows; i++)
    if (!ngt_vec_all_finite(&NGT_AT(m, i, 0), (size_t)m.cols)) return 0;
  return 1;
}

void ngt_gemm(int ta, int tb, float alpha, ngt_mat A, ngt_mat B, float beta, ngt_mat C) {
  int m = ta ? A.cols : A.rows, k = ta ? A.rows : A.cols;
  int kb = tb ? B.cols : B.rows, n = tb ? B.rows : B.cols;
  NGT_ASSERT(k == kb && C.rows == m && C.cols == n);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f) ngt_mat_zero(C);
    else
      ngt_mat_scale(C, beta);
    return;
  }
  const CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  int T = 1;
#ifdef _OPENMP
  /* With T OpenMP threads (engine.h: the one pool of a rank; OpenBLAS then has one thread)
   * a large GEMM is split into T blocks of rows of C (or of columns, if C has few rows),
   * each one single-threaded cblas_sgemm over the whole K: every element is summed as in
   * the one-block call. Inside a parallel region (the optimiser's layer tasks) one block. */
  if (!omp_in_parallel() && (double)m * n * k >= 1 << 21) T = omp_get_max_threads();
#endif
  if (T <= 1) {
    cblas_sgemm(CblasRowMajor, TA, TB, m, n, k, alpha, A.data, A.stride, B.data, B.stride, beta,
                C.data, C.stride);
    return;
  }
  const int by_rows = m >= 16 * T;
  const int len = by_rows ? m : n;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(T)
#endif
  for (int t = 0; t < T; t++) {
    int i0 = (int)((long)len * t / T) / 16 * 16, i1 = (int)((long)len * (t + 1) / T) / 16 * 16;
    if (t == T - 1) i1 = len;
    if (i1 <= i0) continue;
    if (by_rows) { /* rows i0..i1 of C: rows of op(A) */
      const float *a = ta ? A.data + i0 : A.data + (size_t)i0 * (size_t)A.stride;
      cblas_sgemm(CblasRowMajor, TA, TB, i1 - i0, n, k, alpha, a, A.stride, B.data, B.stride, beta,
                  C.data + (size_t)i0 * (size_t)C.stride, C.stride);
    } else { /* columns i0..i1 of C: columns of op(B) */
      const float *b = tb ? B.data + (size_t)i0 * (size_t)B.stride : B.data + i0;
      cblas_sgemm(CblasRowMajor, TA, TB, m, i1 - i0, k, alpha, A.data, A.stride, b, B.stride, beta,
                  C.data + i0, C.stride);
    }
  }
}

double ngt_vec_dot(const float *x, const float *y, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)y[i];
  return s;
}

double ngt_vec_norm2(const float *x, size_t n) {
  /* Four accumulators in double: exact enough and vectorises. */
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += (double)x[i] * x[i];
    s1 += (double)x[i + 1] * x[i + 1];
    s2 += (double)x[i + 2] * x[i + 2];
    s3 += (double)x[i + 3] * x[i + 3];
  }
  for (; i < n; i++) s0 += (double)x[i] * x[i];
  return (s0 + s1) + (s2 + s3);
}

void ngt_vec_axpy(float a, const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void ngt_vec_scale(float a, float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] *= a;
}

int ngt_vec_all_finite(const float *x, size_t n) {
  float acc = 0.0f;
  for (size_t i = 0; i < n; i++) acc += x[i] * 0.0f; /* NaN/Inf * 0 = NaN */
  return acc == 0.0f;
}

int ngt_lapack_syev(int n, double *A, double *w) {
  int info = 0, lwork = -1;
  double wq;
  dsyev_("V", "U", &n, A, &n, w, &wq, &lwork, &info);
  if (info != 0) return info;
  lwork = (int)wq;
  double *work = ngt_xmalloc(sizeof(double) * (size_t)lwork);
  dsyev_("V", "U", &n, A, &n, w, work, &lwork, &info);
  free(work);
  return info;
}

int ngt_lapack_syevd(int n, double *A, double *w, ngt_syevd_work *ws) {
  int info = 0;
  if (ws->n < n) { /* workspace query once per size; the sizes depend on n only */
    int lq = -1, liq = -1, iwq = 0;
    double wq;
    dsyevd_("V", "U", &n, A, &n, w, &wq, &lq, &iwq, &liq, &info);
    if (info != 0) return info;
    ngt_syevd_work_free(ws);
    ws->lwork = (int)wq;
    ws->liwork = iwq;
    ws->work = ngt_xmalloc(sizeof(double) * (size_t)ws->lwork);
    ws->iwork = ngt_xmalloc(sizeof(int) * (size_t)ws->liwork);
    ws->n = n;
  }
  dsyevd_("V", "U", &n, A, &n, w, ws->work, &ws->lwork, ws->iwork, &ws->liwork, &info);
  return info;
}

void ngt_syevd_work_free(ngt_syevd_work *ws) {
  free(ws->work);
  free(ws->iwork);
  memset(ws, 0, sizeof *ws);
}

/* Row-major lower == column-major upper. */
int ngt_lapack_potrf_lower(int n, double *A) {
  int info = 0;
  dpotrf_("U", &n, A, &n, &info);
  if (info == 0)
    for (int i = 0; i < n; i++)
      for (int j = i + 1; j < n; j++) A[(size_t)i * n + j] = 0.0;
  return info;
}

int ngt_lapack_trtri_lower(int n, double *A) {
  int info = 0;
  dtrtri_("U", "N", &n, A, &n, &info);
  return info;
}

extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);
extern char *openblas_get_corename(void);

void ngt_blas_set_threads(int n) { openblas_set_num_threads(n); }
int ngt_blas_get_threads(void) { return openblas_get_num_threads(); }
const char *ngt_blas_corename(void) { return openblas_get_corename(); }

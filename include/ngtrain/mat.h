/* mat.h — row-major float32 matrix views and thin wrappers over OpenBLAS / LAPACK.
 *
 * An ngt_mat is a *view*: (data, rows, cols, stride) over memory someone else owns;
 * it never allocates or frees (except ngt_mat_alloc / ngt_mat_free, which say so).
 * Element (i, j) is data[i * stride + j]; stride >= cols.
 *
 *   ngt_mat X = ngt_mat_alloc(N, D);             // caller frees with ngt_mat_free
 *   ngt_mat W = ngt_mat_view(params + off, out, in, in);
 *   ngt_gemm(0, 1, 1.0f, X, W, 0.0f, Y);         // Y = X W^T   (N x out)
 *   ngt_mat_free(&X);
 *
 * LAPACK: the small symmetric problems (R x R eigen, Cholesky) run in double,
 * column-major as LAPACK wants; for a symmetric matrix row/column-major is the same.
 */
#ifndef NGTRAIN_MAT_H
#define NGTRAIN_MAT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ngt_mat {
  float *data; /* element (i,j) at data[i*stride + j]; not owned */
  int rows;
  int cols;
  int stride; /* >= cols */
} ngt_mat;

static inline ngt_mat ngt_mat_view(float *data, int rows, int cols, int stride) {
  ngt_mat m = {data, rows, cols, stride};
  return m;
}
/* Rows [r0, r0+n) of m, as a view. */
static inline ngt_mat ngt_mat_rows(ngt_mat m, int r0, int n) {
  ngt_mat v = {m.data + (size_t)r0 * (size_t)m.stride, n, m.cols, m.stride};
  return v;
}
/* Columns [c0, c0+n) of m, as a view. */
static inline ngt_mat ngt_mat_cols(ngt_mat m, int c0, int n) {
  ngt_mat v = {m.data + c0, m.rows, n, m.stride};
  return v;
}
#define NGT_AT(m, i, j) ((m).data[(size_t)(i) * (size_t)(m).stride + (size_t)(j)])

/* Allocates a zeroed rows x cols matrix (stride = cols); free with ngt_mat_free. */
ngt_mat ngt_mat_alloc(int rows, int cols);
void ngt_mat_free(ngt_mat *m); /* NULL-tolerant; leaves m zeroed */

void ngt_mat_zero(ngt_mat m);
void ngt_mat_copy(ngt_mat dst, ngt_mat src); /* same shape */
void ngt_mat_scale(ngt_mat m, float a);
/* sum of squares (in double) */
double ngt_mat_frob2(ngt_mat m);
/* 1 if every element is finite */
int ngt_mat_all_finite(ngt_mat m);

/* C = alpha * op(A) op(B) + beta * C; ta/tb nonzero means transpose. Shapes asserted. */
void ngt_gemm(int ta, int tb, float alpha, ngt_mat A, ngt_mat B, float beta, ngt_mat C);

/* Vector helpers over float arrays of length n (BLAS where it pays). */
double ngt_vec_dot(const float *x, const float *y, size_t n);
double ngt_vec_norm2(const float *x, size_t n);                 /* sum of squares, double */
void ngt_vec_axpy(float a, const float *x, float *y, size_t n); /* y += a x */
void ngt_vec_scale(float a, float *x, size_t n);
int ngt_vec_all_finite(const float *x, size_t n);

/* Symmetric eigendecomposition of the n x n double matrix A (overwritten by the
 * eigenvectors, column j = eigenvector j, column-major == row-major transposed),
 * eigenvalues in w ascending (LAPACK dsyev). Returns 0 or the LAPACK info. */
int ngt_lapack_syev(int n, double *A, double *w);
/* The same by divide and conquer (LAPACK dsyevd): same output convention; at n = 80 about
 * 1.6 times faster than dsyev, whose QR sweeps dominate there. For repeated calls the
 * caller keeps the LAPACK workspace in *ws (zero-initialised; sized on the first call for
 * its n, grown if n grows; release with ngt_syevd_work_free). */
typedef struct ngt_syevd_work {
  int n;        /* the size the buffers were queried for (0 = none yet) */
  double *work; /* (lwork) */
  int *iwork;   /* (liwork) */
  int lwork, liwork;
} ngt_syevd_work;
int ngt_lapack_syevd(int n, double *A, double *w, ngt_syevd_work *ws);
void ngt_syevd_work_free(ngt_syevd_work *ws);
/* Cholesky A = L L^T of the n x n double SPD matrix A (row-major, lower triangle
 * of the result holds L, upper zeroed). Returns 0 or >0 if not positive definite. */
int ngt_lapack_potrf_lower(int n, double *A);
/* In-place inverse of a lower-triangular n x n double matrix (row-major). */
int ngt_lapack_trtri_lower(int n, double *A);

/* BLAS threading and kernel: what OpenBLAS is using in this process. */
void ngt_blas_set_threads(int n);
int ngt_blas_get_threads(void);
const char *ngt_blas_corename(void);

#ifdef __cplusplus
}
#endif
#endif

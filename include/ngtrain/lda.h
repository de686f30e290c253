/* lda.h — the fixed input transform of docs/algorithm.md §4.9: Kaldi's "scaled LDA
 * without dimensionality reduction", or per-dimension CMVN, estimated from spliced
 * frames before iteration 0.
 *
 * Statistics live in ONE contiguous double buffer, so a multi-rank run sums them with
 * one reduction (ngt_lda_stats.buf, ngt_lda_stats.size doubles):
 *   [count, sum[D], scatter[D*D] (sum x x^T, about 0), class_count[C], class_sum[C*D]]
 *
 *   ngt_lda_stats st; ngt_lda_stats_init(&st, D, C);
 *   ngt_lda_stats_add(&st, X, labels);            // X: N x D spliced frames
 *   float *T = malloc(sizeof(float) * D * (D + 1));
 *   ngt_lda_opts o = ngt_lda_opts_default();
 *   if (ngt_lda_compute(&st, &o, T, &info, &err)) ...   // T = [M, -M mu]
 *   ngt_lda_stats_deinit(&st);
 */
#ifndef NGTRAIN_LDA_H
#define NGTRAIN_LDA_H

#include <stddef.h>
#include <stdint.h>

#include "ngtrain/log.h"
#include "ngtrain/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ngt_lda_stats {
  int dim;         /* D: spliced input dim */
  int num_classes; /* C */
  size_t size;     /* doubles in buf */
  double *buf;     /* owned; layout above */
} ngt_lda_stats;

void ngt_lda_stats_init(ngt_lda_stats *st, int D, int C);
void ngt_lda_stats_deinit(ngt_lda_stats *st);
/* Accumulate rows of X (N x D) with their labels (0 <= label < C). labels may be
 * NULL (unlabelled frames: only count, sum and scatter grow — enough for CMVN). */
void ngt_lda_stats_add(ngt_lda_stats *st, ngt_mat X, const int32_t *labels);

typedef struct ngt_lda_opts {
  double within_class_factor; /* w of step 6, Kaldi default 0.001 */
  double max_singular_value;  /* step 7 ceiling, Kaldi default 5.0 */
} ngt_lda_opts;
ngt_lda_opts ngt_lda_opts_default(void);

typedef struct ngt_lda_info {
  int used_fallback;    /* 1 if step 2 had to add to the diagonal */
  int num_classes_seen; /* classes with count > 0 */
  double max_between;   /* largest between-class eigenvalue s_1 */
  double min_between;   /* smallest s_D */
  int num_ceiled;       /* singular values ceiled at max_singular_value */
} ngt_lda_info;

/* Steps 1-8 of §4.9 in double precision. T receives D x (D+1) floats, row-major,
 * [M, -M mu]. Errors (count < D+1 frames, fewer than 2 classes seen, non-finite
 * statistics) are NGT_EINVAL / NGT_ENUM with a message naming the value and what to
 * do (e.g. "use --input-transform=cmvn"). */
int ngt_lda_compute(const ngt_lda_stats *st, const ngt_lda_opts *o, float *T, ngt_lda_info *info,
                    ngt_err *err);
/* The same in double: T receives D x (D+1) doubles (what ngt_lda_compute rounds to
 * float; the tests check the algebra on it to ~1e-9). max_singular_value <= 0 or
 * infinite means no ceiling. */
int ngt_lda_compute_f64(const ngt_lda_stats *st, const ngt_lda_opts *o, double *T,
                        ngt_lda_info *info, ngt_err *err);
/* Per-dimension global mean and variance normalisation from the same statistics
 * (labels unused): T = [diag(1/sigma), -mu/sigma], sigma floored at 1e-5·max sigma
 * (and 1e-10). Errors: count < 2, non-finite statistics. */
int ngt_cmvn_compute(const ngt_lda_stats *st, float *T, ngt_err *err);

#ifdef __cplusplus
}
#endif
#endif

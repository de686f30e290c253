/* ngrad.h — Kaldi's online natural-gradient preconditioner for one side of one
 * affine layer (docs/algorithm.md §2, nnet3 semantics), and the older "simple" method
 * (§2.2). Pure math: no I/O, no MPI.
 *
 * One ngt_ngrad instance receives at call t a matrix X_t (N x D, rows are vectors:
 * layer inputs [x, 1] or output derivatives g), replaces it in place by the
 * preconditioned X̂_t = X_t - X_t W_t^T W_t (§2.4, using the OLD estimate) and returns
 * the norm-restoring scale γ_t (§2.3); the caller multiplies its learning rate by γ.
 * The Fisher estimate F_t = R_t^T D_t R_t + ρ_t I is stored as W_t = E_t^{1/2} R_t
 * (R x D), d_t (R), ρ_t, and the call counter t.
 *
 * Ownership: the struct is caller-embedded (init/deinit); it owns W, d and its
 * workspace. Not thread-safe: one instance per thread.
 *
 *   ngt_ngrad_opts o = ngt_ngrad_opts_default();   o.rank = 20;
 *   ngt_ngrad p;
 *   if (ngt_ngrad_init(&p, D, &o, &err)) ...;      // validates o against D
 *   float gamma;
 *   ngt_ngrad_precondition(&p, X, &gamma);          // X: N x D view, modified in place
 *   ngt_ngrad_deinit(&p);
 */
#ifndef NGTRAIN_NGRAD_H
#define NGTRAIN_NGRAD_H

#include <stdint.h>

#include "ngtrain/log.h"
#include "ngtrain/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ngt_ngrad_opts {
  int rank;                       /* R: rank of the low-rank part; typical 20 (in) / 80 (out).
                                     Must be 1 <= R < D (D == 1 allowed: identity). */
  int update_period;              /* P: after the first 11 calls, update the Fisher
                                     estimate every P-th call (Kaldi component default 4). */
  double num_samples_history;     /* S: η(N) = min(0.9, 1 - exp(-N/S)); default 2000. */
  double num_minibatches_history; /* M: if > 0, η = 1/M instead (requires M > 1); default 0 */
  double alpha;                   /* α: smoothing towards identity, default 4 (§2.3) */
  double epsilon;                 /* ε: absolute floor, 1e-10 (§2.7) */
  double delta;                   /* δ: relative floor, 5e-4 (§2.7) */
  int self_debug;                 /* run the §2.8 SelfTest after every update (tests) */
} ngt_ngrad_opts;

/* Kaldi's defaults: rank 40 (callers set 20/80), P 4, S 2000, M 0, α 4, ε 1e-10, δ 5e-4. */
ngt_ngrad_opts ngt_ngrad_opts_default(void);

/* Check opts for a D-dim side: returns NGT_EINVAL with a message naming the bad value
 * ("rank 1024 >= dim 1024 (use a rank below the dimension)") or 0. `what` names the
 * layer and side for the message, e.g. "layer 2 (relu-renorm) input side". */
int ngt_ngrad_opts_check(const ngt_ngrad_opts *o, int D, const char *what, ngt_err *err);

/* The forgetting factor η(N) of §2.3, with the 0.9 clamp and the 1/M mode. */
double ngt_ngrad_eta(const ngt_ngrad_opts *o, int N);

typedef struct ngt_ngrad_stats {
  int64_t num_updates;      /* calls that updated the Fisher estimate (incl. init iterations) */
  int64_t num_reorth;       /* re-orthogonalisations that changed W (§2.6) */
  int64_t num_gram_schmidt; /* of which took the Gram-Schmidt fallback */
  int64_t num_floored;      /* updates in which a floor of §2.8 (5 or 6) was hit */
} ngt_ngrad_stats;

typedef struct ngt_ngrad {
  ngt_ngrad_opts o; /* validated options; o.rank may have been reduced to D-1 */
  int D;            /* dimension of the vectors (columns of X) */
  int R;            /* rank actually used (0 when D == 1) */
  float *W;         /* R x D row-major: W_t = E_t^{1/2} R_t (§2.4) */
  double *d;        /* R: d_t, the low-rank eigenvalues, all > 0 */
  double rho;       /* ρ_t > 0 */
  int64_t t;        /* number of calls so far (0 = not initialised) */
  int frozen;       /* if set, no Fisher updates (except Init when t == 0) (§2.5) */
  ngt_ngrad_stats stats;
  int bf16; /* set by the caller (optim, bf16 engine): on calls that do not update
                        the Fisher estimate, H = X W^T and X^ = X - H W run as bf16 GEMMs
                        with fp32 accumulation; updates (J, K, L, W, d, rho) stay fp32. */
  void *ws; /* private workspace, grown to the largest N seen */
} ngt_ngrad;

int ngt_ngrad_init(ngt_ngrad *p, int D, const ngt_ngrad_opts *o, ngt_err *err);
void ngt_ngrad_deinit(ngt_ngrad *p); /* NULL-tolerant */

/* §2.5 PreconditionDirections. X (N x D, any stride) is overwritten by X̂ (NOT scaled
 * by γ); *gamma receives γ_t. N >= 1; an all-zero X gives γ = 1 and no NaN. */
void ngt_ngrad_precondition(ngt_ngrad *p, ngt_mat X, float *gamma);

/* The bf16 engine's form of the same call (docs/algorithm.md §3.5), fused: the rows are X
 * (ones = 0, D = X.cols) or [X, 1] (ones = 1, D = X.cols + 1); X is read, not modified. H =
 * [X, 1] W^T takes Xb, the caller's bf16 copy of X (the one its forward or backward GEMM used);
 * one pass over X then writes out = bf16(X^[:, :X.cols]), last = X^[:, X.cols] (fp32, ones
 * only), v[j] += sum_n c[n] X^[n][j] if c is non-NULL (the bias gradient, with c = the other
 * side's last), and gives γ. X^ is NOT scaled by γ. The estimate's statistics are those of
 * ngt_ngrad_precondition in bf16 mode (§3.5); bf16 must be available (engine.h). */
typedef struct ngt_ngrad_bf16_io {
  ngt_mat X;          /* N x Dx, fp32 */
  const uint16_t *Xb; /* bf16(X), leading dimension ldxb */
  int ldxb;
  int ones;      /* 1: the rows are [x, 1] */
  uint16_t *out; /* N x Dx, leading dimension ldo */
  int ldo;
  float *last;    /* N, when ones */
  const float *c; /* N, or NULL */
  float *v;       /* Dx, accumulated into when c */
} ngt_ngrad_bf16_io;
void ngt_ngrad_precondition_bf16(ngt_ngrad *p, const ngt_ngrad_bf16_io *io, float *gamma);
/* Forget the estimate: the next call initialises from its minibatch (t = 0). */
void ngt_ngrad_reset(ngt_ngrad *p);
void ngt_ngrad_freeze(ngt_ngrad *p, int frozen);

/* Exact serialisation of the estimator state for checkpoints (bit-exact resume):
 * [t, R, rho, d[0..R), W[0..R*D)] as doubles, ngt_ngrad_state_doubles(p) = 3 + R + R*D
 * values (float W converts to double exactly). state_load checks D/R consistency and
 * returns NGT_EFORMAT with a message otherwise. */
size_t ngt_ngrad_state_doubles(const ngt_ngrad *p);
void ngt_ngrad_state_save(const ngt_ngrad *p, double *out);
int ngt_ngrad_state_load(ngt_ngrad *p, const double *in, size_t n, ngt_err *err);

/* The "simple" NG-SGD of §2.2: stateless leave-one-out preconditioning of the rows of
 * R (N x D) with λ = alpha·tr(RᵀR)/(N·D), then the rescale of step 3 (‖P‖_F = ‖R‖_F).
 * R is overwritten by P (already rescaled; the caller's γ is 1). N == 1 returns R
 * unchanged; all-zero R is returned unchanged. Returns 0, or NGT_ENUM if β_n <= 0. */
int ngt_ngrad_simple_precondition(ngt_mat R, double alpha, ngt_err *err);

#ifdef __cplusplus
}
#endif
#endif

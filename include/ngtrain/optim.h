/* optim.h — one minibatch update (docs/algorithm.md §3): for every affine component,
 * gradient → (NG) preconditioning → per-component max-change → global max-param-change
 * → apply with the current learning rate. We minimise cross-entropy, so the step is
 * θ -= lr·(preconditioned gradient) (Kaldi adds lr × the derivative of the log-lik).
 *
 * The optimiser owns the natural-gradient state (two ngt_ngrad per affine layer: input
 * side on [x, 1], output side on the output derivatives, §3.1) and a delta buffer of
 * the params' layout. Its NG state survives across averaging iterations unless
 * ngt_optim_reset_ng() is called (--ng-reset-each-iter restores Kaldi's behaviour).
 *
 * Momentum (SGD, plain or NG; Kaldi nnet3 NnetTrainer's meaning, docs/algorithm.md §3.6):
 * a buffer D in the params layout: D += lr·lrf_c·Δ_c; the max-changes are computed on
 * and applied to (1-μ)·D; then D *= μ (D = 0 after a refused step). μ = 0 is the plain
 * step bit for bit. Adam (§3.6): m, v (fp32) and the step count t, bias-corrected;
 * the step lr·lrf_c·m̂/(sqrt(v̂)+ε) goes through the same max-changes. The momentum
 * buffer and Adam's m, v, t are part of the per-worker state below (and survive
 * ngt_optim_reset_ng).
 *
 *   ngt_optim_opts oo = ngt_optim_opts_default();
 *   ngt_optim *opt;
 *   if (ngt_optim_new(net, &oo, 512, &opt, &err)) ...;   // validates NG settings
 *   ngt_nnet_forward(net, ws, X); ngt_nnet_backward(net, ws, y);
 *   ngt_optim_step(opt, net, ws, lr, 1.0f);
 *   ngt_optim_free(opt);
 */
#ifndef NGTRAIN_OPTIM_H
#define NGTRAIN_OPTIM_H

#include <stdint.h>

#include "ngtrain/log.h"
#include "ngtrain/ngrad.h"
#include "ngtrain/nnet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  NGT_PRECOND_NONE = 0,   /* plain SGD */
  NGT_PRECOND_ONLINE = 1, /* Kaldi's online NG-SGD (§2.3-2.5), the default */
  NGT_PRECOND_SIMPLE = 2  /* the older "simple" NG-SGD (§2.2) */
} ngt_precond_type;

typedef enum {
  NGT_OPTIMIZER_SGD = 0, /* plain or NG-SGD (--use-natural-gradient), optional momentum */
  NGT_OPTIMIZER_ADAM = 1 /* Adam on the plain gradient; NG is refused with it */
} ngt_optimizer_type;

typedef struct ngt_optim_opts {
  int optimizer;              /* --optimizer=sgd|adam (ngt_optimizer_type), default sgd */
  double momentum;            /* --momentum, SGD only, Kaldi nnet3 meaning; 0 = off */
  double adam_beta1;          /* 0.9 */
  double adam_beta2;          /* 0.999 */
  double adam_epsilon;        /* 1e-8 */
  int use_natural_gradient;   /* --use-natural-gradient, default 1 */
  int preconditioner;         /* --preconditioner=online|simple */
  int rank_in, rank_out;      /* 0 = Kaldi's min(20,(I+1)/2), min(80,(O+1)/2) */
  int update_period;          /* 4 */
  double num_samples_history; /* 2000 */
  double alpha;               /* 4 */
  double simple_alpha;        /* λ factor of the simple method, nnet2 scripts' 4 */
  float max_param_change;     /* --max-param-change, global, 2.0; 0 = off */
} ngt_optim_opts;

ngt_optim_opts ngt_optim_opts_default(void);

typedef struct ngt_optim_stats {
  int64_t steps;          /* updates attempted */
  int64_t refused;        /* steps not applied: non-finite gradient or step */
  int64_t comp_clipped;   /* (component, step) pairs where per-component max-change fired */
  int64_t comp_steps;     /* (component, step) pairs */
  int64_t global_clipped; /* steps where the global max-param-change fired */
} ngt_optim_stats;

typedef struct ngt_optim ngt_optim;

/* Resolve per-layer settings (config) over opts (command line) over Kaldi defaults and
 * validate them (rank >= dim etc. are NGT_EINVAL naming the layer). */
int ngt_optim_new(const ngt_nnet *net, const ngt_optim_opts *o, int max_rows, ngt_optim **out,
                  ngt_err *err);
void ngt_optim_free(ngt_optim *opt);
/* After ngt_nnet_forward + ngt_nnet_backward on ws: update net->params.
 * lr is the learning rate for this step (jobs x effective lrate); mpc_scale multiplies
 * the max-changes (1/sqrt(2) on iteration 0, §4.3). Returns 1 if the step was applied,
 * 0 if refused (non-finite). */
int ngt_optim_step(ngt_optim *opt, ngt_nnet *net, const ngt_nnet_ws *ws, float lr,
                   float mpc_scale);
void ngt_optim_reset_ng(ngt_optim *opt);
const ngt_optim_stats *ngt_optim_get_stats(const ngt_optim *opt);
void ngt_optim_clear_stats(ngt_optim *opt);

/* The per-worker optimiser state, flattened (for exact resume and retry): the NG state of
 * every preconditioner, then the momentum buffer (num_params, if momentum > 0), then
 * Adam's m, v (num_params each) and t. Size, save, load. */
size_t ngt_optim_state_doubles(const ngt_optim *opt);
void ngt_optim_state_save(const ngt_optim *opt, double *out);
int ngt_optim_state_load(ngt_optim *opt, const double *in, size_t n, ngt_err *err);

/* The resolved NG settings of affine component c (for logs and nninfo-like output):
 * writes e.g. "online rank-in=20 rank-out=80 update-period=4 ..." into buf. */
void ngt_optim_describe(const ngt_optim *opt, int c, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif

/* nnet.h — the network: a fixed input transform, then a list of components
 * (affine, relu, p-norm, normalize, log-softmax), forward and backward on a minibatch
 * through OpenBLAS GEMM. All trainable parameters live in ONE contiguous float block
 * (nnet->params); each affine component's W and b are views into it at fixed offsets,
 * so averaging, broadcasting, checkpointing and max-change are loops over one array.
 *
 * Dimension letters: N minibatch rows, I component input dim, O component output dim,
 * C classes.  Matrices are row-major; W is O x I (Kaldi's linear_params_), b is O.
 * The loss is cross-entropy (minimised); the reported objective is Kaldi's: average
 * log-probability of the correct class per frame (<= 0, higher is better).
 *
 * Config text (one item a line, '#' comments; docs/design.md §5.3):
 *   input  dim=40 context=-5..5
 *   layer  type=relu-renorm dim=1024     # affine + relu + normalize
 *   layer  type=pnorm dim=2000 group=10  # affine to 2000, p-norm to 200, normalize
 *   layer  type=relu dim=512             # affine + relu
 *   output dim=3000                      # affine + log-softmax
 * Optional keys on layer/output lines: bias-stddev, param-stddev, max-change,
 * learning-rate-factor, use-natural-gradient, rank-in, rank-out, update-period,
 * num-samples-history, alpha (the NG keys are Kaldi's NaturalGradientAffineComponent
 * names). Defaults: see ngt_nnet_from_config.
 *
 *   ngt_nnet *net;
 *   if (ngt_nnet_from_config(text, "nnet.cfg", &net, &err)) ngt_die("%s", err.msg);
 *   ngt_nnet_init_params(net, seed);
 *   ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 512);
 *   ngt_nnet_forward(net, ws, X);  double lp = ngt_nnet_objective(net, ws, labels, &ncorr);
 *   ngt_nnet_backward(net, ws, labels);   // fills ws->deriv[c] for every component
 *   ngt_nnet_ws_free(ws); ngt_nnet_free(net);
 */
#ifndef NGTRAIN_NNET_H
#define NGTRAIN_NNET_H

#include <stddef.h>
#include <stdint.h>

#include "ngtrain/log.h"
#include "ngtrain/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Stored in model files: append-only, never renumber. */
typedef enum ngt_comp_type {
  NGT_COMP_AFFINE = 1,
  NGT_COMP_RELU = 2,
  NGT_COMP_PNORM = 3,     /* groups of `group` inputs -> one output, p = 2 */
  NGT_COMP_NORMALIZE = 4, /* Kaldi NormalizeComponent, target RMS 1 (§4.7) */
  NGT_COMP_LOGSOFTMAX = 5
} ngt_comp_type;

/* Input transforms (§4.9). Stored in model files: append-only. */
typedef enum ngt_transform_type {
  NGT_TRANSFORM_NONE = 0,
  NGT_TRANSFORM_LDA = 1,
  NGT_TRANSFORM_CMVN = 2
} ngt_transform_type;

/* Per-layer natural-gradient settings from the config; "unset" values defer to the
 * command line, then to Kaldi's defaults (resolved by optim). */
typedef struct ngt_layer_ng {
  int use_ng;                 /* -1 unset, 0 off, 1 on */
  int rank_in, rank_out;      /* 0 unset (Kaldi: min(20,(I+1)/2), min(80,(O+1)/2)) */
  int update_period;          /* 0 unset (4) */
  double num_samples_history; /* 0 unset (2000) */
  double alpha;               /* < 0 unset (4) */
} ngt_layer_ng;

typedef struct ngt_comp {
  ngt_comp_type type;
  int in_dim, out_dim;
  int layer; /* which config line (0-based over layer/output lines) made it */
  /* NGT_COMP_AFFINE only: */
  size_t w_off;       /* W = params + w_off, O x I row-major */
  size_t b_off;       /* b = params + b_off, O */
  float param_stddev; /* init stddev of W; default 1/sqrt(I); output layer 0 */
  float bias_stddev;  /* init stddev of b; default 0.5 (nnet2 paper); output layer 0 */
  float max_change;   /* per-component max-change (§3.3); 0 = off; default 0.75 hidden,
                          1.5 output (xconfig) */
  float lr_factor;    /* learning-rate-factor, default 1 */
  ngt_layer_ng ng;
  /* NGT_COMP_PNORM only: */
  int group; /* inputs per output (G) */
} ngt_comp;

typedef struct ngt_nnet {
  int feat_dim;    /* raw frame dim D (input line's dim) */
  int ctx_left;    /* L >= 0: frames t-L .. t+R are spliced */
  int ctx_right;   /* R >= 0 */
  int input_dim;   /* spliced dim = feat_dim * (L + R + 1) */
  int num_classes; /* C = output dim */
  int num_layers;  /* config layer + output lines */
  int num_comps;
  ngt_comp *comps;   /* owned */
  size_t num_params; /* trainable floats */
  float *params;     /* owned, num_params floats, 64-byte aligned */
  /* Fixed input transform (§4.9), never trained and NOT part of params:
   * input_dim x (input_dim + 1) row-major [M, m] so that x' = M x + m; NULL = none. */
  int transform_type; /* ngt_transform_type */
  float *transform;   /* owned or NULL */
  float *priors;      /* owned, C class priors summing to 1, or NULL */
  char *config_text;  /* owned copy of the config text */
} ngt_nnet;

/* Parse config text (source names it in messages, e.g. the file name) and build the
 * structure with all parameters zero. Errors name source, line number, key and value:
 *   "nnet.cfg:3: unknown layer type 'rleu' (known: relu, relu-renorm, pnorm)". */
int ngt_nnet_from_config(const char *text, const char *source, ngt_nnet **out, ngt_err *err);
/* Read the config file at path and call ngt_nnet_from_config. */
int ngt_nnet_from_config_file(const char *path, ngt_nnet **out, ngt_err *err);
void ngt_nnet_free(ngt_nnet *net);            /* NULL-tolerant */
ngt_nnet *ngt_nnet_copy(const ngt_nnet *net); /* deep copy; caller frees */

/* Kaldi-like initialisation from a seed (rng stream NGT_RNG_STREAM_INIT):
 * W ~ N(0, param_stddev^2), b ~ N(0, bias_stddev^2); output layer zero by default. */
void ngt_nnet_init_params(ngt_nnet *net, uint64_t seed);

/* 1 if a and b have the same components, dims, offsets and transform type; otherwise 0
 * and `why` (if non-NULL) names the first difference. */
int ngt_nnet_same_structure(const ngt_nnet *a, const ngt_nnet *b, char *why, size_t whylen);
/* The same with flags: NGT_NNET_CMP_IGNORE_TRANSFORM leaves the transform type out (a
 * checkpoint decides the transform of the run that resumes it). */
enum { NGT_NNET_CMP_IGNORE_TRANSFORM = 1 };
int ngt_nnet_compare_structure(const ngt_nnet *a, const ngt_nnet *b, int flags, char *why,
                               size_t whylen);

/* Views of an affine component's parameters in net->params (or in another buffer of
 * the same layout, e.g. a delta: pass base = that buffer). */
ngt_mat ngt_nnet_W(const ngt_nnet *net, float *base, int c);
float *ngt_nnet_b(const ngt_nnet *net, float *base, int c);

/* Install a fixed input transform (copied): T is input_dim x (input_dim+1). */
void ngt_nnet_set_transform(ngt_nnet *net, int type, const float *T);
/* Install class priors (copied, C values). */
void ngt_nnet_set_priors(ngt_nnet *net, const float *priors);

/* Forward/backward workspace for minibatches of up to max_rows rows. */
typedef struct ngt_nnet_ws {
  int max_rows;
  int rows;       /* rows of the last forward */
  ngt_mat in;     /* N x input_dim: the input after the fixed transform */
  ngt_mat *out;   /* [num_comps] N x O: output of component c; out[last] = log-probs */
  ngt_mat *deriv; /* [num_comps] N x O: d(loss)/d(out of c), filled by backward */
  float *scratch; /* private */
  /* Precision of the GEMMs (engine.h), fixed at creation from ngt_engine_precision().
   * bf16 only: bf16 copies, row-major with stride = cols, of each affine component's
   * input (filled by forward), output derivative (filled by backward) and W (refreshed
   * by every forward: once per step). NULL entries for other components. */
  int precision;
  uint16_t **in_bf;     /* [num_comps] N x I */
  uint16_t **d_bf;      /* [num_comps] N x O */
  uint16_t **w_bf;      /* [num_comps] O x I */
  uint16_t *bf_scratch; /* private */
} ngt_nnet_ws;

ngt_nnet_ws *ngt_nnet_ws_new(const ngt_nnet *net, int max_rows);
void ngt_nnet_ws_free(ngt_nnet_ws *ws);
/* Input of component c in the last forward (ws->in for c == 0). */
ngt_mat ngt_nnet_ws_input(const ngt_nnet_ws *ws, int c);

/* X: N x input_dim spliced frames (N <= max_rows). Applies the transform, then every
 * component. The log-probabilities are ws->out[num_comps-1] (N x C). */
void ngt_nnet_forward(const ngt_nnet *net, ngt_nnet_ws *ws, ngt_mat X);
/* After forward: sum over rows of log p(label) (<= 0, double) and, if num_correct is
 * non-NULL, the number of rows whose argmax is the label. */
double ngt_nnet_objective(const ngt_nnet *net, const ngt_nnet_ws *ws, const int32_t *labels,
                          int *num_correct);
/* After forward: derivatives of loss = -sum log p(label) w.r.t. every component's
 * output (ws->deriv), down to the first affine component's output. The derivative
 * w.r.t. the network input is not computed. */
void ngt_nnet_backward(const ngt_nnet *net, ngt_nnet_ws *ws, const int32_t *labels);
/* After backward: the exact gradient of the summed loss w.r.t. params, written into
 * grad (num_params floats, same layout): dW = G^T X, db = sum of rows of G. */
void ngt_nnet_gradient(const ngt_nnet *net, const ngt_nnet_ws *ws, float *grad);

/* Human-readable name of a component type ("affine", ...). */
const char *ngt_comp_type_name(int type);

#ifdef __cplusplus
}
#endif
#endif

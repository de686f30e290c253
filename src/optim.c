/* optim.c — one minibatch update; see include/ngtrain/optim.h and docs/algorithm.md §3.
 *
 * Per affine component c with input X (N x I) and output derivative G (N x O):
 *   plain:   Δ_c = [Gᵀ X, Gᵀ 1]
 *   online:  X̃ = [X, 1] → X̂, γ_in;  G → Ĝ, γ_out;  Δ_c = γ_in γ_out [Ĝᵀ X̂[:, :I], Ĝᵀ X̂[:, I]]
 *            (§3.1: the bias is preconditioned through the appended column)
 *   simple:  the same with the stateless §2.2 method (γ folded into X̂, Ĝ).
 * Max-change (§3.3): n_c = lr·lrf_c·‖Δ_c‖_F; f_c = min(1, m_c/n_c);
 *   P = sqrt(Σ f_c² n_c²); scale = min(1, M/P); refuse if P is not finite;
 *   θ_c -= scale·f_c·lr·lrf_c·Δ_c.
 * Momentum μ > 0 (Kaldi nnet3 NnetTrainer: delta_nnet accumulates the lr-scaled
 * gradients, UpdateNnetWithMaxChange applies it scaled by 1-μ, then it is scaled by μ):
 *   D_c += lr·lrf_c·Δ_c; n_c = (1-μ)‖D_c‖; ...; θ_c -= scale·f_c·(1-μ)·D_c; D_c *= μ.
 * Adam (on the plain Δ, t = this worker's applied steps):
 *   m = β1 m + (1-β1)Δ; v = β2 v + (1-β2)Δ²; S = (m/(1-β1^t)) / (sqrt(v/(1-β2^t)) + ε);
 *   n_c = lr·lrf_c·‖S_c‖; ...; θ_c -= scale·f_c·lr·lrf_c·S_c.
 */
#include "ngtrain/optim.h"

#include <cblas.h>
#undef I /* complex.h, pulled in by openblas_config.h, defines I */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ngtrain/engine.h"

typedef struct ng_layer {
  int comp; /* index into net->comps */
  int I, O;
  int use_ng;        /* resolved */
  int precond;       /* ngt_precond_type */
  ngt_ngrad in, out; /* online state (initialised only if precond == ONLINE) */
  double norm2;      /* ‖Δ_c‖² of the current step */
  double dscale;     /* Δ_c = dscale × opt->delta's block (the fused path's γ, else 1) */
} ng_layer;

struct ngt_optim {
  ngt_optim_opts o;
  int n_layers;
  ng_layer *layers;
  int max_rows;
  size_t num_params;
  float *delta;        /* num_params: unscaled Δ in the params layout (Adam: the step S) */
  float *mom;          /* num_params: momentum buffer D (NULL if momentum == 0) */
  float *am, *av;      /* num_params: Adam's moments (NULL unless Adam) */
  double at;           /* Adam: steps taken (bias correction) */
  ngt_mat xt;          /* max_rows x (maxI+1): [X, 1] scratch */
  ngt_mat gt;          /* max_rows x maxO: G scratch */
  float *ones;         /* max_rows ones */
  uint16_t *xbf, *gbf; /* bf16 workspaces: max_rows x maxI, max_rows x maxO (bf16 NG path) */
  /* the fused bf16 NG path, one set per thread (layers run in parallel, see ngt_optim_step):
   * X^ and G^ in bf16, and the input side's ones column x^_I */
  int n_scratch;
  uint16_t **sxbf, **sgbf;
  float **sxlast;
  ngt_mat *sxt, *sgt; /* fp32 (and simple) path: [X, 1] and G copies per thread; [0] = xt, gt */
  int *order;         /* layers by decreasing size, the order they are handed to threads */
  int maxI, maxO;
  int has_online; /* some layer uses the online preconditioner */
  int has_simple; /* some layer uses the simple method (its scratch is shared: no threads) */
  ngt_optim_stats stats;
};

ngt_optim_opts ngt_optim_opts_default(void) {
  ngt_optim_opts o;
  memset(&o, 0, sizeof o);
  o.use_natural_gradient = 1;
  o.preconditioner = NGT_PRECOND_ONLINE;
  o.rank_in = 0;
  o.rank_out = 0;
  o.update_period = 4;
  o.num_samples_history = 2000.0;
  o.alpha = 4.0;
  o.simple_alpha = 4.0;
  o.max_param_change = 2.0f;
  o.optimizer = NGT_OPTIMIZER_SGD;
  o.momentum = 0.0;
  o.adam_beta1 = 0.9;
  o.adam_beta2 = 0.999;
  o.adam_epsilon = 1e-8;
  return o;
}

static ngt_ngrad_opts side_opts(const ngt_optim_opts *o, const ngt_layer_ng *l, int dim,
                                int default_rank_cap, int rank_cfg, int rank_cli) {
  ngt_ngrad_opts g = ngt_ngrad_opts_default();
  int r = rank_cfg > 0 ? rank_cfg : rank_cli > 0 ? rank_cli : 0;
  if (r == 0) { /* Kaldi d1d849ca4: min(20, (in+1)/2), min(80, (out+1)/2); dim here is the
                    side's dimension (I+1 or O) so (dim+1)/2 is computed on the layer dims */
    r = (dim + 1) / 2;
    if (r > default_rank_cap) r = default_rank_cap;
    if (r < 1) r = 1;
  }
  g.rank = r;
  g.update_period = l->update_period > 0 ? l->update_period : o->update_period;
  g.num_samples_history = l->num_samples_history > 0 ? l->num_samples_history
                                                     : o->num_samples_history;
  g.alpha = l->alpha >= 0 ? l->alpha : o->alpha;
  return g;
}

int ngt_optim_new(const ngt_nnet *net, const ngt_optim_opts *o, int max_rows, ngt_optim **out,
                  ngt_err *err) {
  *out = NULL;
  if (o->preconditioner < NGT_PRECOND_NONE || o->preconditioner > NGT_PRECOND_SIMPLE)
    return ngt_err_set(err, NGT_EINVAL, "unknown preconditioner %d", o->preconditioner);
  if (o->max_param_change < 0)
    return ngt_err_set(err, NGT_EINVAL, "--max-param-change=%g must be >= 0 (0 disables it)",
                       (double)o->max_param_change);
  if (o->simple_alpha < 0)
    return ngt_err_set(err, NGT_EINVAL, "simple-method alpha %g must be >= 0", o->simple_alpha);
  if (o->optimizer != NGT_OPTIMIZER_SGD && o->optimizer != NGT_OPTIMIZER_ADAM)
    return ngt_err_set(err, NGT_EINVAL, "unknown optimizer %d", o->optimizer);
  if (!(o->momentum >= 0 && o->momentum < 1))
    return ngt_err_set(err, NGT_EINVAL, "--momentum=%g must be in [0, 1)", o->momentum);
  const int adam = o->optimizer == NGT_OPTIMIZER_ADAM;
  if (adam) {
    if (o->momentum != 0)
      return ngt_err_set(err, NGT_EINVAL,
                         "--momentum=%g is for --optimizer=sgd; Adam's momentum is --adam-beta1",
                         o->momentum);
    if (!(o->adam_beta1 >= 0 && o->adam_beta1 < 1) || !(o->adam_beta2 >= 0 && o->adam_beta2 < 1))
      return ngt_err_set(err, NGT_EINVAL, "--adam-beta1=%g and --adam-beta2=%g must be in [0, 1)",
                         o->adam_beta1, o->adam_beta2);
    if (!(o->adam_epsilon > 0))
      return ngt_err_set(err, NGT_EINVAL, "--adam-epsilon=%g must be > 0", o->adam_epsilon);
  }
  ngt_optim *opt = ngt_xcalloc(1, sizeof *opt);
  opt->o = *o;
  opt->max_rows = max_rows;
  opt->num_params = net->num_params;
  int n = 0, maxI = 1, maxO = 1;
  for (int c = 0; c < net->num_comps; c++)
    if (net->comps[c].type == NGT_COMP_AFFINE) n++;
  opt->layers = ngt_xcalloc((size_t)n, sizeof *opt->layers);
  opt->n_layers = n;
  int k = 0;
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    if (cp->type != NGT_COMP_AFFINE) continue;
    NGT_ASSERT(cp->b_off == cp->w_off + (size_t)cp->in_dim * (size_t)cp->out_dim);
    ng_layer *L = &opt->layers[k++];
    L->comp = c;
    L->I = cp->in_dim;
    L->O = cp->out_dim;
    if (L->I > maxI) maxI = L->I;
    if (L->O > maxO) maxO = L->O;
    L->use_ng = cp->ng.use_ng >= 0 ? cp->ng.use_ng : o->use_natural_gradient;
    if (adam && L->use_ng) {
      ngt_optim_free(opt);
      return ngt_err_set(err, NGT_EINVAL,
                         "--optimizer=adam does not combine with natural gradient (layer %d "
                         "uses it): add --use-natural-gradient=false and drop use-ng=true from "
                         "the config",
                         cp->layer + 1);
    }
    L->precond = L->use_ng ? o->preconditioner : NGT_PRECOND_NONE;
    if (L->precond != NGT_PRECOND_ONLINE) continue;
    char what[160];
    /* rank defaults are computed from the layer dims: min(20,(I+1)/2), min(80,(O+1)/2) */
    ngt_ngrad_opts gi = side_opts(o, &cp->ng, L->I, 20, cp->ng.rank_in, o->rank_in);
    ngt_ngrad_opts go = side_opts(o, &cp->ng, L->O, 80, cp->ng.rank_out, o->rank_out);
    snprintf(what, sizeof what, "layer %d (affine %d->%d) input side (dim %d = in+1)",
             cp->layer + 1, L->I, L->O, L->I + 1);
    int rc = ngt_ngrad_opts_check(&gi, L->I + 1, what, err);
    if (!rc) rc = ngt_ngrad_init(&L->in, L->I + 1, &gi, err);
    L->in.bf16 = ngt_engine_precision() == NGT_PREC_BF16;
    if (!rc) {
      snprintf(what, sizeof what, "layer %d (affine %d->%d) output side (dim %d)", cp->layer + 1,
               L->I, L->O, L->O);
      rc = ngt_ngrad_opts_check(&go, L->O, what, err);
      if (!rc) rc = ngt_ngrad_init(&L->out, L->O, &go, err);
      L->out.bf16 = ngt_engine_precision() == NGT_PREC_BF16;
    }
    if (rc) {
      ngt_optim_free(opt);
      return rc;
    }
  }
  const size_t np = net->num_params ? net->num_params : 1;
  opt->delta = ngt_xcalloc(np, sizeof(float));
  if (!adam && o->momentum > 0) opt->mom = ngt_xcalloc(np, sizeof(float));
  if (adam) {
    opt->am = ngt_xcalloc(np, sizeof(float));
    opt->av = ngt_xcalloc(np, sizeof(float));
  }
  opt->xt = ngt_mat_alloc(max_rows, maxI + 1);
  opt->gt = ngt_mat_alloc(max_rows, maxO);
  opt->ones = ngt_xmalloc(sizeof(float) * (size_t)max_rows);
  for (int i = 0; i < max_rows; i++) opt->ones[i] = 1.0f;
  opt->maxI = maxI;
  opt->maxO = maxO;
  int online = 0, simple = 0;
  opt->order = ngt_xmalloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
  for (int i = 0; i < n; i++) {
    online |= opt->layers[i].precond == NGT_PRECOND_ONLINE;
    simple |= opt->layers[i].precond == NGT_PRECOND_SIMPLE;
    /* insertion by decreasing size O (I + 1), stable */
    int j = i;
    size_t sz = (size_t)opt->layers[i].O * (size_t)(opt->layers[i].I + 1);
    for (; j > 0; j--) {
      const ng_layer *P = &opt->layers[opt->order[j - 1]];
      if ((size_t)P->O * (size_t)(P->I + 1) >= sz) break;
      opt->order[j] = opt->order[j - 1];
    }
    opt->order[j] = i;
  }
  opt->has_online = online;
  opt->has_simple = simple;
  *out = opt;
  return 0;
}

void ngt_optim_free(ngt_optim *opt) {
  if (!opt) return;
  for (int k = 0; k < opt->n_layers; k++)
    if (opt->layers[k].precond == NGT_PRECOND_ONLINE) {
      ngt_ngrad_deinit(&opt->layers[k].in);
      ngt_ngrad_deinit(&opt->layers[k].out);
    }
  free(opt->layers);
  free(opt->delta);
  free(opt->mom);
  free(opt->am);
  free(opt->av);
  ngt_mat_free(&opt->xt);
  ngt_mat_free(&opt->gt);
  free(opt->ones);
  free(opt->xbf);
  free(opt->gbf);
  for (int t = 0; t < opt->n_scratch; t++) {
    free(opt->sxbf[t]);
    free(opt->sgbf[t]);
    free(opt->sxlast[t]);
    if (t > 0 && opt->sxt[t].data) {
      ngt_mat_free(&opt->sxt[t]);
      ngt_mat_free(&opt->sgt[t]);
    }
  }
  free(opt->sxt);
  free(opt->sgt);
  free(opt->sxbf);
  free(opt->sgbf);
  free(opt->sxlast);
  free(opt->order);
  free(opt);
}

void ngt_optim_reset_ng(ngt_optim *opt) {
  for (int k = 0; k < opt->n_layers; k++)
    if (opt->layers[k].precond == NGT_PRECOND_ONLINE) {
      ngt_ngrad_reset(&opt->layers[k].in);
      ngt_ngrad_reset(&opt->layers[k].out);
    }
}

const ngt_optim_stats *ngt_optim_get_stats(const ngt_optim *opt) { return &opt->stats; }
void ngt_optim_clear_stats(ngt_optim *opt) { memset(&opt->stats, 0, sizeof opt->stats); }

static int thread_num(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/* Per-thread scratch for `n` threads (grown, never shrunk), of the kind the step needs: the
 * fused bf16 path's, or the fp32 path's copies of [X, 1] and G (thread 0 uses opt->xt and
 * opt->gt; sxt[t].data == NULL: not made yet). */
static void ensure_scratch(ngt_optim *opt, int n, int bf16) {
  if (n > opt->n_scratch) {
    opt->sxbf = realloc(opt->sxbf, sizeof(uint16_t *) * (size_t)n);
    opt->sgbf = realloc(opt->sgbf, sizeof(uint16_t *) * (size_t)n);
    opt->sxlast = realloc(opt->sxlast, sizeof(float *) * (size_t)n);
    opt->sxt = realloc(opt->sxt, sizeof(ngt_mat) * (size_t)n);
    opt->sgt = realloc(opt->sgt, sizeof(ngt_mat) * (size_t)n);
    if (!opt->sxbf || !opt->sgbf || !opt->sxlast || !opt->sxt || !opt->sgt)
      ngt_die("out of memory");
    for (int t = opt->n_scratch; t < n; t++) {
      opt->sxbf[t] = opt->sgbf[t] = NULL;
      opt->sxlast[t] = NULL;
      memset(&opt->sxt[t], 0, sizeof(ngt_mat));
      memset(&opt->sgt[t], 0, sizeof(ngt_mat));
    }
    opt->n_scratch = n;
  }
  for (int t = 0; t < n; t++) {
    if (bf16 && !opt->sxbf[t]) {
      opt->sxbf[t] = ngt_xmalloc(sizeof(uint16_t) * (size_t)opt->max_rows * (size_t)opt->maxI);
      opt->sgbf[t] = ngt_xmalloc(sizeof(uint16_t) * (size_t)opt->max_rows * (size_t)opt->maxO);
      opt->sxlast[t] = ngt_xmalloc(sizeof(float) * (size_t)opt->max_rows);
    }
    if (!bf16 && !opt->sxt[t].data) {
      opt->sxt[t] = t == 0 ? opt->xt : ngt_mat_alloc(opt->max_rows, opt->maxI + 1);
      opt->sgt[t] = t == 0 ? opt->gt : ngt_mat_alloc(opt->max_rows, opt->maxO);
    }
  }
}

/* Δ_c (unscaled except for γ) into opt->delta at the component's offsets, or (fused bf16 path)
 * Δ_c / γ there and γ in L->dscale, which the step multiplies in, so no pass rewrites the
 * block; returns ‖Δ_c‖². */
static double layer_delta(ngt_optim *opt, ng_layer *L, const ngt_nnet *net, const ngt_nnet_ws *ws,
                          int tid) {
  const ngt_comp *cp = &net->comps[L->comp];
  const int N = ws->rows, I = L->I, O = L->O;
  L->dscale = 1.0;
  ngt_mat X = ngt_nnet_ws_input(ws, L->comp);                 /* N x I */
  ngt_mat G = ws->deriv[L->comp];                             /* N x O */
  ngt_mat dW = ngt_mat_view(opt->delta + cp->w_off, O, I, I); /* O x I */
  float *db = opt->delta + cp->b_off;                         /* O */
  const int bf16 = ws->precision == NGT_PREC_BF16;
  if (L->precond == NGT_PRECOND_NONE) {
    /* bf16: the copies forward and backward made of X and G. */
    if (bf16)
      ngt_gemm_bf16(1, 0, O, I, N, ws->d_bf[L->comp], O, ws->in_bf[L->comp], I, NULL, dW.data, I);
    else
      ngt_gemm(1, 0, 1.0f, G, X, 0.0f, dW);
    cblas_sgemv(CblasRowMajor, CblasTrans, N, O, 1.0f, G.data, G.stride, opt->ones, 1, 0.0f, db,
                1);
  } else if (bf16 && L->precond == NGT_PRECOND_ONLINE && !opt->has_simple) {
    /* Fused (docs/algorithm.md §3.5): no copies of X and G; Ĝ's pass also sums the bias
     * gradient Ĝᵀ x̂_I, and γ scales Δ in the norm pass below. Scratch of thread `tid`. */
    uint16_t *xbf = opt->sxbf[tid], *gbf = opt->sgbf[tid];
    float gin = 1.0f, gout = 1.0f, *xlast = opt->sxlast[tid];
    ngt_ngrad_bf16_io in = {.X = X,
                            .Xb = ws->in_bf[L->comp],
                            .ldxb = I,
                            .ones = 1,
                            .out = xbf,
                            .ldo = I,
                            .last = xlast};
    ngt_ngrad_precondition_bf16(&L->in, &in, &gin);
    memset(db, 0, sizeof(float) * (size_t)O);
    ngt_ngrad_bf16_io out = {
        .X = G, .Xb = ws->d_bf[L->comp], .ldxb = O, .out = gbf, .ldo = O, .c = xlast, .v = db};
    ngt_ngrad_precondition_bf16(&L->out, &out, &gout);
    ngt_gemm_bf16(1, 0, O, I, N, gbf, O, xbf, I, NULL, dW.data, I);
    L->dscale = (double)gin * (double)gout;
    return ngt_vec_norm2(opt->delta + cp->w_off, (size_t)O * (size_t)(I + 1)) * L->dscale *
           L->dscale;
  } else {
    ngt_mat Xt = ngt_mat_view(opt->sxt[tid].data, N, I + 1, I + 1); /* [X, 1] */
    for (int n = 0; n < N; n++) {
      memcpy(&NGT_AT(Xt, n, 0), &NGT_AT(X, n, 0), sizeof(float) * (size_t)I);
      NGT_AT(Xt, n, I) = 1.0f;
    }
    ngt_mat Gt = ngt_mat_view(opt->sgt[tid].data, N, O, O);
    ngt_mat_copy(Gt, G);
    float gin = 1.0f, gout = 1.0f;
    if (L->precond == NGT_PRECOND_ONLINE) {
      ngt_ngrad_precondition(&L->in, Xt, &gin);
      ngt_ngrad_precondition(&L->out, Gt, &gout);
    } else {
      ngt_err e = {0};
      if (ngt_ngrad_simple_precondition(Xt, opt->o.simple_alpha, &e) ||
          ngt_ngrad_simple_precondition(Gt, opt->o.simple_alpha, &e))
        return NAN; /* refused by the caller */
    }
    float g = gin * gout;
    if (bf16) { /* γ folded into the rounding of Ĝ */
      if (!opt->xbf) {
        opt->xbf = ngt_xmalloc(sizeof(uint16_t) * (size_t)opt->max_rows * (size_t)opt->maxI);
        opt->gbf = ngt_xmalloc(sizeof(uint16_t) * (size_t)opt->max_rows * (size_t)opt->maxO);
      }
      ngt_bf16_from_f32(opt->xbf, I, Xt.data, Xt.stride, N, I, 1.0f);
      ngt_bf16_from_f32(opt->gbf, O, Gt.data, Gt.stride, N, O, g);
      ngt_gemm_bf16(1, 0, O, I, N, opt->gbf, O, opt->xbf, I, NULL, dW.data, I);
    } else {
      ngt_gemm(1, 0, g, Gt, ngt_mat_cols(Xt, 0, I), 0.0f, dW);
    }
    cblas_sgemv(CblasRowMajor, CblasTrans, N, O, g, Gt.data, Gt.stride, &NGT_AT(Xt, 0, I), I + 1,
                0.0f, db, 1);
  }
  return ngt_vec_norm2(opt->delta + cp->w_off, (size_t)O * (size_t)(I + 1));
}

/* Adam: moments from Δ (already known finite), the step S into opt->delta; t += 1. */
static void adam_update(ngt_optim *opt, const ngt_nnet *net) {
  const double b1 = opt->o.adam_beta1, b2 = opt->o.adam_beta2, eps = opt->o.adam_epsilon;
  opt->at += 1.0;
  const double c1 = 1.0 / (1.0 - pow(b1, opt->at)), c2 = 1.0 / (1.0 - pow(b2, opt->at));
  for (int k = 0; k < opt->n_layers; k++) {
    const ngt_comp *cp = &net->comps[opt->layers[k].comp];
    size_t n = (size_t)opt->layers[k].O * (size_t)(opt->layers[k].I + 1);
    float *d = opt->delta + cp->w_off, *m = opt->am + cp->w_off, *v = opt->av + cp->w_off;
    for (size_t i = 0; i < n; i++) {
      double g = (double)d[i];
      m[i] = (float)(b1 * (double)m[i] + (1.0 - b1) * g);
      v[i] = (float)(b2 * (double)v[i] + (1.0 - b2) * g * g);
      d[i] = (float)((double)m[i] * c1 / (sqrt((double)v[i] * c2) + eps));
    }
  }
}

int ngt_optim_step(ngt_optim *opt, ngt_nnet *net, const ngt_nnet_ws *ws, float lr,
                   float mpc_scale) {
  NGT_ASSERT(ws->rows <= opt->max_rows);
  opt->stats.steps++;
  const int adam = opt->am != NULL;
  const double mu = opt->o.momentum, omu = 1.0 - mu;
  /* With T > 1 threads (and no layer on the simple method, whose scratch is shared) the
   * layers' Δ (their NG calls, Fisher updates included, gradient GEMMs and norms) run on the
   * T threads at once, one layer per thread, largest first; each layer's work is then
   * single-threaded and the same whichever thread takes it. Otherwise one layer after
   * another, each using the T threads inside its GEMMs. Measured on 2 cores (bench_step,
   * paired, bf16): NG 2 threads / 1 1.45-1.58 before, 1.67-1.81 after. */
  const int T = ngt_omp_threads();
  /* the fused bf16 path: online NG and no simple method (whose path copies, as fp32 does) */
  const int fused = opt->has_online && !opt->has_simple && ws->precision == NGT_PREC_BF16;
  const int par = !opt->has_simple && T > 1 && opt->n_layers > 1;
  if (opt->has_online || opt->has_simple) ensure_scratch(opt, par ? T : 1, fused);
  if (par) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
#endif
    for (int i = 0; i < opt->n_layers; i++) {
      ng_layer *L = &opt->layers[opt->order[i]];
      L->norm2 = layer_delta(opt, L, net, ws, thread_num()); /* ‖Δ_c‖² */
    }
  } else {
    for (int k = 0; k < opt->n_layers; k++) {
      ng_layer *L = &opt->layers[k];
      L->norm2 = layer_delta(opt, L, net, ws, 0); /* ‖Δ_c‖² */
    }
  }
  if (adam) { /* moments only from a finite gradient */
    for (int k = 0; k < opt->n_layers; k++)
      if (!isfinite(opt->layers[k].norm2)) {
        opt->stats.refused++;
        return 0;
      }
    adam_update(opt, net);
  }
  double P2 = 0.0;
  int finite = 1;
  for (int k = 0; k < opt->n_layers; k++) {
    ng_layer *L = &opt->layers[k];
    const ngt_comp *cp = &net->comps[L->comp];
    size_t len = (size_t)L->O * (size_t)(L->I + 1);
    double d2 = L->norm2;
    double s = (double)lr * (double)cp->lr_factor;
    double nc; /* n_c: Frobenius norm of this component's step */
    if (opt->mom) {
      nc = NAN;
      if (isfinite(d2)) {
        cblas_saxpy((int)len, (float)(s * L->dscale), opt->delta + cp->w_off, 1,
                    opt->mom + cp->w_off, 1);
        nc = omu * sqrt(ngt_vec_norm2(opt->mom + cp->w_off, len));
      }
    } else {
      if (adam) d2 = ngt_vec_norm2(opt->delta + cp->w_off, len);
      nc = s * sqrt(d2);
    }
    if (!isfinite(nc)) {
      finite = 0;
      L->norm2 = NAN;
      continue;
    }
    double f = 1.0;
    double mc = (double)cp->max_change * (double)mpc_scale;
    opt->stats.comp_steps++;
    if (cp->max_change > 0 && nc > mc) {
      f = mc / nc;
      opt->stats.comp_clipped++;
    }
    L->norm2 = f; /* reuse: per-component factor f_c */
    P2 += f * f * nc * nc;
  }
  if (!finite || !isfinite(P2)) {
    opt->stats.refused++;
    if (opt->mom) memset(opt->mom, 0, sizeof(float) * opt->num_params); /* Kaldi: delta = 0 */
    return 0;
  }
  double P = sqrt(P2), scale = 1.0;
  double M = (double)opt->o.max_param_change * (double)mpc_scale;
  if (opt->o.max_param_change > 0 && P > M) {
    scale = M / P;
    opt->stats.global_clipped++;
  }
  for (int k = 0; k < opt->n_layers; k++) {
    ng_layer *L = &opt->layers[k];
    const ngt_comp *cp = &net->comps[L->comp];
    size_t n = (size_t)L->O * (size_t)(L->I + 1);
    if (opt->mom) {
      float a = (float)(-scale * L->norm2 * omu);
      cblas_saxpy((int)n, a, opt->mom + cp->w_off, 1, net->params + cp->w_off, 1);
      cblas_sscal((int)n, (float)mu, opt->mom + cp->w_off, 1);
    } else {
      float a = (float)(-scale * L->norm2 * (double)lr * (double)cp->lr_factor * L->dscale);
      cblas_saxpy((int)n, a, opt->delta + cp->w_off, 1, net->params + cp->w_off, 1);
    }
  }
  return 1;
}

size_t ngt_optim_state_doubles(const ngt_optim *opt) {
  size_t n = 0;
  for (int k = 0; k < opt->n_layers; k++)
    if (opt->layers[k].precond == NGT_PRECOND_ONLINE)
      n += ngt_ngrad_state_doubles(&opt->layers[k].in) +
           ngt_ngrad_state_doubles(&opt->layers[k].out);
  if (opt->mom) n += opt->num_params;
  if (opt->am) n += 2 * opt->num_params + 1;
  return n;
}

void ngt_optim_state_save(const ngt_optim *opt, double *out) {
  for (int k = 0; k < opt->n_layers; k++) {
    const ng_layer *L = &opt->layers[k];
    if (L->precond != NGT_PRECOND_ONLINE) continue;
    ngt_ngrad_state_save(&L->in, out);
    out += ngt_ngrad_state_doubles(&L->in);
    ngt_ngrad_state_save(&L->out, out);
    out += ngt_ngrad_state_doubles(&L->out);
  }
  for (size_t i = 0; opt->mom && i < opt->num_params; i++) *out++ = (double)opt->mom[i];
  for (size_t i = 0; opt->am && i < opt->num_params; i++) *out++ = (double)opt->am[i];
  for (size_t i = 0; opt->am && i < opt->num_params; i++) *out++ = (double)opt->av[i];
  if (opt->am) *out++ = opt->at;
}

/* fp32 values stored as doubles: n of them from in into dst; 0 if all are fp32-exact. */
static int load_floats(float *dst, const double *in, size_t n) {
  for (size_t i = 0; i < n; i++) {
    dst[i] = (float)in[i];
    if (!((double)dst[i] == in[i])) return 1;
  }
  return 0;
}

int ngt_optim_state_load(ngt_optim *opt, const double *in, size_t n, ngt_err *err) {
  size_t used = 0;
  for (int k = 0; k < opt->n_layers; k++) {
    ng_layer *L = &opt->layers[k];
    if (L->precond != NGT_PRECOND_ONLINE) continue;
    size_t a = ngt_ngrad_state_doubles(&L->in);
    if (used + a > n || ngt_ngrad_state_load(&L->in, in + used, a, err))
      return err && err->code ? err->code : ngt_err_set(err, NGT_EFORMAT, "NG state too short");
    used += a;
    size_t b = ngt_ngrad_state_doubles(&L->out);
    if (used + b > n || ngt_ngrad_state_load(&L->out, in + used, b, err))
      return err && err->code ? err->code : ngt_err_set(err, NGT_EFORMAT, "NG state too short");
    used += b;
  }
  size_t extra = (opt->mom ? opt->num_params : 0) + (opt->am ? 2 * opt->num_params + 1 : 0);
  if (used + extra != n)
    return ngt_err_set(err, NGT_EFORMAT, "optimiser state has %zu values, expected %zu", n,
                       used + extra);
  if (opt->mom && load_floats(opt->mom, in + used, opt->num_params))
    return ngt_err_set(err, NGT_EFORMAT, "momentum state: a value is not an fp32 number");
  if (opt->mom) used += opt->num_params;
  if (opt->am) {
    if (load_floats(opt->am, in + used, opt->num_params) ||
        load_floats(opt->av, in + used + opt->num_params, opt->num_params))
      return ngt_err_set(err, NGT_EFORMAT, "Adam state: a moment is not an fp32 number");
    used += 2 * opt->num_params;
    double t = in[used++];
    if (!(t >= 0 && t == floor(t)))
      return ngt_err_set(err, NGT_EFORMAT, "Adam state: step count %g", t);
    opt->at = t;
  }
  if (used != n)
    return ngt_err_set(err, NGT_EFORMAT, "NG state has %zu values, expected %zu", n, used);
  return 0;
}

void ngt_optim_describe(const ngt_optim *opt, int c, char *buf, size_t len) {
  for (int k = 0; k < opt->n_layers; k++) {
    const ng_layer *L = &opt->layers[k];
    if (L->comp != c) continue;
    if (opt->am) {
      snprintf(buf, len, "Adam beta1=%g beta2=%g epsilon=%g", opt->o.adam_beta1, opt->o.adam_beta2,
               opt->o.adam_epsilon);
      return;
    }
    if (L->precond == NGT_PRECOND_NONE) {
      snprintf(buf, len, opt->mom ? "plain SGD, momentum %g" : "plain SGD", opt->o.momentum);
      return;
    }
    if (L->precond == NGT_PRECOND_SIMPLE) {
      snprintf(buf, len, "simple NG (alpha=%g)", opt->o.simple_alpha);
      return;
    }
    snprintf(buf, len,
             "online NG rank-in=%d rank-out=%d update-period=%d "
             "num-samples-history=%g alpha=%g",
             L->in.R, L->out.R, L->in.o.update_period, L->in.o.num_samples_history, L->in.o.alpha);
    return;
  }
  snprintf(buf, len, "-");
}

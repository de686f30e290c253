/* nnet.c — the network: config parser, parameter block, forward, backward, gradient.
 * Contract: include/ngtrain/nnet.h.
 *
 * Dimension letters: N minibatch rows, I component input dim, O component output dim,
 * C classes, D normalize dim, G p-norm group size.
 *
 * Config lines (docs/design.md §5.3), one item a line, '#' starts a comment:
 *   input  dim=D [context=-L..R]                  exactly one, first
 *   layer  type=T dim=N [group=G] [keys]          zero or more
 *   output dim=C [keys]                           exactly one, last
 * Layer types and the components they make:
 *   relu         affine(I->N), relu                      (Kaldi relu-layer)
 *   relu-renorm  affine(I->N), relu, normalize           (Kaldi relu-renorm-layer)
 *   pnorm        affine(I->N), p-norm(N->N/G), normalize (nnet2 p-norm, docs/algorithm.md §4.7)
 *   affine       affine(I->N)                            (plain linear layer)
 *   output       affine(I->C), log-softmax
 * Optional keys (layer and output lines) and their defaults:
 *   param-stddev          1/sqrt(I) hidden, 0 output (zero-initialised output layer, §4.7)
 *   bias-stddev           0.5 hidden (nnet2 paper), 0 output
 *   max-change            0.75 hidden, 1.5 output (xconfig, docs/algorithm.md §3.3); 0 = off
 *   learning-rate-factor  1
 *   use-natural-gradient  unset (the command line decides), true/false
 *   rank-in, rank-out, update-period, num-samples-history, alpha: unset (optim resolves
 *     them to Kaldi's defaults, docs/algorithm.md §2.7); rank-in < I+1, rank-out < O.
 *
 * Parameter block: for each affine component in order, W (O x I row-major) then b (O),
 * packed without gaps; the block itself is 64-byte aligned.
 */
#include "ngtrain/nnet.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/engine.h"
#include "ngtrain/fileio.h"
#include "ngtrain/rng.h"

/* Row loops of the elementwise passes run on the engine's OpenMP threads (--num-threads). */
#ifdef _OPENMP
#define OMP_ROWS _Pragma("omp parallel for schedule(static)")
#else
#define OMP_ROWS
#endif

#define NGT_NNET_MAX_DIM 1000000   /* any single dimension */
#define NGT_NNET_MAX_CONTEXT 1000  /* L and R */
#define NGT_LOGPROB_FLOOR (-1e30f) /* log-probs below this are clamped (never -inf) */
#define NGT_NORM_FLOOR 0x1.0p-66   /* Kaldi kSquaredNormFloor, docs/algorithm.md §4.7 */

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                          */

const char *ngt_comp_type_name(int type) {
  switch (type) {
    case NGT_COMP_AFFINE: return "affine";
    case NGT_COMP_RELU: return "relu";
    case NGT_COMP_PNORM: return "pnorm";
    case NGT_COMP_NORMALIZE: return "normalize";
    case NGT_COMP_LOGSOFTMAX: return "log-softmax";
    default: return "unknown";
  }
}

/* 64-byte aligned float block of n floats (n may be 0), zeroed; NULL on failure. */
static float *params_alloc(size_t n) {
  size_t bytes = n * sizeof(float);
  if (n != 0 && bytes / sizeof(float) != n) return NULL;
  bytes = (bytes + 63) & ~(size_t)63;
  if (bytes == 0) bytes = 64;
  float *p = aligned_alloc(64, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

void ngt_nnet_free(ngt_nnet *net) {
  if (!net) return;
  free(net->comps);
  free(net->params);
  free(net->transform);
  free(net->priors);
  free(net->config_text);
  free(net);
}

/* ------------------------------------------------------------------------------------ */
/* Config parser                                                                          */

enum { KIND_RELU, KIND_RELU_RENORM, KIND_PNORM, KIND_AFFINE, KIND_OUTPUT };
static const char *const kind_names[] = {"relu", "relu-renorm", "pnorm", "affine", "output"};

typedef struct layer_spec {
  int kind;                                               /* KIND_* */
  int line;                                               /* 1-based config line */
  int in_dim;                                             /* I of the affine */
  int dim;                                                /* O of the affine */
  int group;                                              /* pnorm G, else 0 */
  float param_stddev, bias_stddev, max_change, lr_factor; /* NAN = default */
  ngt_layer_ng ng;
} layer_spec;

typedef struct parse_ctx {
  const char *src;
  int line;
  ngt_err *err;
} parse_ctx;

static int perr(parse_ctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(parse_ctx *p, const char *fmt, ...) {
  char body[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  return ngt_err_set(p->err, NGT_EINVAL, "%s:%d: %s", p->src, p->line, body);
}

/* Integer value of key=val; the whole value must be a decimal integer. */
static int parse_int(parse_ctx *p, const char *key, const char *val, long *out) {
  char *end;
  errno = 0;
  long v = strtol(val, &end, 10);
  if (end == val || *end != '\0' || errno == ERANGE)
    return perr(p, "bad number '%s=%s' (expected an integer, e.g. %s=%s)", key, val, key,
                strcmp(key, "dim") == 0 ? "512" : "4");
  *out = v;
  return 0;
}

static int parse_float(parse_ctx *p, const char *key, const char *val, double *out) {
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (end == val || *end != '\0' || errno == ERANGE || !isfinite(v))
    return perr(p, "bad number '%s=%s' (expected a finite number, e.g. %s=0.5)", key, val, key);
  *out = v;
  return 0;
}

static int parse_dim(parse_ctx *p, const char *key, const char *val, int *out) {
  long v = 0;
  int rc = parse_int(p, key, val, &v);
  if (rc) return rc;
  if (v <= 0) return perr(p, "%s=%s must be a positive integer (e.g. %s=512)", key, val, key);
  if (v > NGT_NNET_MAX_DIM)
    return perr(p, "%s=%s is too large (at most %d)", key, val, NGT_NNET_MAX_DIM);
  *out = (int)v;
  return 0;
}

/* "-L..R" with L, R >= 0 (e.g. -5..5, 0..0, -2..0). */
static int parse_context(parse_ctx *p, const char *val, int *L, int *R) {
  const char *hint = "expected context=-L..R with L, R >= 0, e.g. context=-5..5 or context=0..0";
  const char *dots = strstr(val, "..");
  if (!dots) return perr(p, "bad context '%s' (%s)", val, hint);
  char left[64];
  size_t nl = (size_t)(dots - val);
  if (nl == 0 || nl >= sizeof left) return perr(p, "bad context '%s' (%s)", val, hint);
  memcpy(left, val, nl);
  left[nl] = '\0';
  const char *right = dots + 2;
  char *end;
  errno = 0;
  long l = strtol(left, &end, 10);
  if (end == left || *end || errno) return perr(p, "bad context '%s' (%s)", val, hint);
  errno = 0;
  long r = strtol(right, &end, 10);
  if (end == right || *end || errno) return perr(p, "bad context '%s' (%s)", val, hint);
  if (l > 0) return perr(p, "bad context '%s': the left end must be <= 0 (%s)", val, hint);
  if (r < 0) return perr(p, "bad context '%s': the right end must be >= 0 (%s)", val, hint);
  if (-l > NGT_NNET_MAX_CONTEXT || r > NGT_NNET_MAX_CONTEXT)
    return perr(p, "context '%s' is too wide (at most %d frames each side)", val,
                NGT_NNET_MAX_CONTEXT);
  *L = (int)-l;
  *R = (int)r;
  return 0;
}

/* Keys of a layer/output line (index into this table = slot in the per-line value array). */
enum {
  K_TYPE,
  K_DIM,
  K_GROUP,
  K_BIAS_STDDEV,
  K_PARAM_STDDEV,
  K_MAX_CHANGE,
  K_LR_FACTOR,
  K_USE_NG,
  K_RANK_IN,
  K_RANK_OUT,
  K_UPDATE_PERIOD,
  K_NSH,
  K_ALPHA,
  K_CONTEXT,
  K_NUM
};
static const char *const key_names[K_NUM] = {"type",
                                             "dim",
                                             "group",
                                             "bias-stddev",
                                             "param-stddev",
                                             "max-change",
                                             "learning-rate-factor",
                                             "use-natural-gradient",
                                             "rank-in",
                                             "rank-out",
                                             "update-period",
                                             "num-samples-history",
                                             "alpha",
                                             "context"};
#define LAYER_KEYS_HINT                                                                    \
  "known: type, dim, group, bias-stddev, param-stddev, max-change, learning-rate-factor, " \
  "use-natural-gradient, rank-in, rank-out, update-period, num-samples-history, alpha"
#define OUTPUT_KEYS_HINT                                                      \
  "known: dim, bias-stddev, param-stddev, max-change, learning-rate-factor, " \
  "use-natural-gradient, rank-in, rank-out, update-period, num-samples-history, alpha"

static int key_index(const char *k) {
  for (int i = 0; i < K_NUM; i++)
    if (strcmp(k, key_names[i]) == 0) return i;
  return -1;
}

/* Parse the optional keys of a layer/output line into s (in_dim, dim, kind already set). */
static int parse_layer_keys(parse_ctx *p, char *const vals[K_NUM], layer_spec *s) {
  int rc;
  double d = 0;
  long v = 0;
  s->param_stddev = s->bias_stddev = s->max_change = s->lr_factor = NAN;
  s->ng.use_ng = -1;
  s->ng.rank_in = s->ng.rank_out = s->ng.update_period = 0;
  s->ng.num_samples_history = 0;
  s->ng.alpha = -1;
  if (vals[K_PARAM_STDDEV]) {
    if ((rc = parse_float(p, "param-stddev", vals[K_PARAM_STDDEV], &d))) return rc;
    if (d < 0) return perr(p, "param-stddev=%s must be >= 0", vals[K_PARAM_STDDEV]);
    s->param_stddev = (float)d;
  }
  if (vals[K_BIAS_STDDEV]) {
    if ((rc = parse_float(p, "bias-stddev", vals[K_BIAS_STDDEV], &d))) return rc;
    if (d < 0) return perr(p, "bias-stddev=%s must be >= 0", vals[K_BIAS_STDDEV]);
    s->bias_stddev = (float)d;
  }
  if (vals[K_MAX_CHANGE]) {
    if ((rc = parse_float(p, "max-change", vals[K_MAX_CHANGE], &d))) return rc;
    if (d < 0)
      return perr(p,
                  "max-change=%s must be >= 0 (0 turns it off; Kaldi uses 0.75 for hidden "
                  "layers, 1.5 for the output)",
                  vals[K_MAX_CHANGE]);
    s->max_change = (float)d;
  }
  if (vals[K_LR_FACTOR]) {
    if ((rc = parse_float(p, "learning-rate-factor", vals[K_LR_FACTOR], &d))) return rc;
    if (d < 0)
      return perr(p, "learning-rate-factor=%s must be >= 0 (0 freezes the layer)",
                  vals[K_LR_FACTOR]);
    s->lr_factor = (float)d;
  }
  if (vals[K_USE_NG]) {
    if (strcmp(vals[K_USE_NG], "true") == 0) s->ng.use_ng = 1;
    else if (strcmp(vals[K_USE_NG], "false") == 0)
      s->ng.use_ng = 0;
    else
      return perr(p, "bad value 'use-natural-gradient=%s' (expected true or false)",
                  vals[K_USE_NG]);
  }
  if (vals[K_RANK_IN]) {
    if ((rc = parse_int(p, "rank-in", vals[K_RANK_IN], &v))) return rc;
    if (v < 1) return perr(p, "rank-in=%s must be >= 1", vals[K_RANK_IN]);
    if (v >= (long)s->in_dim + 1)
      return perr(p,
                  "rank-in=%s must be less than the layer's input dim + 1 = %d (the "
                  "natural-gradient input side has dimension I+1; Kaldi default "
                  "min(20, (I+1)/2) = %d)",
                  vals[K_RANK_IN], s->in_dim + 1,
                  (s->in_dim + 1) / 2 < 20 ? (s->in_dim + 1) / 2 : 20);
    s->ng.rank_in = (int)v;
  }
  if (vals[K_RANK_OUT]) {
    if ((rc = parse_int(p, "rank-out", vals[K_RANK_OUT], &v))) return rc;
    if (v < 1) return perr(p, "rank-out=%s must be >= 1", vals[K_RANK_OUT]);
    if (v >= (long)s->dim)
      return perr(p,
                  "rank-out=%s must be less than the layer's output dim %d (Kaldi default "
                  "min(80, (O+1)/2) = %d)",
                  vals[K_RANK_OUT], s->dim, (s->dim + 1) / 2 < 80 ? (s->dim + 1) / 2 : 80);
    s->ng.rank_out = (int)v;
  }
  if (vals[K_UPDATE_PERIOD]) {
    if ((rc = parse_int(p, "update-period", vals[K_UPDATE_PERIOD], &v))) return rc;
    if (v < 1 || v > 1000000)
      return perr(p, "update-period=%s must be >= 1 (Kaldi default 4)", vals[K_UPDATE_PERIOD]);
    s->ng.update_period = (int)v;
  }
  if (vals[K_NSH]) {
    if ((rc = parse_float(p, "num-samples-history", vals[K_NSH], &d))) return rc;
    if (d <= 0)
      return perr(p, "num-samples-history=%s must be > 0 (Kaldi default 2000)", vals[K_NSH]);
    s->ng.num_samples_history = d;
  }
  if (vals[K_ALPHA]) {
    if ((rc = parse_float(p, "alpha", vals[K_ALPHA], &d))) return rc;
    if (d < 0) return perr(p, "alpha=%s must be >= 0 (Kaldi default 4)", vals[K_ALPHA]);
    s->ng.alpha = d;
  }
  return 0;
}

/* Build comps and the parameter block from the parsed lines. */
static int build_net(ngt_nnet *net, const layer_spec *ls, int nl, const char *src, ngt_err *err) {
  int nc = 0;
  for (int i = 0; i < nl; i++) {
    switch (ls[i].kind) {
      case KIND_RELU: nc += 2; break;
      case KIND_RELU_RENORM: nc += 3; break;
      case KIND_PNORM: nc += 3; break;
      case KIND_AFFINE: nc += 1; break;
      default: nc += 2; break; /* output */
    }
  }
  net->comps = calloc((size_t)nc, sizeof *net->comps);
  if (!net->comps) return ngt_err_set(err, NGT_ENOMEM, "%s: out of memory", src);
  net->num_comps = nc;
  net->num_layers = nl;
  size_t off = 0;
  int c = 0;
  for (int i = 0; i < nl; i++) {
    const layer_spec *s = &ls[i];
    int is_out = s->kind == KIND_OUTPUT;
    ngt_comp *a = &net->comps[c++];
    a->type = NGT_COMP_AFFINE;
    a->in_dim = s->in_dim;
    a->out_dim = s->dim;
    a->layer = i;
    a->w_off = off;
    off += (size_t)s->dim * (size_t)s->in_dim;
    a->b_off = off;
    off += (size_t)s->dim;
    a->param_stddev = !isnan(s->param_stddev) ? s->param_stddev
                      : is_out                ? 0.0f
                                              : (float)(1.0 / sqrt((double)s->in_dim));
    a->bias_stddev = !isnan(s->bias_stddev) ? s->bias_stddev : is_out ? 0.0f : 0.5f;
    a->max_change = !isnan(s->max_change) ? s->max_change : is_out ? 1.5f : 0.75f;
    a->lr_factor = !isnan(s->lr_factor) ? s->lr_factor : 1.0f;
    a->ng = s->ng;
    int d = s->dim;
    if (s->kind == KIND_RELU || s->kind == KIND_RELU_RENORM) {
      ngt_comp *r = &net->comps[c++];
      r->type = NGT_COMP_RELU;
      r->in_dim = r->out_dim = d;
      r->layer = i;
    }
    if (s->kind == KIND_PNORM) {
      ngt_comp *pn = &net->comps[c++];
      pn->type = NGT_COMP_PNORM;
      pn->in_dim = d;
      pn->out_dim = d / s->group;
      pn->group = s->group;
      pn->layer = i;
      d = pn->out_dim;
    }
    if (s->kind == KIND_RELU_RENORM || s->kind == KIND_PNORM) {
      ngt_comp *nm = &net->comps[c++];
      nm->type = NGT_COMP_NORMALIZE;
      nm->in_dim = nm->out_dim = d;
      nm->layer = i;
    }
    if (is_out) {
      ngt_comp *ls_ = &net->comps[c++];
      ls_->type = NGT_COMP_LOGSOFTMAX;
      ls_->in_dim = ls_->out_dim = d;
      ls_->layer = i;
    }
  }
  NGT_ASSERT(c == nc);
  net->num_params = off;
  net->params = params_alloc(off);
  if (!net->params)
    return ngt_err_set(err, NGT_ENOMEM, "%s: out of memory allocating %zu parameters (%.1f MB)",
                       src, off, (double)off * 4.0 / 1e6);
  return 0;
}

/* Output dim of the last component made by a layer spec. */
static int spec_out_dim(const layer_spec *s) {
  return s->kind == KIND_PNORM ? s->dim / s->group : s->dim;
}

int ngt_nnet_from_config(const char *text, const char *source, ngt_nnet **out, ngt_err *err) {
  *out = NULL;
  if (!source) source = "config";
  parse_ctx p = {source, 0, err};
  char *buf = strdup(text ? text : "");
  ngt_nnet *net = calloc(1, sizeof *net);
  layer_spec *ls = NULL;
  int nl = 0, cap = 0, rc = 0;
  int have_input = 0, have_output = 0, input_line = 0;
  if (!buf || !net) {
    rc = ngt_err_set(err, NGT_ENOMEM, "%s: out of memory", source);
    goto out_fail;
  }
  net->config_text = strdup(text ? text : "");
  if (!net->config_text) {
    rc = ngt_err_set(err, NGT_ENOMEM, "%s: out of memory", source);
    goto out_fail;
  }

  char *line = buf;
  int lineno = 0;
  while (line) {
    char *nlp = strchr(line, '\n');
    if (nlp) *nlp = '\0';
    lineno++;
    p.line = lineno;
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    /* tokens */
    char *tok[64];
    int nt = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t\r\v\f", &save); t; t = strtok_r(NULL, " \t\r\v\f", &save)) {
      if (nt == 64) {
        rc = perr(&p, "too many items on one line (at most 64)");
        goto out_fail;
      }
      tok[nt++] = t;
    }
    line = nlp ? nlp + 1 : NULL;
    if (nt == 0) continue;

    const char *kw = tok[0];
    int is_input = strcmp(kw, "input") == 0, is_layer = strcmp(kw, "layer") == 0,
        is_output = strcmp(kw, "output") == 0;
    if (!is_input && !is_layer && !is_output) {
      rc = perr(&p,
                "unknown keyword '%.40s' (expected 'input', 'layer' or 'output' at the start "
                "of the line)",
                kw);
      goto out_fail;
    }
    if (is_input && have_input) {
      rc = perr(&p,
                "duplicate input line (the input was already given on line %d; a network "
                "has exactly one)",
                input_line);
      goto out_fail;
    }
    if (!is_input && !have_input) {
      rc = perr(&p,
                "'%s' before the input line (the first line must be 'input dim=D "
                "context=-L..R')",
                kw);
      goto out_fail;
    }
    if (have_output) {
      if (is_output)
        rc = perr(&p, "duplicate output line (a network has exactly one output line, the "
                      "last line)");
      else
        rc = perr(&p, "'%s' after the output line (the output line must be last)", kw);
      goto out_fail;
    }
    /* key=value pairs */
    char *vals[K_NUM] = {0};
    for (int i = 1; i < nt; i++) {
      char *eq = strchr(tok[i], '=');
      if (!eq || eq == tok[i] || eq[1] == '\0') {
        rc = perr(&p, "expected key=value, got '%s' (e.g. dim=512)", tok[i]);
        goto out_fail;
      }
      *eq = '\0';
      const char *key = tok[i];
      int k = key_index(key);
      int allowed;
      if (is_input) allowed = k == K_DIM || k == K_CONTEXT;
      else if (is_layer)
        allowed = k >= 0 && k != K_CONTEXT;
      else
        allowed = k >= 0 && k != K_CONTEXT && k != K_TYPE && k != K_GROUP;
      if (!allowed) {
        if (is_output && (k == K_TYPE || k == K_GROUP))
          rc = perr(&p,
                    "key '%s' is not allowed on the output line (it is always affine + "
                    "log-softmax; add a 'layer' line before it instead)",
                    key);
        else
          rc = perr(&p, "unknown key '%s' on the %s line (%s)", key, kw,
                    is_input   ? "known: dim, context"
                    : is_layer ? LAYER_KEYS_HINT
                               : OUTPUT_KEYS_HINT);
        goto out_fail;
      }
      if (vals[k]) {
        rc = perr(&p, "duplicate key '%s' (given as %s=%s and %s=%s; keep one)", key, key, vals[k],
                  key, eq + 1);
        goto out_fail;
      }
      vals[k] = eq + 1;
    }

    if (is_input) {
      if (!vals[K_DIM]) {
        rc = perr(&p, "missing dim on the input line (e.g. 'input dim=40 context=-5..5')");
        goto out_fail;
      }
      if ((rc = parse_dim(&p, "dim", vals[K_DIM], &net->feat_dim))) goto out_fail;
      if (vals[K_CONTEXT] &&
          (rc = parse_context(&p, vals[K_CONTEXT], &net->ctx_left, &net->ctx_right)))
        goto out_fail;
      long in_dim = (long)net->feat_dim * (net->ctx_left + net->ctx_right + 1);
      if (in_dim > NGT_NNET_MAX_DIM) {
        rc = perr(&p, "spliced input dim %ld = dim x frames is too large (at most %d)", in_dim,
                  NGT_NNET_MAX_DIM);
        goto out_fail;
      }
      net->input_dim = (int)in_dim;
      have_input = 1;
      input_line = lineno;
      continue;
    }

    layer_spec s;
    memset(&s, 0, sizeof s);
    s.line = lineno;
    s.in_dim = nl ? spec_out_dim(&ls[nl - 1]) : net->input_dim;
    if (is_output) {
      s.kind = KIND_OUTPUT;
    } else {
      if (!vals[K_TYPE]) {
        rc = perr(&p, "missing type on the layer line (known: relu, relu-renorm, pnorm, affine)");
        goto out_fail;
      }
      s.kind = -1;
      for (int k = 0; k < KIND_OUTPUT; k++)
        if (strcmp(vals[K_TYPE], kind_names[k]) == 0) s.kind = k;
      if (s.kind < 0) {
        rc = perr(&p, "unknown layer type '%s' (known: relu, relu-renorm, pnorm, affine)",
                  vals[K_TYPE]);
        goto out_fail;
      }
    }
    if (!vals[K_DIM]) {
      rc = perr(&p, "missing dim on the %s line (e.g. dim=%s)", kw, is_output ? "3000" : "1024");
      goto out_fail;
    }
    if ((rc = parse_dim(&p, "dim", vals[K_DIM], &s.dim))) goto out_fail;
    if (s.kind == KIND_PNORM) {
      if (!vals[K_GROUP]) {
        rc = perr(&p, "missing group for type=pnorm (e.g. 'layer type=pnorm dim=2000 group=10' "
                      "gives 200 outputs)");
        goto out_fail;
      }
      if ((rc = parse_dim(&p, "group", vals[K_GROUP], &s.group))) goto out_fail;
      if (s.dim % s.group != 0) {
        rc = perr(&p,
                  "dim=%d is not divisible by group=%d (p-norm pools groups of %d inputs; "
                  "choose dim a multiple of group)",
                  s.dim, s.group, s.group);
        goto out_fail;
      }
    } else if (vals[K_GROUP]) {
      rc = perr(&p, "group=%s is only for type=pnorm (this layer is type=%s)", vals[K_GROUP],
                kind_names[s.kind]);
      goto out_fail;
    }
    if ((rc = parse_layer_keys(&p, vals, &s))) goto out_fail;
    if (nl == cap) {
      int ncap = cap ? 2 * cap : 8;
      layer_spec *nls = realloc(ls, (size_t)ncap * sizeof *nls);
      if (!nls) {
        rc = ngt_err_set(err, NGT_ENOMEM, "%s: out of memory", source);
        goto out_fail;
      }
      ls = nls;
      cap = ncap;
    }
    ls[nl++] = s;
    if (is_output) have_output = 1;
  }
  if (!have_input) {
    p.line = lineno > 0 ? lineno : 1;
    rc = perr(&p, "no input line (the first line must be 'input dim=D context=-L..R')");
    goto out_fail;
  }
  if (!have_output) {
    p.line = lineno;
    rc = perr(&p, "no output line (the last line must be 'output dim=C', C = number of classes)");
    goto out_fail;
  }
  net->num_classes = ls[nl - 1].dim;
  if ((rc = build_net(net, ls, nl, source, err))) goto out_fail;
  free(ls);
  free(buf);
  *out = net;
  return 0;

out_fail:
  free(ls);
  free(buf);
  ngt_nnet_free(net);
  return rc;
}

int ngt_nnet_from_config_file(const char *path, ngt_nnet **out, ngt_err *err) {
  char *text = NULL;
  *out = NULL;
  int rc = ngt_read_text_file(path, &text, err);
  if (rc) return ngt_err_prefix(err, "cannot read network config");
  rc = ngt_nnet_from_config(text, path, out, err);
  free(text);
  return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Structure, copies, views                                                               */

ngt_nnet *ngt_nnet_copy(const ngt_nnet *net) {
  ngt_nnet *c = ngt_xcalloc(1, sizeof *c);
  *c = *net;
  c->comps = ngt_xmalloc((size_t)net->num_comps * sizeof *c->comps);
  memcpy(c->comps, net->comps, (size_t)net->num_comps * sizeof *c->comps);
  c->params = params_alloc(net->num_params);
  if (!c->params) ngt_die("out of memory copying a network of %zu parameters", net->num_params);
  memcpy(c->params, net->params, net->num_params * sizeof(float));
  c->transform = NULL;
  c->priors = NULL;
  if (net->transform) {
    size_t n = (size_t)net->input_dim * (size_t)(net->input_dim + 1);
    c->transform = ngt_xmalloc(n * sizeof(float));
    memcpy(c->transform, net->transform, n * sizeof(float));
  }
  if (net->priors) {
    c->priors = ngt_xmalloc((size_t)net->num_classes * sizeof(float));
    memcpy(c->priors, net->priors, (size_t)net->num_classes * sizeof(float));
  }
  c->config_text = ngt_xmalloc(strlen(net->config_text ? net->config_text : "") + 1);
  strcpy(c->config_text, net->config_text ? net->config_text : "");
  return c;
}

#define WHY(...)                                           \
  do {                                                     \
    if (why && whylen) snprintf(why, whylen, __VA_ARGS__); \
    return 0;                                              \
  } while (0)

int ngt_nnet_same_structure(const ngt_nnet *a, const ngt_nnet *b, char *why, size_t whylen) {
  return ngt_nnet_compare_structure(a, b, 0, why, whylen);
}

int ngt_nnet_compare_structure(const ngt_nnet *a, const ngt_nnet *b, int flags, char *why,
                               size_t whylen) {
  if (a->feat_dim != b->feat_dim) WHY("feat_dim differs (%d vs %d)", a->feat_dim, b->feat_dim);
  if (a->ctx_left != b->ctx_left || a->ctx_right != b->ctx_right)
    WHY("context differs (-%d..%d vs -%d..%d)", a->ctx_left, a->ctx_right, b->ctx_left,
        b->ctx_right);
  if (a->input_dim != b->input_dim)
    WHY("input_dim differs (%d vs %d)", a->input_dim, b->input_dim);
  if (a->num_classes != b->num_classes)
    WHY("number of classes differs (%d vs %d)", a->num_classes, b->num_classes);
  if (a->num_comps != b->num_comps)
    WHY("number of components differs (%d vs %d)", a->num_comps, b->num_comps);
  for (int c = 0; c < a->num_comps; c++) {
    const ngt_comp *x = &a->comps[c], *y = &b->comps[c];
    if (x->type != y->type)
      WHY("component %d: type %s vs %s", c, ngt_comp_type_name(x->type),
          ngt_comp_type_name(y->type));
    const char *tn = ngt_comp_type_name(x->type);
    if (x->in_dim != y->in_dim)
      WHY("component %d (%s): in_dim %d vs %d", c, tn, x->in_dim, y->in_dim);
    if (x->out_dim != y->out_dim)
      WHY("component %d (%s): out_dim %d vs %d", c, tn, x->out_dim, y->out_dim);
    if (x->type == NGT_COMP_AFFINE && (x->w_off != y->w_off || x->b_off != y->b_off))
      WHY("component %d (%s): parameter offsets %zu/%zu vs %zu/%zu", c, tn, x->w_off, x->b_off,
          y->w_off, y->b_off);
    if (x->type == NGT_COMP_PNORM && x->group != y->group)
      WHY("component %d (%s): group %d vs %d", c, tn, x->group, y->group);
  }
  if (a->num_params != b->num_params)
    WHY("number of parameters differs (%zu vs %zu)", a->num_params, b->num_params);
  if (!(flags & NGT_NNET_CMP_IGNORE_TRANSFORM) && a->transform_type != b->transform_type)
    WHY("input transform type differs (%d vs %d)", a->transform_type, b->transform_type);
  if (why && whylen) why[0] = '\0';
  return 1;
}
#undef WHY

ngt_mat ngt_nnet_W(const ngt_nnet *net, float *base, int c) {
  NGT_ASSERT(c >= 0 && c < net->num_comps && net->comps[c].type == NGT_COMP_AFFINE);
  const ngt_comp *a = &net->comps[c];
  return ngt_mat_view((base ? base : net->params) + a->w_off, a->out_dim, a->in_dim, a->in_dim);
}

float *ngt_nnet_b(const ngt_nnet *net, float *base, int c) {
  NGT_ASSERT(c >= 0 && c < net->num_comps && net->comps[c].type == NGT_COMP_AFFINE);
  return (base ? base : net->params) + net->comps[c].b_off;
}

void ngt_nnet_set_transform(ngt_nnet *net, int type, const float *T) {
  free(net->transform);
  net->transform = NULL;
  net->transform_type = NGT_TRANSFORM_NONE;
  if (!T || type == NGT_TRANSFORM_NONE) return;
  NGT_ASSERT(type == NGT_TRANSFORM_LDA || type == NGT_TRANSFORM_CMVN);
  size_t n = (size_t)net->input_dim * (size_t)(net->input_dim + 1);
  net->transform = ngt_xmalloc(n * sizeof(float));
  memcpy(net->transform, T, n * sizeof(float));
  net->transform_type = type;
}

void ngt_nnet_set_priors(ngt_nnet *net, const float *priors) {
  free(net->priors);
  net->priors = NULL;
  if (!priors) return;
  net->priors = ngt_xmalloc((size_t)net->num_classes * sizeof(float));
  memcpy(net->priors, priors, (size_t)net->num_classes * sizeof(float));
}

/* ------------------------------------------------------------------------------------ */
/* Initialisation                                                                         */

void ngt_nnet_init_params(ngt_nnet *net, uint64_t seed) {
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_INIT);
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *a = &net->comps[c];
    if (a->type != NGT_COMP_AFFINE) continue;
    float *W = net->params + a->w_off; /* (O, I) */
    float *b = net->params + a->b_off; /* (O) */
    size_t nw = (size_t)a->out_dim * (size_t)a->in_dim;
    /* Always draw, so later layers' numbers do not depend on earlier stddev settings. */
    for (size_t k = 0; k < nw; k++) {
      double z = ngt_rng_normal(&r);
      W[k] = a->param_stddev == 0.0f ? 0.0f : (float)(a->param_stddev * z);
    }
    for (int k = 0; k < a->out_dim; k++) {
      double z = ngt_rng_normal(&r);
      b[k] = a->bias_stddev == 0.0f ? 0.0f : (float)(a->bias_stddev * z);
    }
  }
}

/* ------------------------------------------------------------------------------------ */
/* Workspace                                                                              */

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; } /* floats -> 64 bytes */

ngt_nnet_ws *ngt_nnet_ws_new(const ngt_nnet *net, int max_rows) {
  NGT_ASSERT(max_rows >= 1);
  ngt_nnet_ws *ws = ngt_xcalloc(1, sizeof *ws);
  ws->max_rows = max_rows;
  ws->rows = 0;
  size_t R = (size_t)max_rows;
  size_t total = round16(R * (size_t)net->input_dim);
  for (int c = 0; c < net->num_comps; c++) total += 2 * round16(R * (size_t)net->comps[c].out_dim);
  ws->scratch = params_alloc(total);
  if (!ws->scratch)
    ngt_die("out of memory allocating a %.1f MB network workspace for minibatches of %d rows "
            "(use a smaller --minibatch-size)",
            (double)total * 4.0 / 1e6, max_rows);
  ws->out = ngt_xcalloc((size_t)net->num_comps, sizeof *ws->out);
  ws->deriv = ngt_xcalloc((size_t)net->num_comps, sizeof *ws->deriv);
  float *p = ws->scratch;
  ws->in = ngt_mat_view(p, max_rows, net->input_dim, net->input_dim);
  p += round16(R * (size_t)net->input_dim);
  for (int c = 0; c < net->num_comps; c++) {
    int O = net->comps[c].out_dim;
    ws->out[c] = ngt_mat_view(p, max_rows, O, O);
    p += round16(R * (size_t)O);
    ws->deriv[c] = ngt_mat_view(p, max_rows, O, O);
    p += round16(R * (size_t)O);
  }
  ws->precision = ngt_engine_precision();
  if (ws->precision == NGT_PREC_BF16) {
    size_t nb = 0;
    for (int c = 0; c < net->num_comps; c++) {
      const ngt_comp *a = &net->comps[c];
      if (a->type != NGT_COMP_AFFINE) continue;
      nb += round16(R * (size_t)a->in_dim) + round16(R * (size_t)a->out_dim) +
            round16((size_t)a->out_dim * (size_t)a->in_dim);
    }
    ws->bf_scratch = aligned_alloc(64, (nb ? nb : 32) * sizeof(uint16_t));
    if (!ws->bf_scratch)
      ngt_die("out of memory allocating the bf16 workspace (%.1f MB)", (double)nb * 2.0 / 1e6);
    ws->in_bf = ngt_xcalloc((size_t)net->num_comps, sizeof *ws->in_bf);
    ws->d_bf = ngt_xcalloc((size_t)net->num_comps, sizeof *ws->d_bf);
    ws->w_bf = ngt_xcalloc((size_t)net->num_comps, sizeof *ws->w_bf);
    uint16_t *q = ws->bf_scratch;
    for (int c = 0; c < net->num_comps; c++) {
      const ngt_comp *a = &net->comps[c];
      if (a->type != NGT_COMP_AFFINE) continue;
      ws->in_bf[c] = q;
      q += round16(R * (size_t)a->in_dim);
      ws->d_bf[c] = q;
      q += round16(R * (size_t)a->out_dim);
      ws->w_bf[c] = q;
      q += round16((size_t)a->out_dim * (size_t)a->in_dim);
    }
  }
  return ws;
}

void ngt_nnet_ws_free(ngt_nnet_ws *ws) {
  if (!ws) return;
  free(ws->scratch);
  free(ws->out);
  free(ws->deriv);
  free(ws->in_bf);
  free(ws->d_bf);
  free(ws->w_bf);
  free(ws->bf_scratch);
  free(ws);
}

ngt_mat ngt_nnet_ws_input(const ngt_nnet_ws *ws, int c) {
  NGT_ASSERT(c >= 0);
  return c == 0 ? ws->in : ws->out[c - 1];
}

/* ------------------------------------------------------------------------------------ */
/* Components: forward and backward side by side                                          */

/* Affine: out = in W^T + b.  in (N, I), W (O, I), out (N, O).
 * bf16: W and in are rounded to bf16 (ws->w_bf, ws->in_bf), the bias is added by the
 * matmul primitive in fp32. */
static void affine_forward(const ngt_nnet *net, ngt_nnet_ws *ws, int c, ngt_mat in, ngt_mat out,
                           int in_bf_ready) {
  ngt_mat W = ngt_nnet_W(net, NULL, c);
  const float *b = ngt_nnet_b(net, NULL, c);
  if (ws->precision == NGT_PREC_BF16) {
    int N = in.rows, I = in.cols, O = out.cols;
    ngt_bf16_from_f32(ws->w_bf[c], I, W.data, W.stride, O, I, 1.0f);
    if (!in_bf_ready) ngt_bf16_from_f32(ws->in_bf[c], I, in.data, in.stride, N, I, 1.0f);
    ngt_gemm_bf16(0, 1, N, O, I, ws->in_bf[c], I, ws->w_bf[c], I, b, out.data, out.stride);
    return;
  }
  ngt_gemm(0, 1, 1.0f, in, W, 0.0f, out);
  OMP_ROWS
  for (int n = 0; n < out.rows; n++) {
    float *y = &NGT_AT(out, n, 0);
    for (int j = 0; j < out.cols; j++) y[j] += b[j];
  }
}
/* d_in (N, I) = d_out (N, O) W (O, I). */
static void affine_backward(const ngt_nnet *net, ngt_nnet_ws *ws, int c, ngt_mat d_out,
                            ngt_mat d_in) {
  if (ws->precision == NGT_PREC_BF16) {
    int N = d_out.rows, O = d_out.cols, I = d_in.cols;
    (void)d_out; /* ws->d_bf[c] was written by the component above (ngt_nnet_backward) */
    ngt_gemm_bf16(0, 0, N, I, O, ws->d_bf[c], O, ws->w_bf[c], I, NULL, d_in.data, d_in.stride);
    return;
  }
  ngt_gemm(0, 0, 1.0f, d_out, ngt_nnet_W(net, NULL, c), 0.0f, d_in);
}

/* ReLU: y = max(0, x); NaN propagates (so a broken model is seen, not hidden). */
static void relu_forward(ngt_mat in, ngt_mat out) {
  OMP_ROWS
  for (int n = 0; n < in.rows; n++) {
    const float *x = &NGT_AT(in, n, 0);
    float *y = &NGT_AT(out, n, 0);
    for (int j = 0; j < in.cols; j++) y[j] = x[j] < 0.0f ? 0.0f : x[j];
  }
}
/* Row kernels of the elementwise passes. Each has a portable body (static inline) and,
 * for CPUs with AVX-512 BF16 (where the bf16 engine runs), the same body compiled for
 * AVX-512 that also writes the bf16 copy of its output row while the row is in cache
 * (the operand of the next GEMM). bf == NULL: no bf16 copy. */
#ifdef __clang__ /* clang has no prefer-vector-width target option (and would ignore the rest) */
#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#else
#define AVX512_BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,prefer-vector-width=512")))
#endif
#define ROW_KERNEL(name, params, args)                               \
  AVX512_BF16 static void name##_avx512 params { name##_body args; } \
  static void name params {                                          \
    if (ngt_cpu_avx512bf16()) name##_avx512 args;                    \
    else                                                             \
      name##_body args;                                              \
  }

/* exp for the log-softmax passes, vectorisable (Cephes expf: n = round(x log2 e),
 * r = x - n ln 2 in two parts, degree-6 polynomial; about 1 ulp). x is clamped to
 * [-87, 88] and is exactly 0 below -87 (the log-prob floor -1e30 gives p = 0, as expf);
 * exp(0) = 1 exactly; NaN stays NaN. */
static inline float vexpf(float x0) {
  float x = x0 < -87.0f ? -87.0f : x0;
  x = x > 88.0f ? 88.0f : x;
  float t = x * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest (|t| < 2^22) */
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  float nn = n == n ? n : 0.0f; /* NaN: e is NaN already */
  union {
    uint32_t u;
    float f;
  } sc;
  sc.u = ((uint32_t)(int32_t)nn + 127u) << 23;
  return x0 < -87.0f ? 0.0f : e * sc.f;
}

/* dx = dy * [y > 0]. */
static inline void relu_bwd_row_body(const float *y, const float *dy, float *dx, uint16_t *bf,
                                     int n) {
  for (int j = 0; j < n; j++) dx[j] = y[j] > 0.0f ? dy[j] : 0.0f;
  if (bf) ngt_bf16_row_avx512(bf, dx, n, 1.0f);
}
ROW_KERNEL(relu_bwd_row, (const float *y, const float *dy, float *dx, uint16_t *bf, int n),
           (y, dy, dx, bf, n))
static void relu_backward(ngt_mat out, ngt_mat d_out, ngt_mat d_in, uint16_t *bf) {
  OMP_ROWS
  for (int n = 0; n < out.rows; n++)
    relu_bwd_row(&NGT_AT(out, n, 0), &NGT_AT(d_out, n, 0), &NGT_AT(d_in, n, 0),
                 bf ? bf + (size_t)n * (size_t)out.cols : NULL, out.cols);
}

/* p-norm, p = 2 (docs/algorithm.md §4.7): y_k = sqrt(sum_{i in group k} x_i^2),
 * group k = inputs [k G, (k+1) G).  in (N, K G), out (N, K). */
static void pnorm_forward(int G, ngt_mat in, ngt_mat out) {
  OMP_ROWS
  for (int n = 0; n < in.rows; n++) {
    const float *x = &NGT_AT(in, n, 0);
    float *y = &NGT_AT(out, n, 0);
    for (int k = 0; k < out.cols; k++) {
      const float *xg = x + (size_t)k * (size_t)G;
      float s = 0.0f;
      for (int i = 0; i < G; i++) s += xg[i] * xg[i];
      y[k] = sqrtf(s);
    }
  }
}
/* dx_i = dy_k x_i / y_k (0 where y_k == 0). */
static void pnorm_backward(int G, ngt_mat in, ngt_mat out, ngt_mat d_out, ngt_mat d_in) {
  OMP_ROWS
  for (int n = 0; n < in.rows; n++) {
    const float *x = &NGT_AT(in, n, 0), *y = &NGT_AT(out, n, 0), *dy = &NGT_AT(d_out, n, 0);
    float *dx = &NGT_AT(d_in, n, 0);
    for (int k = 0; k < out.cols; k++) {
      float s = y[k] > 0.0f ? dy[k] / y[k] : 0.0f;
      const float *xg = x + (size_t)k * (size_t)G;
      float *dxg = dx + (size_t)k * (size_t)G;
      for (int i = 0; i < G; i++) dxg[i] = s * xg[i];
    }
  }
}

/* Sums over a row in 8 float lanes (vectorised), combined in double: as accurate as the
 * float data for D up to a few thousand, and no double conversion in the inner loop. */
static double dot8(const float *a, const float *b, int D) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= D; j += 8)
    for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
  double s = 0.0;
  for (int k = 0; k < 8; k++) s += acc[k];
  for (; j < D; j++) s += (double)a[j] * b[j];
  return s;
}
static double sumsq8(const float *a, int D) { return dot8(a, a, D); }

/* Normalize (Kaldi NormalizeComponent, target RMS 1, docs/algorithm.md §4.7):
 * y = x f, f = 1/sqrt(max(2^-66, x^T x / D)).  in, out (N, D). */
static inline void normalize_fwd_row_body(const float *x, float *y, uint16_t *bf, int D) {
  double m = sumsq8(x, D) / D;
  float f = (float)(1.0 / sqrt(m > NGT_NORM_FLOOR ? m : NGT_NORM_FLOOR));
  for (int j = 0; j < D; j++) y[j] = x[j] * f;
  if (bf) ngt_bf16_row_avx512(bf, y, D, 1.0f);
}
ROW_KERNEL(normalize_fwd_row, (const float *x, float *y, uint16_t *bf, int D), (x, y, bf, D))
static void normalize_forward(ngt_mat in, ngt_mat out, uint16_t *bf) {
  int D = in.cols;
  OMP_ROWS
  for (int n = 0; n < in.rows; n++)
    normalize_fwd_row(&NGT_AT(in, n, 0), &NGT_AT(out, n, 0),
                      bf ? bf + (size_t)n * (size_t)D : NULL, D);
}
/* dx = f dy - (f^3 / D) (dy^T x) x, or f dy when floored (§4.7). */
static void normalize_backward(ngt_mat in, ngt_mat d_out, ngt_mat d_in) {
  int D = in.cols;
  OMP_ROWS
  for (int n = 0; n < in.rows; n++) {
    const float *x = &NGT_AT(in, n, 0), *dy = &NGT_AT(d_out, n, 0);
    float *dx = &NGT_AT(d_in, n, 0);
    double dot = dot8(dy, x, D);
    double m = sumsq8(x, D) / D;
    if (m > NGT_NORM_FLOOR) {
      double f = 1.0 / sqrt(m);
      float a = (float)f, b = (float)(f * f * f / D * dot);
      for (int j = 0; j < D; j++) dx[j] = a * dy[j] - b * x[j];
    } else {
      float a = (float)(1.0 / sqrt(NGT_NORM_FLOOR));
      for (int j = 0; j < D; j++) dx[j] = a * dy[j];
    }
  }
}

/* Log-softmax, numerically stable: y_j = x_j - max - log(sum_k exp(x_k - max)), clamped
 * below at -1e30 so an impossible class gives a huge finite loss, never -inf (a NaN
 * input still gives NaN, so broken models are seen).  in, out (N, C). */
/* Sums in 16 float lanes, combined in double. */
#define LANES 16
static inline void lsm_fwd_row_body(const float *x, float *y, int C) {
  float mx = x[0];
  {
    float m[LANES];
    for (int k = 0; k < LANES; k++) m[k] = x[0];
    int j = 0;
    for (; j + LANES <= C; j += LANES)
      for (int k = 0; k < LANES; k++) m[k] = x[j + k] > m[k] ? x[j + k] : m[k];
    for (; j < C; j++) mx = x[j] > mx ? x[j] : mx;
    for (int k = 0; k < LANES; k++) mx = m[k] > mx ? m[k] : mx;
  }
  float acc[LANES] = {0};
  int j = 0;
  for (; j + LANES <= C; j += LANES)
    for (int k = 0; k < LANES; k++) {
      float d = x[j + k] - mx;
      y[j + k] = d;
      acc[k] += vexpf(d);
    }
  double s = 0.0;
  for (; j < C; j++) {
    float d = x[j] - mx;
    y[j] = d;
    s += (double)vexpf(d);
  }
  for (int k = 0; k < LANES; k++) s += acc[k];
  float lse = (float)log(s);
  for (j = 0; j < C; j++) {
    float v = y[j] - lse;
    y[j] = v < NGT_LOGPROB_FLOOR ? NGT_LOGPROB_FLOOR : v;
  }
}
ROW_KERNEL(lsm_fwd_row, (const float *x, float *y, int C), (x, y, C))
static void logsoftmax_forward(ngt_mat in, ngt_mat out) {
  OMP_ROWS
  for (int n = 0; n < in.rows; n++) lsm_fwd_row(&NGT_AT(in, n, 0), &NGT_AT(out, n, 0), in.cols);
}
/* dx_j = dy_j - p_j sum_k dy_k with p = exp(y). */
static inline void lsm_bwd_row_body(const float *y, const float *dy, float *dx, uint16_t *bf,
                                    int C) {
  float acc[LANES] = {0};
  double s = 0.0;
  int j = 0;
  for (; j + LANES <= C; j += LANES)
    for (int k = 0; k < LANES; k++) acc[k] += dy[j + k];
  for (; j < C; j++) s += dy[j];
  for (int k = 0; k < LANES; k++) s += acc[k];
  float sf = (float)s;
  for (j = 0; j < C; j++) dx[j] = dy[j] - vexpf(y[j]) * sf;
  if (bf) ngt_bf16_row_avx512(bf, dx, C, 1.0f);
}
ROW_KERNEL(lsm_bwd_row, (const float *y, const float *dy, float *dx, uint16_t *bf, int C),
           (y, dy, dx, bf, C))
static void logsoftmax_backward(ngt_mat out, ngt_mat d_out, ngt_mat d_in, uint16_t *bf) {
  OMP_ROWS
  for (int n = 0; n < out.rows; n++)
    lsm_bwd_row(&NGT_AT(out, n, 0), &NGT_AT(d_out, n, 0), &NGT_AT(d_in, n, 0),
                bf ? bf + (size_t)n * (size_t)out.cols : NULL, out.cols);
}

static void set_rows(const ngt_nnet *net, ngt_nnet_ws *ws, int N) {
  ws->rows = N;
  ws->in.rows = N;
  for (int c = 0; c < net->num_comps; c++) ws->out[c].rows = ws->deriv[c].rows = N;
}

void ngt_nnet_forward(const ngt_nnet *net, ngt_nnet_ws *ws, ngt_mat X) {
  int N = X.rows;
  NGT_ASSERT(N >= 0 && N <= ws->max_rows);
  NGT_ASSERT(X.cols == net->input_dim && ws->in.cols == net->input_dim);
  set_rows(net, ws, N);
  if (net->transform) {
    /* in = X M^T + m, with T = [M, m] (input_dim, input_dim + 1) (§4.9). */
    int D = net->input_dim;
    ngt_mat M = ngt_mat_view(net->transform, D, D, D + 1);
    ngt_gemm(0, 1, 1.0f, X, M, 0.0f, ws->in);
    for (int n = 0; n < N; n++) {
      float *y = &NGT_AT(ws->in, n, 0);
      for (int j = 0; j < D; j++) y[j] += net->transform[(size_t)j * (size_t)(D + 1) + (size_t)D];
    }
  } else {
    ngt_mat_copy(ws->in, X);
  }
  const int bf16 = ws->precision == NGT_PREC_BF16;
  int in_bf_ready = 0; /* bf16: the previous component wrote ws->in_bf[c] */
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    ngt_mat in = ngt_nnet_ws_input(ws, c), out = ws->out[c];
    NGT_ASSERT(in.cols == cp->in_dim && out.cols == cp->out_dim);
    uint16_t *next_bf = bf16 && c + 1 < net->num_comps && net->comps[c + 1].type == NGT_COMP_AFFINE
                            ? ws->in_bf[c + 1]
                            : NULL;
    int ready = in_bf_ready;
    in_bf_ready = 0;
    switch (cp->type) {
      case NGT_COMP_AFFINE: affine_forward(net, ws, c, in, out, ready); break;
      case NGT_COMP_RELU: relu_forward(in, out); break;
      case NGT_COMP_PNORM: pnorm_forward(cp->group, in, out); break;
      case NGT_COMP_NORMALIZE:
        normalize_forward(in, out, next_bf);
        in_bf_ready = next_bf != NULL;
        break;
      case NGT_COMP_LOGSOFTMAX: logsoftmax_forward(in, out); break;
      default: NGT_ASSERT(!"unknown component type");
    }
  }
}

double ngt_nnet_objective(const ngt_nnet *net, const ngt_nnet_ws *ws, const int32_t *labels,
                          int *num_correct) {
  ngt_mat lp = ws->out[net->num_comps - 1]; /* (N, C) */
  int C = lp.cols, nc = 0;
  double obj = 0.0;
  for (int n = 0; n < ws->rows; n++) {
    const float *y = &NGT_AT(lp, n, 0);
    int32_t l = labels[n];
    NGT_ASSERT(l >= 0 && l < C);
    obj += y[l];
    int am = 0;
    for (int j = 1; j < C; j++)
      if (y[j] > y[am]) am = j;
    nc += am == l;
  }
  if (num_correct) *num_correct = nc;
  return obj;
}

void ngt_nnet_backward(const ngt_nnet *net, ngt_nnet_ws *ws, const int32_t *labels) {
  int last = net->num_comps - 1, N = ws->rows;
  NGT_ASSERT(net->comps[last].type == NGT_COMP_LOGSOFTMAX);
  /* d(loss)/d(log p) for loss = -sum_n log p(label_n): -onehot. */
  ngt_mat dl = ws->deriv[last];
  ngt_mat_zero(dl);
  for (int n = 0; n < N; n++) {
    NGT_ASSERT(labels[n] >= 0 && labels[n] < dl.cols);
    NGT_AT(dl, n, labels[n]) = -1.0f;
  }
  /* Down to the first component's output; never d/d(network input). */
  for (int c = last; c >= 1; c--) {
    const ngt_comp *cp = &net->comps[c];
    ngt_mat in = ws->out[c - 1], out = ws->out[c], dy = ws->deriv[c], dx = ws->deriv[c - 1];
    uint16_t *dx_bf = ws->precision == NGT_PREC_BF16 && net->comps[c - 1].type == NGT_COMP_AFFINE
                          ? ws->d_bf[c - 1]
                          : NULL;
    int fused = 0;
    switch (cp->type) {
      case NGT_COMP_AFFINE: affine_backward(net, ws, c, dy, dx); break;
      case NGT_COMP_RELU:
        relu_backward(out, dy, dx, dx_bf);
        fused = 1;
        break;
      case NGT_COMP_PNORM: pnorm_backward(cp->group, in, out, dy, dx); break;
      case NGT_COMP_NORMALIZE: normalize_backward(in, dy, dx); break;
      case NGT_COMP_LOGSOFTMAX:
        logsoftmax_backward(out, dy, dx, dx_bf);
        fused = 1;
        break;
      default: NGT_ASSERT(!"unknown component type");
    }
    /* bf16: an affine component's output derivative, for its backward GEMM and the
     * weight gradient (fused into relu and log-softmax above). */
    if (dx_bf && !fused) ngt_bf16_from_f32(dx_bf, dx.cols, dx.data, dx.stride, N, dx.cols, 1.0f);
  }
}

void ngt_nnet_gradient(const ngt_nnet *net, const ngt_nnet_ws *ws, float *grad) {
  for (int c = 0; c < net->num_comps; c++) {
    if (net->comps[c].type != NGT_COMP_AFFINE) continue;
    ngt_mat G = ws->deriv[c];              /* (N, O) */
    ngt_mat X = ngt_nnet_ws_input(ws, c);  /* (N, I) */
    ngt_mat dW = ngt_nnet_W(net, grad, c); /* (O, I) */
    float *db = ngt_nnet_b(net, grad, c);  /* (O) */
    ngt_gemm(1, 0, 1.0f, G, X, 0.0f, dW);
    int O = G.cols;
    for (int j = 0; j < O; j++) db[j] = 0.0f;
    for (int n = 0; n < G.rows; n++) {
      const float *g = &NGT_AT(G, n, 0);
      for (int j = 0; j < O; j++) db[j] += g[j];
    }
  }
}

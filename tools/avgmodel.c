/* avgmodel — average models (Kaldi nnet3-average semantics).
 *
 *   avgmodel exp/run1/18.h5 exp/run1/19.h5 exp/run1/20.h5 avg.h5
 *   avgmodel --weights=0.2:0.3:0.5 a.h5 b.h5 c.h5 out.h5
 *
 * The output is Σ_i w_i θ_i, accumulated in double and rounded once (so N copies of a
 * model average to that model exactly). Weights default to 1/N; given weights are
 * renormalised to sum to 1, with a warning when their sum was off by more than 0.01.
 * Models must have the same structure and the same fixed input transform; priors are
 * averaged with the same weights when every model has them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/log.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/opts.h"

static const ngt_tool tool = {
    "avgmodel",
    "average ngtrain models (Kaldi nnet3-average semantics).",
    "avgmodel [--weights=w1:w2:..] in1.h5 .. inN.h5 out.h5",
    "avgmodel exp/run1/18.h5 exp/run1/19.h5 exp/run1/20.h5 exp/run1/avg.h5\n"
    "avgmodel --weights=0.2:0.3:0.5 a.h5 b.h5 c.h5 out.h5",
    NULL,
    2,
    -1};

int main(int argc, char **argv) {
  const char *weights = NULL;
  ngt_opt table[] = {{"weights", NGT_OPT_STRING, &weights,
                      "colon-separated weights, one per input (renormalised to sum 1)", 0},
                     {0, 0, 0, 0, 0}};
  char **pos = NULL;
  int npos = 0, code = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) return code;
  ngt_err err = {0};
  int n = npos - 1;
  const char *out = pos[n];
  double *w = calloc((size_t)n, sizeof(double));
  if (!w) ngt_die("out of memory");
  if (weights) {
    int k = 0;
    const char *p = weights;
    while (*p) {
      char *end;
      double v = strtod(p, &end);
      if (end == p || !isfinite(v) || (*end && *end != ':')) {
        return ngt_fail("--weights='%s': '%s' is not a number", weights, p);
      }
      if (k < n) w[k] = v;
      k++;
      p = *end ? end + 1 : end;
    }
    if (k != n) {
      return ngt_fail("--weights has %d value(s) but there are %d input model(s)", k, n);
    }
    double s = 0;
    for (int i = 0; i < n; i++) s += w[i];
    if (!(s > 0)) {
      return ngt_fail("--weights='%s' sum to %g; they must sum to a positive number", weights, s);
    }
    if (fabs(s - 1.0) > 0.01) ngt_warn("--weights sum to %g, not 1; renormalising", s);
    for (int i = 0; i < n; i++) w[i] /= s;
  } else {
    for (int i = 0; i < n; i++) w[i] = 1.0 / n;
  }
  ngt_nnet *first = NULL;
  if (ngt_nnet_load(pos[0], &first, &err)) {
    return ngt_fail("%s", err.msg);
  }
  const size_t P = first->num_params;
  const int C = first->num_classes;
  double *acc = calloc(P ? P : 1, sizeof(double));
  double *pacc = calloc((size_t)C, sizeof(double));
  if (!acc || !pacc) ngt_die("out of memory");
  int all_priors = 1;
  for (int i = 0; i < n; i++) {
    ngt_nnet *m = first;
    if (i > 0 && ngt_nnet_load(pos[i], &m, &err)) {
      return ngt_fail("%s", err.msg);
    }
    char why[512];
    if (i > 0 && !ngt_nnet_same_structure(first, m, why, sizeof why)) {
      return ngt_fail("'%s' and '%s' have different structures: %s", pos[0], pos[i], why);
    }
    if (i > 0) {
      size_t tn = (size_t)first->input_dim * (size_t)(first->input_dim + 1);
      int same = first->transform_type == m->transform_type &&
                 (!first->transform ||
                  memcmp(first->transform, m->transform, sizeof(float) * tn) == 0);
      if (!same) {
        return ngt_fail("'%s' and '%s' have different input transforms; averaging them would "
                        "mix two input spaces (use models of one training run)",
                        pos[0], pos[i]);
      }
    }
    for (size_t j = 0; j < P; j++) acc[j] += w[i] * (double)m->params[j];
    if (m->priors) {
      for (int k = 0; k < C; k++) pacc[k] += w[i] * (double)m->priors[k];
    } else {
      all_priors = 0;
    }
    if (m != first) ngt_nnet_free(m);
  }
  for (size_t j = 0; j < P; j++) first->params[j] = (float)acc[j];
  if (all_priors) {
    float *pr = malloc(sizeof(float) * (size_t)C);
    if (!pr) ngt_die("out of memory");
    for (int k = 0; k < C; k++) pr[k] = (float)pacc[k];
    ngt_nnet_set_priors(first, pr);
    free(pr);
  } else if (first->priors) {
    ngt_warn("not every input has priors; the output has none");
    free(first->priors);
    first->priors = NULL;
  }
  if (ngt_nnet_save(first, out, NULL, 0, &err)) {
    return ngt_fail("%s", err.msg);
  }
  printf("avgmodel: wrote %s, the %s average of %d model(s)\n", out,
         weights ? "weighted" : "uniform", n);
  ngt_nnet_free(first);
  free(acc);
  free(pacc);
  free(w);
  free(pos);
  return 0;
}

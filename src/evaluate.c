/* evaluate.c — see include/ngtrain/evaluate.h. */
#include "ngtrain/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ngt_check_model_data(const ngt_nnet *net, int feat_dim, int num_classes, const char *what,
                         ngt_err *err) {
  if (feat_dim != net->feat_dim)
    return ngt_err_set(err, NGT_EFORMAT,
                       "%s has feat_dim=%d but the network's input line says dim=%d "
                       "(use data and a config that agree)",
                       what, feat_dim, net->feat_dim);
  if (num_classes != net->num_classes)
    return ngt_err_set(err, NGT_EFORMAT,
                       "%s has num_classes=%d but the network's output line says dim=%d "
                       "(set 'output dim=%d' in the config)",
                       what, num_classes, net->num_classes, num_classes);
  return 0;
}

int ngt_evaluate(const ngt_nnet *net, const ngt_frameset *fs, int minibatch, double *post_sum,
                 ngt_eval_result *res, ngt_err *err) {
  memset(res, 0, sizeof *res);
  int rc = ngt_check_model_data(net, fs->feat_dim, fs->num_classes, "the evaluation data", err);
  if (rc) return rc;
  if (minibatch < 1) minibatch = 512;
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, minibatch);
  ngt_mat X = ngt_mat_alloc(minibatch, net->input_dim);
  int32_t *y = ngt_xmalloc(sizeof(int32_t) * (size_t)minibatch);
  const int C = net->num_classes;
  if (post_sum) memset(post_sum, 0, sizeof(double) * (size_t)C);
  double obj = 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < fs->n_sel; i += minibatch) {
    int n = (int)(fs->n_sel - i < minibatch ? fs->n_sel - i : minibatch);
    ngt_frameset_splice(fs, i, n, net->ctx_left, net->ctx_right, X, y);
    ngt_nnet_forward(net, ws, ngt_mat_rows(X, 0, n));
    int nc = 0;
    obj += ngt_nnet_objective(net, ws, y, &nc);
    correct += nc;
    if (post_sum) {
      ngt_mat lp = ws->out[net->num_comps - 1];
      for (int r = 0; r < n; r++)
        for (int c = 0; c < C; c++) post_sum[c] += exp((double)NGT_AT(lp, r, c));
    }
  }
  res->frames = fs->n_sel;
  res->objective = fs->n_sel ? obj / (double)fs->n_sel : 0.0;
  res->accuracy = fs->n_sel ? (double)correct / (double)fs->n_sel : 0.0;
  free(y);
  ngt_mat_free(&X);
  ngt_nnet_ws_free(ws);
  return 0;
}

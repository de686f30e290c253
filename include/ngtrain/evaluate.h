/* evaluate.h — objective and frame accuracy of a model on in-memory frames, and the
 * average posterior (for priors, docs/algorithm.md §4.5).
 *
 *   ngt_eval_result r;
 *   if (ngt_evaluate(net, fs, 512, NULL, &r, &err)) ...
 *   printf("objective %.4f accuracy %.2f%%\n", r.objective, 100 * r.accuracy);
 */
#ifndef NGTRAIN_EVALUATE_H
#define NGTRAIN_EVALUATE_H

#include <stdint.h>

#include "ngtrain/batcher.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet.h"

typedef struct ngt_eval_result {
  double objective; /* average log p(label) per frame (Kaldi's "log-prob per frame") */
  double accuracy;  /* fraction of frames whose argmax is the label */
  int64_t frames;
} ngt_eval_result;

/* Evaluate net on every selected frame of fs in minibatches of `minibatch` rows.
 * If post_sum is non-NULL it receives the sum over frames of the posteriors (C values,
 * double). Errors: dimension mismatch between the model and the data (names both). */
int ngt_evaluate(const ngt_nnet *net, const ngt_frameset *fs, int minibatch, double *post_sum,
                 ngt_eval_result *res, ngt_err *err);

/* Check that a model fits data of feat_dim / num_classes; the message names `what`. */
int ngt_check_model_data(const ngt_nnet *net, int feat_dim, int num_classes, const char *what,
                         ngt_err *err);

#endif

/* checkpoint.h — the training state a checkpoint holds, typed, read and written in one
 * place (docs/design.md §5.2; resume is exact, docs/algorithm.md §4).
 *
 * A checkpoint N.h5 is the model after N iterations (nnet_io.h) plus /train_state:
 *   iter        int64 [1]            N
 *   num_iters   int64 [1]            iterations of the whole run
 *   positions   int64 [W]            frames each worker's data stream has delivered
 *   signature   float64 [SIG]        numbers that must agree with a resuming command
 *   pending     float64 [PM]         metrics of iteration N-1, logged once model N is validated
 *   ngstate     float64 [W x S]      every worker's NG state (absent for plain SGD)
 *   bmuf_delta  float32 [P]          BMUF block momentum (--averaging=bmuf only)
 *   archives    int64 [2]            p_N (archive reads handed out before iteration N) and A
 *                                    (--data-placement=shared only; archives.h)
 * The float64 arrays are stored positionally (the on-disk layout is unchanged); their
 * fields are named here, by ngt_train_signature_fields / ngt_train_metrics_fields, so
 * ngtrain and nninfo interpret them the same way.
 *
 *   ngt_train_state st; ngt_train_state_init(&st);
 *   if (ngt_checkpoint_read_state("exp/12.h5", &st, &err)) ...
 *   ngt_train_state_print(&st, stdout);
 *   ngt_train_state_deinit(&st);
 */
#ifndef NGTRAIN_CHECKPOINT_H
#define NGTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ngtrain/log.h"
#include "ngtrain/nnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Numbers that must agree between a checkpoint and the command that resumes it. Text
 * options are stored as a 53-bit hash (exact in a double). Field order = stored order. */
typedef struct ngt_train_signature {
  double seed, ranks, samples_per_iter, num_epochs, initial_lrate, final_lrate;
  double jobs_initial, jobs_final, jobs_step, minibatch, max_param_change;
  double natural_gradient, preconditioner, config, train, bmuf;
  double data_placement; /* 0 shared, 1 local */
  double optimizer;      /* 0 sgd, 1 adam */
  double momentum, adam_beta1, adam_beta2, adam_epsilon;
} ngt_train_signature;

/* The summary of one iteration (what metrics.jsonl and the log line print). */
typedef struct ngt_train_metrics {
  double iter, jobs, lr;
  double objective, accuracy, frames; /* train objective and accuracy per frame */
  double seconds, compute_s, data_wait_s, comm_s, avg_s;
  double max_change, max_param_change; /* fractions of component updates / steps */
  double refused, accepted, epoch;     /* epoch reached after the iteration */
  double cpu_s;     /* CPU seconds of every rank (all threads) since the previous iteration */
  double elapsed_s; /* wall seconds since this run (or resume) started */
} ngt_train_metrics;

/* One named double of a struct above: for storage order and for printing. */
typedef struct ngt_field {
  const char *name; /* the option or metric name (signature: the option that differs) */
  size_t offset;    /* offsetof in the struct */
} ngt_field;

extern const ngt_field ngt_train_signature_fields[];
extern const int ngt_train_signature_nfields;
extern const ngt_field ngt_train_metrics_fields[];
extern const int ngt_train_metrics_nfields;

/* Everything besides the model that a resumed run needs. Arrays are owned by the state
 * (ngt_train_state_deinit frees them). */
typedef struct ngt_train_state {
  int64_t iter; /* the model is the one after `iter` iterations */
  int64_t num_iters;
  int num_workers;    /* W */
  int64_t *positions; /* [W] frames delivered by each worker's data stream */
  ngt_train_signature sig;
  int have_pending; /* pending holds the metrics of iteration iter-1 */
  ngt_train_metrics pending;
  size_t ng_doubles;     /* per worker; 0 = no NG state (plain SGD) */
  double *ngstate;       /* [W x ng_doubles] or NULL */
  size_t bmuf_n;         /* 0 unless BMUF: = num_params */
  float *bmuf_delta;     /* [bmuf_n] or NULL */
  int64_t num_archives;  /* A; 0 = local placement (positions are the data state) */
  int64_t archives_done; /* p_iter: archive reads handed out before iteration iter */
} ngt_train_state;

void ngt_train_state_init(ngt_train_state *st);
void ngt_train_state_deinit(ngt_train_state *st); /* frees the arrays; NULL-tolerant */
/* Allocate zeroed arrays for W workers, ng_doubles per worker, bmuf_n momentum floats. */
void ngt_train_state_alloc(ngt_train_state *st, int W, size_t ng_doubles, size_t bmuf_n);

/* Atomically write net + state to path (nnet_io.h). */
int ngt_checkpoint_write(const char *path, const ngt_nnet *net, const ngt_train_state *st,
                         ngt_err *err);
/* Read path's /train_state into st (allocating its arrays); the model is not read.
 * Errors name the file and the missing or malformed array. */
int ngt_checkpoint_read_state(const char *path, ngt_train_state *st, ngt_err *err);
/* Index of the first signature field that differs (into ngt_train_signature_fields),
 * or -1 if they agree. */
int ngt_train_signature_diff(const ngt_train_signature *a, const ngt_train_signature *b);
/* Human-readable listing by name (nninfo). */
void ngt_train_state_print(const ngt_train_state *st, FILE *out);

/* The newest usable checkpoint of dir for this run: `expect` gives the signature, W,
 * ng_doubles and bmuf_n it must have; `net` gives the structure (its input transform is
 * set aside: the checkpoint decides it). On success copies the checkpoint's parameters
 * and transform into net, its state into *out, and returns its iteration; -1 if there is
 * none. A checkpoint of another run (a signature field differs) is an error naming the
 * option; an unreadable or mismatching one is warned about and the one before is tried. */
int ngt_checkpoint_load_latest(const char *dir, const ngt_train_state *expect, ngt_nnet *net,
                               ngt_train_state *out, ngt_err *err);
/* "<dir>/<iter>.h5" */
void ngt_checkpoint_path(const char *dir, int iter, char *buf, size_t n);
/* Remove "<name>.tmp.<pid>" files a killed writer left in dir (fileio.h); returns how many. */
int ngt_checkpoint_remove_stale_tmp(const char *dir);

#ifdef __cplusplus
}
#endif
#endif

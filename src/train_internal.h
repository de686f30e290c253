/* train_internal.h — what the trainer's files share: the run context, the messages of one
 * iteration, and the coordinator's and worker's entry points (docs/design.md §3;
 * docs/algorithm.md §4). Not installed: train.c (the run), coordinator.c, worker.c.
 *
 * Roles: train.c sets up, runs the iteration protocol and finishes; coordinator.c owns
 * the schedule, job acceptance, averaging, diagnostics, checkpoints of the run directory
 * and the final combination; worker.c owns the data stream, the training steps and its
 * NG state; checkpoint.c (checkpoint.h) the typed state of a checkpoint.
 */
#ifndef NGTRAIN_TRAIN_INTERNAL_H
#define NGTRAIN_TRAIN_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "ngtrain/archives.h"
#include "ngtrain/batcher.h"
#include "ngtrain/checkpoint.h"
#include "ngtrain/coordinator.h"
#include "ngtrain/evaluate.h"
#include "ngtrain/lda.h"
#include "ngtrain/mat.h"
#include "ngtrain/nnet.h"
#include "ngtrain/optim.h"
#include "ngtrain/schedule.h"
#include "ngtrain/train.h"

/* The option strings, parsed once (ngt_train_parse_choices). */
typedef enum { NGT_AVERAGING_MEAN = 0, NGT_AVERAGING_BMUF = 1 } ngt_averaging_type;
typedef enum { NGT_PLACEMENT_SHARED = 0, NGT_PLACEMENT_LOCAL = 1 } ngt_placement_type;
typedef struct ngt_train_choices {
  int precond;   /* ngt_precond_type: NONE (plain SGD), ONLINE, SIMPLE */
  int optimizer; /* ngt_optimizer_type: SGD, ADAM */
  int transform; /* NGT_TRANSFORM_NONE / LDA / CMVN */
  int averaging; /* ngt_averaging_type */
  int placement; /* ngt_placement_type (--data-placement) */
} ngt_train_choices;
/* 0, or 1 with msg naming the option, the value and the accepted values. */
int ngt_train_parse_choices(const ngt_train_opts *o, ngt_train_choices *ch, char *msg, size_t n);

/* Broadcast by the coordinator at the top of every iteration. */
typedef struct ngt_iter_header {
  int32_t iter; /* iteration index, or -1 = stop */
  int32_t jobs; /* active workers: 0 .. jobs-1 */
  int32_t minibatch;
  int32_t retry;      /* 0, or the retry count of this iteration */
  float lr;           /* learning rate given to every job (jobs x effective) */
  float mpc_scale;    /* max-change scale (1/sqrt(2) on iteration 0) */
  int64_t first_read; /* shared placement: p_i, so job j reads archive (p_i + j) mod A */
} ngt_iter_header;

/* What each rank reports after training (gathered on the coordinator). */
typedef struct ngt_worker_stats {
  double obj; /* sum of log p(label) over the iteration's frames */
  double frames;
  double correct;
  double t_compute, t_data; /* seconds */
  double t_cpu;             /* this process's CPU seconds since its previous report */
  int64_t position;         /* batcher position after the iteration */
  int64_t steps, refused, comp_clipped, comp_steps, global_clipped;
  int32_t finite; /* objective and parameters finite */
  int32_t active;
} ngt_worker_stats;

typedef struct ngt_train_ctx {
  const ngt_train_opts *o;
  ngt_train_choices ch;
  int rank, size, W; /* W workers */
  int worker;        /* this rank's worker index, -1 on a pure coordinator */
  char **paths;      /* all training shards, sorted */
  int n_paths;
  ngt_nnet *net; /* the model (params = model_i while training) */
  ngt_schedule sched;
  int64_t total_frames;
  int64_t spi;          /* frames per job per iteration: --samples-per-iter, or automatic when 0 */
  int64_t num_archives; /* A (shared placement; 0 = local) */
  uint64_t data_seed;   /* the archive cut and order (independent of the worker) */
  ngt_archives *arch;   /* coordinator, shared placement: the archive plan */
  int64_t *shard_frames; /* coordinator: frames of each shard */
  size_t ng_doubles;     /* NG state per worker (every rank knows it) */
  ngt_train_state st;    /* positions, NG states, BMUF momentum, signature, pending
                             * metrics: complete on the coordinator; positions and (on
                             * resume) NG states are broadcast to the workers */
  /* worker */
  ngt_batcher *batch;
  ngt_optim *opt;
  ngt_nnet_ws *ws;
  ngt_mat X;
  int32_t *y;
  double *ng_snapshot; /* NG state at the start of the iteration (retries) */
  /* coordinator */
  ngt_frameset *valid;
  ngt_frameset *subset; /* training subset: combination and priors */
  FILE *metrics;
  float *sum;         /* reduction target, num_params */
  float *bmuf_global; /* BMUF: W_g */
  int progress;
  double t_start;
  double valid_s, valid_cpu_s; /* wall and CPU seconds of the evaluation being logged */
} ngt_train_ctx;

/* Coordinator-decided failure known on rank 0 only: broadcast it, then all stop. */
void ngt_train_sync_status(int code, const char *msg);
_Noreturn void ngt_train_fail_local(const char *msg);
/* The optimizer options of this run (one mapping for the worker and the size probe). */
ngt_optim_opts ngt_train_optim_opts(const ngt_train_ctx *c);

/* ---- coordinator.c */
int ngt_coord_check_opts(const ngt_train_opts *o, char *msg, size_t n);
void ngt_coord_make_signature(ngt_train_ctx *c);
/* Run directory: resume from the newest checkpoint or start fresh; returns the first
 * iteration (every rank), *finished = 1 if final.h5 is already there. */
int ngt_coord_open_run(ngt_train_ctx *c, int *finished);
void ngt_coord_print_startup(const ngt_train_ctx *c);
void ngt_coord_load_frames(ngt_train_ctx *c);
void ngt_coord_compute_transform(ngt_train_ctx *c);
/* Header of iteration it (rank 0 fills it; -1 = stop). */
void ngt_coord_header(ngt_train_ctx *c, int it, int start, int retry, float lr_scale,
                      ngt_iter_header *h);
/* Checkpoint model_it (if write: not the checkpoint a resume started from) and log the
 * previous iteration's metrics once model_it is validated. */
void ngt_coord_checkpoint_and_validate(ngt_train_ctx *c, int it, int write);
/* Acceptance over the gathered stats (one per rank) into accept[size]; warns about jobs
 * left out. Returns the number accepted. */
int ngt_coord_accept(ngt_train_ctx *c, int it, const ngt_worker_stats *all, int32_t *accept);
/* c->sum holds the sum of the accepted models: model_{it+1} into c->net->params. */
void ngt_coord_average(ngt_train_ctx *c, int n_accept);
/* The model the workers start from: W_g (+ η Δ under BMUF) into out. */
void ngt_coord_lookahead(const ngt_train_ctx *c, float *out);
/* Positions after the iteration (also after a retry). */
void ngt_coord_take_positions(ngt_train_ctx *c, const ngt_worker_stats *all);
/* The pending metrics of iteration it. */
void ngt_coord_record(ngt_train_ctx *c, const ngt_iter_header *h, const ngt_worker_stats *all,
                      int n_acc, double seconds, double comm, double t_avg);
/* Last checkpoint, combination, priors, final.h5 (or the stop message). */
void ngt_coord_finish(ngt_train_ctx *c, int stopped_early, int stop_iter);

/* Data placement (coordinator.c): the start-up line, the local-placement checks, the
 * coverage at the end. */
void ngt_coord_check_placement(ngt_train_ctx *c);
void ngt_coord_print_coverage(const ngt_train_ctx *c);

/* ---- worker.c */
void ngt_worker_setup(ngt_train_ctx *c);
/* Train one iteration; params in c->net are overwritten. */
void ngt_worker_train(ngt_train_ctx *c, const ngt_iter_header *h, ngt_worker_stats *st);
/* Input-transform statistics of this worker's shards into st (§4.9). */
void ngt_worker_lda_stats(ngt_train_ctx *c, ngt_lda_stats *st);
/* This worker's shards (worker w owns w, w+W, ...); *n set; caller frees the array. */
char **ngt_worker_shards(const ngt_train_ctx *c, int *n);

#endif

/* train.h — the training loop: coordinator and workers (docs/design.md §3, docs/algorithm.md §4).
 *
 * Rank 0 is the coordinator; ranks 1..K-1 are workers; with one rank the process is
 * both. Per iteration i (§4.2-4.3): the coordinator broadcasts a header (jobs n_i,
 * lr_i = n_i·η_eff(i), minibatch, max-change scale, p_i) and the model; workers
 * 0..n_i-1 each run a job: job j reads archive (p_i + j) mod A of the whole corpus
 * (archives.h; --data-placement=local: samples_per_iter frames of its own shards
 * w, w+W, ...); the coordinator gathers their objectives, accepts the finite ones
 * within 1.0 of the best (iteration 0: only the best), and averages the accepted models
 * with one reduction of the flat parameter buffer (or BMUF, --averaging=bmuf).
 * While the workers train, the coordinator writes the checkpoint of the model they
 * started from and evaluates it on the validation set. At the end: the best-n newest
 * models are averaged (n chosen on a training subset, §4.4), priors are estimated from
 * the average posterior (§4.5), and final.h5 is written.
 *
 *   ngt_train_opts o = ngt_train_opts_default();
 *   o.config = "nnet.cfg"; o.train = "shards/train-[0-9]*.h5"; o.valid = "dev.h5"; o.dir = "exp/run1";
 *   return ngt_train_run(&o);   // call between ngt_comm_init and ngt_comm_finalize
 */
#ifndef NGTRAIN_TRAIN_H
#define NGTRAIN_TRAIN_H

#include <stdint.h>

typedef struct ngt_train_opts {
  const char *config; /* --config: network config file */
  const char *train;  /* --train: glob of training shards */
  const char *valid;  /* --valid: validation shard(s) (optional) */
  const char *dir;    /* --dir: run directory */
  double num_epochs;  /* --num-epochs (Kaldi train_dnn.py: 8) */
  double initial_effective_lrate,
      final_effective_lrate;                           /* 0.001, 0.0001 (Kaldi: 0.0003, 0.00003) */
  int num_jobs_initial, num_jobs_final, num_jobs_step; /* 1, 0 = #workers, 1 */
  int64_t samples_per_iter;                    /* frames per job per iteration; 0 = automatic */
  int minibatch_size;                          /* 512 (halved on iteration 0) */
  float max_param_change;                      /* 2.0 (/sqrt(2) on iteration 0) */
  int use_natural_gradient;                    /* 1 (must be false with adam) */
  const char *optimizer;                       /* "sgd" (plain or NG-SGD) | "adam" */
  double momentum;                             /* SGD momentum, Kaldi nnet3 meaning (0 = off) */
  double adam_beta1, adam_beta2, adam_epsilon; /* 0.9, 0.999, 1e-8 */
  const char *preconditioner;                  /* "online" | "simple" */
  int rank_in, rank_out, update_period;
  double num_samples_history, alpha;
  int ng_reset_each_iter; /* 0: the Fisher state survives across iterations */
  uint64_t seed;
  int keep_models;             /* checkpoints kept besides the combination window (3) */
  int max_models_combine;      /* 20 */
  int do_final_combination;    /* 1 */
  int64_t combine_frames;      /* training frames for the combination (10000) */
  int64_t prior_subset_size;   /* training frames for the priors (20000) */
  int64_t valid_frames;        /* max validation frames evaluated per iteration (0 = all) */
  const char *input_transform; /* "lda" | "cmvn" | "none" */
  int64_t lda_frames;          /* 200000 */
  double lda_within_class_factor, lda_max_singular_value; /* 0.001, 5.0 */
  int64_t shuffle_buffer;                                 /* frames per shuffled chunk (500000) */
  const char *averaging;                                  /* "average" | "bmuf" */
  double block_momentum;                                  /* BMUF η; < 0 = 1 - 1/num_jobs_final */
  double block_lr;                                        /* BMUF ζ, 1.0 */
  int max_retries;     /* retries of an iteration whose every job diverged (3) */
  int progress;        /* progress line: -1 auto (terminal), 0 off, 1 on */
  int stop_after;      /* testing: stop (as if killed) after this many iterations; 0 = off */
  int debug_save_jobs; /* testing: each job writes DIR/job-<iter>-<worker>.h5 before averaging */
  const char *data_placement; /* "shared" (default): job j of iteration i reads archive
                              * (p_i + j) mod A of the whole corpus (Kaldi); "local":
                              * worker w reads its own shards w, w+W, ... */
} ngt_train_opts;

ngt_train_opts ngt_train_opts_default(void);
/* Runs the whole training on every rank; returns 0 on success. Fatal errors print once
 * and stop every rank. */
int ngt_train_run(const ngt_train_opts *o);

#endif

/* ngtrain.c — the trainer: parse options, start MPI, run the training loop.
 *
 *   mpirun -np 5 ngtrain --config=nnet.cfg --train='shards/train-[0-9]*.h5' --valid=dev.h5 --dir=exp/run1
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/comm.h"
#include "ngtrain/engine.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/opts.h"
#include "ngtrain/train.h"

static const ngt_tool tool = {
    "ngtrain",
    "train a feed-forward acoustic DNN with natural-gradient SGD and parameter\n"
    "averaging (Kaldi nnet2/nnet3 recipe) on HDF5 shards, on one or many MPI ranks.\n"
    "Rank 0 coordinates, ranks 1..K-1 train; -np 1 (or no mpirun) runs one process.\n"
    "Rerunning the same command on the same --dir resumes from the last checkpoint.",
    "mpirun -np K ngtrain [options] --config=nnet.cfg --train='shards/*.h5' --dir=DIR",
    "mpirun -np 3 ngtrain --config=data/nnet-small.cfg --train='data/train-*.h5' \\\n"
    "    --valid=data/dev.h5 --dir=exp/demo --num-epochs=4 --samples-per-iter=20000",
    NULL,
    0,
    0};

int main(int argc, char **argv) {
  ngt_train_opts o = ngt_train_opts_default();
  int threads = 1, verbose = 0;
  const char *precision = "auto";
  ngt_opt table[] = {
      {"config", NGT_OPT_STRING, &o.config, "network config file (see data/nnet-small.cfg)", 0},
      {"train", NGT_OPT_STRING, &o.train, "training shards: a file or a quoted glob", 0},
      {"valid", NGT_OPT_STRING, &o.valid, "validation shard(s) for per-iteration diagnostics", 0},
      {"dir", NGT_OPT_STRING, &o.dir, "run directory: checkpoints, final.h5, metrics.jsonl", 0},
      {"num-epochs", NGT_OPT_DOUBLE, &o.num_epochs, "passes over the training data", 0},
      {"initial-effective-lrate", NGT_OPT_DOUBLE, &o.initial_effective_lrate,
       "effective learning rate at the start (each job uses jobs x this)", 0},
      {"final-effective-lrate", NGT_OPT_DOUBLE, &o.final_effective_lrate,
       "effective learning rate at the end (exponential decay)", 0},
      {"num-jobs-initial", NGT_OPT_INT, &o.num_jobs_initial, "parallel jobs at the start", 0},
      {"num-jobs-final", NGT_OPT_INT, &o.num_jobs_final,
       "parallel jobs at the end (0 = number of workers)", 0},
      {"num-jobs-step", NGT_OPT_INT, &o.num_jobs_step, "jobs change in multiples of this", 0},
      {"samples-per-iter", NGT_OPT_INT64, &o.samples_per_iter,
       "frames each job trains between two averagings; 0 = automatic: the corpus / "
       "max(round(corpus / 400000), 4 x num-jobs-final)",
       0},
      {"minibatch-size", NGT_OPT_INT, &o.minibatch_size,
       "frames per minibatch (halved on iteration 0)", 0},
      {"max-param-change", NGT_OPT_FLOAT, &o.max_param_change,
       "global max-change of one step (0 = off)", 0},
      {"use-natural-gradient", NGT_OPT_BOOL, &o.use_natural_gradient,
       "precondition gradients with NG-SGD", 0},
      {"optimizer", NGT_OPT_STRING, &o.optimizer,
       "sgd (plain or NG-SGD) or adam (needs --use-natural-gradient=false; lr ~1e-3 per job)", 0},
      {"momentum", NGT_OPT_DOUBLE, &o.momentum,
       "SGD momentum, Kaldi nnet3's --trainer.momentum (lr scaled by 1-momentum; 0 = off)", 0},
      {"adam-beta1", NGT_OPT_DOUBLE, &o.adam_beta1, "Adam first-moment decay", 0},
      {"adam-beta2", NGT_OPT_DOUBLE, &o.adam_beta2, "Adam second-moment decay", 0},
      {"adam-epsilon", NGT_OPT_DOUBLE, &o.adam_epsilon, "Adam epsilon", 0},
      {"preconditioner", NGT_OPT_STRING, &o.preconditioner,
       "online (Kaldi nnet3) or simple (nnet2 §2.2)", 0},
      {"rank-in", NGT_OPT_INT, &o.rank_in, "NG rank, input side (0 = min(20,(in+1)/2))", 0},
      {"rank-out", NGT_OPT_INT, &o.rank_out, "NG rank, output side (0 = min(80,(out+1)/2))", 0},
      {"update-period", NGT_OPT_INT, &o.update_period, "NG Fisher update period in minibatches",
       0},
      {"num-samples-history", NGT_OPT_DOUBLE, &o.num_samples_history,
       "NG forgetting time in samples", 0},
      {"alpha", NGT_OPT_DOUBLE, &o.alpha, "NG smoothing towards the identity", 0},
      {"ng-reset-each-iter", NGT_OPT_BOOL, &o.ng_reset_each_iter,
       "restart the Fisher estimate every iteration (Kaldi)", 0},
      {"seed", NGT_OPT_UINT64, &o.seed, "random seed (init, data order, subsets)", 0},
      {"keep-models", NGT_OPT_INT, &o.keep_models,
       "checkpoints kept (plus the combination window)", 0},
      {"max-models-combine", NGT_OPT_INT, &o.max_models_combine,
       "newest models considered by the final combination", 0},
      {"do-final-combination", NGT_OPT_BOOL, &o.do_final_combination,
       "average the best-n newest models at the end", 0},
      {"combine-frames", NGT_OPT_INT64, &o.combine_frames,
       "training frames used to choose the combination", 0},
      {"prior-subset-size", NGT_OPT_INT64, &o.prior_subset_size,
       "training frames used to estimate priors", 0},
      {"valid-frames", NGT_OPT_INT64, &o.valid_frames,
       "max validation frames per iteration (0 = all)", 0},
      {"input-transform", NGT_OPT_STRING, &o.input_transform,
       "lda, cmvn or none (fixed first layer)", 0},
      {"lda-frames", NGT_OPT_INT64, &o.lda_frames, "frames for the input transform statistics", 0},
      {"lda-within-class-factor", NGT_OPT_DOUBLE, &o.lda_within_class_factor,
       "LDA within-class factor", 0},
      {"lda-max-singular-value", NGT_OPT_DOUBLE, &o.lda_max_singular_value,
       "LDA singular-value ceiling", 0},
      {"shuffle-buffer", NGT_OPT_INT64, &o.shuffle_buffer,
       "frames per shuffled chunk held in memory", 0},
      {"data-placement", NGT_OPT_STRING, &o.data_placement,
       "shared (every rank sees every shard: job j of iteration i reads archive (p_i+j) mod A, "
       "Kaldi) or local (worker w reads shards w, w+W, ... on its own disk)",
       0},
      {"averaging", NGT_OPT_STRING, &o.averaging, "average (Kaldi) or bmuf (block momentum)", 0},
      {"block-momentum", NGT_OPT_DOUBLE, &o.block_momentum,
       "BMUF block momentum (<0: 1-1/num-jobs-final)", 0},
      {"block-lr", NGT_OPT_DOUBLE, &o.block_lr, "BMUF block learning rate", 0},
      {"max-retries", NGT_OPT_INT, &o.max_retries,
       "retries of an iteration in which every job diverged", 0},
      {"num-threads", NGT_OPT_INT, &threads,
       "cores per rank for all its work (GEMMs, elementwise, NG)", 0},
      {"precision", NGT_OPT_STRING, &precision,
       "GEMM precision: auto (bf16 where the CPU has native bf16), fp32 or bf16", 0},
      {"progress", NGT_OPT_INT, &o.progress, "progress line: -1 auto (terminal), 0 off, 1 on", 0},
      {"verbose", NGT_OPT_INT, &verbose, "log verbosity (Kaldi --verbose): 0, 1, 2", 0},
      {"stop-after", NGT_OPT_INT, &o.stop_after,
       "stop after this many iterations (testing resume)", 0},
      {"debug-save-jobs", NGT_OPT_BOOL, &o.debug_save_jobs,
       "each job writes DIR/job-ITER-WORKER.h5 (testing)", 0},
      {0, 0, 0, 0, 0}};

  ngt_comm_init(&argc, &argv);
  char **pos = NULL;
  int npos = 0, code = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) {
    ngt_comm_finalize(); /* every rank parsed the same argv and leaves the same way */
    return code;
  }
  free(pos);
  if (threads < 1) ngt_comm_fail_all("--num-threads must be >= 1");
  if (verbose < 0 || verbose > 3) ngt_comm_fail_all("--verbose must be 0..3");
  ngt_log_set_level(NGT_INFO + verbose);
  int prec = NGT_PREC_AUTO;
  ngt_err err = {0};
  if (ngt_precision_parse(precision, &prec, &err) || ngt_engine_setup(prec, threads, &err))
    ngt_comm_fail_all(err.msg);
  if (ngt_comm_rank() == 0 && verbose >= 1) {
    printf("resolved options:\n");
    ngt_opts_print_values(table, stdout);
  }
  int rc = ngt_train_run(&o);
  ngt_comm_finalize();
  return rc ? NGT_EXIT_FAILURE : NGT_EXIT_OK;
}

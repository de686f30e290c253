/* train.c — one training run: set-up, the iteration protocol, the end; see
 * include/ngtrain/train.h, docs/algorithm.md §4 and docs/design.md §3. The
 * decisions live in coordinator.c, the training in worker.c, the saved state in
 * checkpoint.c.
 *
 * Protocol of one iteration i (K ranks, W = max(1, K-1) workers):
 *   coordinator                              worker w (active iff w < n_i)
 *   bcast header {i, n_i, lr_i, mb, ...} ──► recv header
 *   bcast params (model_i)               ──► recv params
 *   write checkpoint i, validate model_i     train samples_per_iter frames
 *   gather stats (objective, position) ◄──   send stats
 *   bcast accept mask                    ──► recv mask
 *   reduce Σ accepted params            ◄──   send params (or zeros)
 *   gatherv NG state (for checkpoints)  ◄──   send NG state
 *   model_{i+1} = mean (or BMUF)
 * With K = 1 the same steps run in one process without MPI traffic.
 */
#include "ngtrain/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/comm.h"
#include "ngtrain/fileio.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"
#include "train_internal.h"

ngt_train_opts ngt_train_opts_default(void) {
  ngt_train_opts o;
  memset(&o, 0, sizeof o);
  o.num_epochs = 8.0;
  o.initial_effective_lrate = 0.001;
  o.final_effective_lrate = 0.0001;
  o.num_jobs_initial = 1;
  o.num_jobs_final = 0;
  o.num_jobs_step = 1;
  o.samples_per_iter = 0;
  o.minibatch_size = 512;
  o.max_param_change = 2.0f;
  o.use_natural_gradient = 1;
  o.optimizer = "sgd";
  o.momentum = 0.0;
  o.adam_beta1 = 0.9;
  o.adam_beta2 = 0.999;
  o.adam_epsilon = 1e-8;
  o.preconditioner = "online";
  o.update_period = 4;
  o.num_samples_history = 2000.0;
  o.alpha = 4.0;
  o.keep_models = 3;
  o.max_models_combine = 20;
  o.do_final_combination = 1;
  o.combine_frames = 10000;
  o.prior_subset_size = 20000;
  o.valid_frames = 0;
  o.input_transform = "lda";
  o.lda_frames = 200000;
  o.lda_within_class_factor = 0.001;
  o.lda_max_singular_value = 5.0;
  o.shuffle_buffer = 500000;
  o.averaging = "average";
  o.data_placement = "shared";
  o.block_momentum = -1.0;
  o.block_lr = 1.0;
  o.max_retries = 3;
  o.progress = -1;
  return o;
}

int ngt_train_parse_choices(const ngt_train_opts *o, ngt_train_choices *ch, char *msg, size_t n) {
  if (!strcmp(o->preconditioner, "online")) ch->precond = NGT_PRECOND_ONLINE;
  else if (!strcmp(o->preconditioner, "simple"))
    ch->precond = NGT_PRECOND_SIMPLE;
  else
    return snprintf(msg, n, "--preconditioner=%s: use online or simple", o->preconditioner), 1;
  if (!o->use_natural_gradient) ch->precond = NGT_PRECOND_NONE;
  const char *op = o->optimizer ? o->optimizer : "sgd";
  if (!strcmp(op, "sgd")) ch->optimizer = NGT_OPTIMIZER_SGD;
  else if (!strcmp(op, "adam"))
    ch->optimizer = NGT_OPTIMIZER_ADAM;
  else
    return snprintf(msg, n, "--optimizer=%s: use sgd (plain or NG-SGD) or adam", op), 1;
  if (ch->optimizer == NGT_OPTIMIZER_ADAM && ch->precond != NGT_PRECOND_NONE)
    return snprintf(msg, n,
                    "--optimizer=adam does not combine with natural gradient: add "
                    "--use-natural-gradient=false"),
           1;
  if (!strcmp(o->input_transform, "lda")) ch->transform = NGT_TRANSFORM_LDA;
  else if (!strcmp(o->input_transform, "cmvn"))
    ch->transform = NGT_TRANSFORM_CMVN;
  else if (!strcmp(o->input_transform, "none"))
    ch->transform = NGT_TRANSFORM_NONE;
  else
    return snprintf(msg, n, "--input-transform=%s: use lda, cmvn or none", o->input_transform), 1;
  if (!strcmp(o->averaging, "average")) ch->averaging = NGT_AVERAGING_MEAN;
  else if (!strcmp(o->averaging, "bmuf"))
    ch->averaging = NGT_AVERAGING_BMUF;
  else
    return snprintf(msg, n, "--averaging=%s: use average or bmuf", o->averaging), 1;
  const char *dp = o->data_placement ? o->data_placement : "shared";
  if (!strcmp(dp, "shared")) ch->placement = NGT_PLACEMENT_SHARED;
  else if (!strcmp(dp, "local"))
    ch->placement = NGT_PLACEMENT_LOCAL;
  else
    return snprintf(msg, n,
                    "--data-placement=%s: use shared (shards on a filesystem every "
                    "rank sees) or local (worker w reads shards w, w+W, ... on its own disk)",
                    dp),
           1;
  return 0;
}

_Noreturn void ngt_train_fail_local(const char *msg) { ngt_die("%s", msg); }

void ngt_train_sync_status(int code, const char *msg) {
  struct {
    int32_t code;
    char msg[1024];
  } st;
  memset(&st, 0, sizeof st);
  st.code = code;
  if (msg) snprintf(st.msg, sizeof st.msg, "%s", msg);
  ngt_err e = {0};
  if (ngt_comm_bcast(&st, sizeof st, 0, &e)) ngt_train_fail_local(e.msg);
  if (st.code) ngt_comm_fail_all(st.msg);
}

ngt_optim_opts ngt_train_optim_opts(const ngt_train_ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_optim_opts oo = ngt_optim_opts_default();
  oo.use_natural_gradient = c->ch.precond != NGT_PRECOND_NONE;
  oo.preconditioner = c->ch.precond == NGT_PRECOND_SIMPLE ? NGT_PRECOND_SIMPLE
                                                          : NGT_PRECOND_ONLINE;
  oo.rank_in = o->rank_in;
  oo.rank_out = o->rank_out;
  oo.update_period = o->update_period;
  oo.num_samples_history = o->num_samples_history;
  oo.alpha = o->alpha;
  oo.max_param_change = o->max_param_change;
  oo.optimizer = c->ch.optimizer;
  oo.momentum = o->momentum;
  oo.adam_beta1 = o->adam_beta1;
  oo.adam_beta2 = o->adam_beta2;
  oo.adam_epsilon = o->adam_epsilon;
  return oo;
}

/* Everything every rank can check identically fails collectively (printed once): options,
 * config, shards, ranks; then the schedule, the signature and the state's sizes. */
static void setup(ngt_train_ctx *c, const ngt_train_opts *o) {
  memset(c, 0, sizeof *c);
  c->o = o;
  c->rank = ngt_comm_rank();
  c->size = ngt_comm_size();
  c->W = c->size > 1 ? c->size - 1 : 1;
  c->worker = c->size > 1 ? c->rank - 1 : 0;
  c->t_start = ngt_now();
  ngt_train_state_init(&c->st);
  ngt_err err = {0};
  char msg[1024];
  if (ngt_coord_check_opts(o, msg, sizeof msg) ||
      ngt_train_parse_choices(o, &c->ch, msg, sizeof msg))
    ngt_comm_fail_all(msg);
  if (ngt_nnet_from_config_file(o->config, &c->net, &err)) ngt_comm_fail_all(err.msg);
  if (ngt_glob_paths(o->train, &c->paths, &c->n_paths, &err)) {
    snprintf(msg, sizeof msg, "--train: %s", err.msg);
    ngt_comm_fail_all(msg);
  }
  if (c->ch.placement == NGT_PLACEMENT_LOCAL && c->n_paths < c->W) {
    snprintf(msg, sizeof msg,
             "--train='%s' matches %d shard(s) but there are %d workers "
             "(with --data-placement=local each worker needs at least one shard: run with mpirun "
             "-np %d or fewer, make more shards with mkshards --num-shards, or put the shards "
             "where every rank sees them and use --data-placement=shared)",
             o->train, c->n_paths, c->W, c->n_paths + 1);
    ngt_comm_fail_all(msg);
  }
  int j1 = o->num_jobs_final > 0 ? o->num_jobs_final : c->W;
  if (j1 > c->W) {
    snprintf(msg, sizeof msg,
             "--num-jobs-final=%d is more than the %d worker rank(s) "
             "(run mpirun -np %d, or lower --num-jobs-final)",
             j1, c->W, j1 + 1);
    ngt_comm_fail_all(msg);
  }
  if (o->num_jobs_initial > j1) {
    snprintf(msg, sizeof msg, "--num-jobs-initial=%d is more than --num-jobs-final=%d",
             o->num_jobs_initial, j1);
    ngt_comm_fail_all(msg);
  }

  /* Rank 0 reads every shard's header: totals and early, clear errors. */
  int code = 0;
  msg[0] = '\0';
  int64_t total = 0;
  c->data_seed = ngt_rng_mix(o->seed, 1000);
  if (c->rank == 0) {
    const int shared = c->ch.placement == NGT_PLACEMENT_SHARED;
    int64_t **off = ngt_xcalloc((size_t)c->n_paths, sizeof(int64_t *));
    int64_t *U = ngt_xcalloc((size_t)c->n_paths, sizeof(int64_t));
    c->shard_frames = ngt_xcalloc((size_t)c->n_paths, sizeof(int64_t));
    for (int i = 0; i < c->n_paths && !code; i++) {
      ngt_shard *sh = NULL;
      if (ngt_shard_open(c->paths[i], &sh, &err) ||
          ngt_check_model_data(c->net, sh->feat_dim, sh->num_classes, c->paths[i], &err)) {
        code = err.code ? err.code : NGT_EFORMAT;
        snprintf(msg, sizeof msg, "%s", err.msg);
      } else {
        total += sh->num_frames;
        c->shard_frames[i] = sh->num_frames;
        U[i] = sh->num_utts;
        off[i] = ngt_xmalloc(sizeof(int64_t) * (size_t)(U[i] + 1));
        memcpy(off[i], sh->utt_offsets, sizeof(int64_t) * (size_t)(U[i] + 1));
      }
      ngt_shard_close(sh);
    }
    /* the archive plan: A archives of about samples_per_iter frames (archives.h) */
    if (!code && shared && total > 0) {
      c->spi = ngt_samples_per_iter(o->samples_per_iter, total, j1);
      int64_t A = ngt_archives_count_for(total, c->spi);
      if (ngt_archives_new(c->n_paths, (const int64_t *const *)off, U, A,
                           ngt_archives_unit_for(total, A, o->shuffle_buffer), c->data_seed,
                           &c->arch, &err)) {
        code = err.code;
        snprintf(msg, sizeof msg, "%s", err.msg);
      }
    }
    for (int i = 0; i < c->n_paths; i++) free(off[i]);
    free(off);
    free(U);
  }
  ngt_train_sync_status(code, msg);
  if (ngt_comm_bcast(&total, sizeof total, 0, &err)) ngt_train_fail_local(err.msg);
  c->total_frames = total;
  c->spi = ngt_samples_per_iter(o->samples_per_iter, total, j1); /* rank 0: again, the same */
  /* Shared placement: the schedule's A is the number of archives the corpus is cut into,
   * so num-epochs x A reads cover every frame num-epochs times. */
  c->num_archives = c->ch.placement == NGT_PLACEMENT_SHARED && total > 0
                        ? ngt_archives_count_for(total, c->spi)
                        : 0;
  int64_t sched_frames = c->num_archives ? c->num_archives * c->spi : total;
  if (ngt_schedule_init(&c->sched, o->num_epochs, sched_frames, c->spi, o->num_jobs_initial, j1,
                        o->num_jobs_step, o->initial_effective_lrate, o->final_effective_lrate,
                        &err))
    ngt_comm_fail_all(err.msg);

  /* Every rank needs the NG state size (the coordinator stores the workers' states). */
  ngt_optim_opts oo = ngt_train_optim_opts(c);
  ngt_optim *probe = NULL;
  if (ngt_optim_new(c->net, &oo, 1, &probe, &err)) ngt_comm_fail_all(err.msg);
  c->ng_doubles = ngt_optim_state_doubles(probe);
  ngt_optim_free(probe);
  const int bmuf = c->ch.averaging == NGT_AVERAGING_BMUF;
  ngt_train_state_alloc(&c->st, c->W, c->ng_doubles, bmuf ? c->net->num_params : 0);
  c->st.num_archives = c->num_archives;
  if (bmuf) c->bmuf_global = ngt_xcalloc(c->net->num_params, sizeof(float));
  ngt_coord_make_signature(c);
  ngt_coord_check_placement(c);
}

/* The model to train from: a fresh start estimates the input transform and initialises
 * the parameters; a resume broadcasts what the coordinator loaded. Then the workers'
 * data streams are positioned and their NG states restored. */
static void start_model_and_workers(ngt_train_ctx *c, int start) {
  ngt_err err = {0};
  if (start == 0) {
    ngt_coord_compute_transform(c);
    if (c->rank == 0) ngt_nnet_init_params(c->net, c->o->seed);
  } else {
    int32_t tt = c->net->transform_type;
    if (ngt_comm_bcast(&tt, sizeof tt, 0, &err)) ngt_train_fail_local(err.msg);
    if (tt != NGT_TRANSFORM_NONE) {
      size_t tn = (size_t)c->net->input_dim * (size_t)(c->net->input_dim + 1);
      float *T = ngt_xmalloc(sizeof(float) * tn);
      if (c->rank == 0) memcpy(T, c->net->transform, sizeof(float) * tn);
      if (ngt_comm_bcast(T, sizeof(float) * tn, 0, &err)) ngt_train_fail_local(err.msg);
      if (c->rank != 0) ngt_nnet_set_transform(c->net, tt, T);
      free(T);
    }
  }
  if (c->bmuf_global && c->rank == 0)
    memcpy(c->bmuf_global, c->net->params, sizeof(float) * c->net->num_params);
  ngt_coord_load_frames(c);
  if (ngt_comm_bcast(c->st.positions, sizeof(int64_t) * (size_t)c->W, 0, &err))
    ngt_train_fail_local(err.msg);
  if (c->worker >= 0) ngt_worker_setup(c);
  if (c->ng_doubles && start > 0) {
    /* scatter the workers' NG states: bcast all (small) and let each take its own */
    if (ngt_comm_bcast(c->st.ngstate, sizeof(double) * (size_t)c->W * c->ng_doubles, 0, &err))
      ngt_train_fail_local(err.msg);
    if (c->worker >= 0 &&
        ngt_optim_state_load(c->opt, c->st.ngstate + (size_t)c->worker * c->ng_doubles,
                             c->ng_doubles, &err))
      ngt_train_fail_local(err.msg);
  }
  if (c->rank == 0) c->sum = ngt_xcalloc(c->net->num_params, sizeof(float));
}

/* Buffers and counters of the iteration loop. */
typedef struct loop {
  int start, retry;
  float lr_scale;
  ngt_worker_stats *all; /* [size] on the coordinator */
  int32_t *accept;       /* [size] */
  size_t *ngbytes;       /* [size] NG state bytes each rank sends */
  double *my_ng;         /* this worker's NG state */
  float *zeros;          /* what a rank outside the average contributes */
  float *lookahead;      /* BMUF: the model sent to the workers */
  double cpu_last;       /* ngt_cpu_now() at this rank's previous report */
} loop;

/* One attempt at iteration it (protocol above). Returns 1 when done, 0 for a retry of
 * the same iteration, -1 when the coordinator says stop. */
static int iterate(ngt_train_ctx *c, loop *L, int it) {
  const size_t P = c->net->num_params;
  ngt_err err = {0};
  ngt_iter_header h;
  ngt_coord_header(c, it, L->start, L->retry, L->lr_scale, &h);
  double t_iter = ngt_now();
  if (ngt_comm_bcast(&h, sizeof h, 0, &err)) ngt_train_fail_local(err.msg);
  if (h.iter < 0) return -1;
  float *send_model = c->net->params;
  if (L->lookahead) {
    ngt_coord_lookahead(c, L->lookahead);
    send_model = L->lookahead;
  }
  if (c->size > 1 && ngt_comm_bcast(send_model, sizeof(float) * P, 0, &err))
    ngt_train_fail_local(err.msg);
  double t_bcast = ngt_now() - t_iter;

  /* coordinator: checkpoint and validate model_it while the workers train */
  if (c->rank == 0 && !L->retry)
    ngt_coord_checkpoint_and_validate(c, it, it > L->start || L->start == 0);
  if (c->size == 1) {
    memcpy(c->sum, c->net->params, sizeof(float) * P); /* model_it, for a retry */
    if (L->lookahead) memcpy(c->net->params, L->lookahead, sizeof(float) * P);
  }

  ngt_worker_stats mine;
  memset(&mine, 0, sizeof mine);
  if (c->worker >= 0 && c->worker < h.jobs) {
    ngt_worker_train(c, &h, &mine);
  } else if (c->worker >= 0) {
    mine.position = ngt_batcher_position(c->batch);
    mine.finite = 1;
  }
  if (c->worker >= 0 && c->ng_doubles) ngt_optim_state_save(c->opt, L->my_ng);
  (void)ngt_comm_take_wait_seconds();
  const double cpu = ngt_cpu_now();
  mine.t_cpu = cpu - L->cpu_last; /* the first report includes the start-up */
  L->cpu_last = cpu;
  if (ngt_comm_gather(&mine, sizeof mine, L->all, 0, &err)) ngt_train_fail_local(err.msg);

  int n_acc = c->rank == 0 ? ngt_coord_accept(c, it, L->all, L->accept) : 0;
  if (ngt_comm_bcast(L->accept, sizeof(int32_t) * (size_t)c->size, 0, &err))
    ngt_train_fail_local(err.msg);
  if (ngt_comm_bcast(&n_acc, sizeof n_acc, 0, &err)) ngt_train_fail_local(err.msg);
  if (n_acc == 0) {
    /* every job diverged: retry from the last model with half the learning rate */
    if (c->rank == 0) {
      L->retry++;
      if (L->retry > c->o->max_retries)
        ngt_die("iteration %d diverged in every job %d times, even at learning rate x%g; "
                "stopping. Lower --initial-effective-lrate (or set --max-param-change / per-layer "
                "max-change) and train again in a new --dir",
                it, L->retry, (double)L->lr_scale);
      L->lr_scale *= 0.5f;
      NGT_LOG(NGT_WARN,
              "iteration %d: every job diverged; retrying with the learning rate "
              "halved (x%g)",
              it, (double)L->lr_scale);
      ngt_coord_take_positions(c, L->all);
    }
    /* model_it is re-broadcast at the top of the loop; one process restores its copy */
    if (c->size == 1) memcpy(c->net->params, c->sum, sizeof(float) * P);
    return 0;
  }

  /* average: one reduction of the flat parameter buffer */
  double t_avg0 = ngt_now();
  const float *contrib = L->accept[c->rank] ? c->net->params : L->zeros;
  if (c->size > 1) {
    if (ngt_comm_reduce_sum_f32(contrib, c->sum, P, 0, &err)) ngt_train_fail_local(err.msg);
  } else {
    memcpy(c->sum, c->net->params, sizeof(float) * P);
  }
  if (c->rank == 0) ngt_coord_average(c, n_acc);
  double t_avg = ngt_now() - t_avg0 + t_bcast;
  if (c->ng_doubles &&
      ngt_comm_gatherv(L->my_ng, c->worker >= 0 ? c->ng_doubles * sizeof(double) : 0,
                       c->st.ngstate, L->ngbytes, 0, &err))
    ngt_train_fail_local(err.msg);
  double comm = ngt_comm_take_wait_seconds();
  if (c->rank == 0) {
    ngt_coord_take_positions(c, L->all);
    ngt_coord_record(c, &h, L->all, n_acc, ngt_now() - t_iter, comm, t_avg);
  }
  L->retry = 0;
  L->lr_scale = 1.0f;
  return 1;
}

static void teardown(ngt_train_ctx *c) {
  if (c->metrics) fclose(c->metrics);
  ngt_batcher_free(c->batch);
  ngt_optim_free(c->opt);
  ngt_nnet_ws_free(c->ws);
  ngt_mat_free(&c->X);
  free(c->y);
  free(c->ng_snapshot);
  ngt_frameset_free(c->valid);
  ngt_frameset_free(c->subset);
  free(c->sum);
  free(c->bmuf_global);
  ngt_archives_free(c->arch);
  free(c->shard_frames);
  ngt_train_state_deinit(&c->st);
  ngt_paths_free(c->paths, c->n_paths);
  ngt_nnet_free(c->net);
}

int ngt_train_run(const ngt_train_opts *o) {
  ngt_train_ctx C_, *c = &C_;
  setup(c, o);
  int finished = 0;
  loop L = {.start = ngt_coord_open_run(c, &finished), .lr_scale = 1.0f};
  if (finished) {
    teardown(c);
    return 0;
  }
  ngt_coord_print_startup(c);
  start_model_and_workers(c, L.start);

  const size_t P = c->net->num_params;
  L.zeros = ngt_xcalloc(P, sizeof(float));
  L.all = c->rank == 0 ? ngt_xcalloc((size_t)c->size, sizeof(ngt_worker_stats)) : NULL;
  L.accept = ngt_xcalloc((size_t)c->size, sizeof(int32_t));
  L.ngbytes = ngt_xcalloc((size_t)c->size, sizeof(size_t));
  for (int r = 0; r < c->size; r++)
    L.ngbytes[r] = (c->size == 1 || r > 0) ? c->ng_doubles * sizeof(double) : 0;
  L.my_ng = ngt_xmalloc(sizeof(double) * (c->ng_doubles ? c->ng_doubles : 1));
  L.lookahead = c->bmuf_global && c->rank == 0 ? ngt_xmalloc(sizeof(float) * P) : NULL;

  int it = L.start, rc;
  while ((rc = iterate(c, &L, it)) >= 0) it += rc;

  ngt_coord_finish(c, it < c->sched.num_iters, it);
  free(L.zeros);
  free(L.all);
  free(L.accept);
  free(L.ngbytes);
  free(L.my_ng);
  free(L.lookahead);
  teardown(c);
  return 0;
}

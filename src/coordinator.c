/* coordinator.c — rank 0's part of training: the schedule's header of each iteration,
 * job acceptance and averaging (pure functions, coordinator.h), diagnostics and metrics,
 * the run directory and its checkpoints, the final combination and priors
 * (docs/algorithm.md §4.2-4.6, §4.9; docs/design.md §3). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ngtrain/comm.h"
#include "ngtrain/engine.h"
#include "ngtrain/fileio.h"
#include "ngtrain/hash.h"
#include "ngtrain/lda.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"
#include "train_internal.h"

/* ---------------------------------------------------------------- pure decisions */

int ngt_accept_jobs(const ngt_job_result *jobs, int n, int iter, int *mask) {
  int best = -1, n_acc = 0;
  double best_obj = -INFINITY;
  for (int j = 0; j < n; j++) {
    const ngt_job_result *s = &jobs[j];
    if (!s->active || s->frames <= 0) continue;
    double pf = s->obj / s->frames;
    if (s->finite && pf > best_obj) {
      best_obj = pf;
      best = j;
    }
  }
  for (int j = 0; j < n; j++) {
    const ngt_job_result *s = &jobs[j];
    mask[j] = NGT_JOB_IDLE;
    if (!s->active || s->frames <= 0) continue;
    if (!s->finite) mask[j] = NGT_JOB_NONFINITE;
    else if (iter == 0)
      mask[j] = j == best ? NGT_JOB_ACCEPTED : NGT_JOB_NOT_BEST;
    else
      mask[j] = s->obj / s->frames >= best_obj - 1.0 ? NGT_JOB_ACCEPTED : NGT_JOB_BELOW_BEST;
    n_acc += mask[j] == NGT_JOB_ACCEPTED;
  }
  return n_acc;
}

void ngt_average_params(const float *sum, int n, size_t P, float *out) {
  float inv = 1.0f / (float)n;
  for (size_t i = 0; i < P; i++) out[i] = sum[i] * inv;
}

void ngt_bmuf_update(const float *sum, int n, size_t P, float eta, float zeta, float *global,
                     float *delta) {
  float inv = 1.0f / (float)n;
  for (size_t i = 0; i < P; i++) {
    float wb = global[i] + eta * delta[i];
    float g = sum[i] * inv - wb;
    delta[i] = eta * delta[i] + zeta * g;
    global[i] += delta[i];
  }
}

void ngt_bmuf_lookahead(const float *global, const float *delta, size_t P, float eta, float *out) {
  for (size_t i = 0; i < P; i++) out[i] = global[i] + eta * delta[i];
}

/* ---------------------------------------------------------------- set-up */

int ngt_coord_check_opts(const ngt_train_opts *o, char *msg, size_t n) {
  if (!o->config)
    return snprintf(msg, n, "--config is required (the network config file; see --help)"), 1;
  if (!o->train)
    return snprintf(msg, n,
                    "--train is required (a glob of training shards, e.g. --train='shards/*.h5')"),
           1;
  if (!o->dir)
    return snprintf(msg, n, "--dir is required (the run directory for checkpoints and final.h5)"),
           1;
  if (o->minibatch_size < 1)
    return snprintf(msg, n, "--minibatch-size=%d must be >= 1", o->minibatch_size), 1;
  if (o->samples_per_iter < 0)
    return snprintf(msg, n, "--samples-per-iter=%" PRId64 " must be >= 1 (or 0: automatic)",
                    o->samples_per_iter),
           1;
  ngt_train_choices ch;
  if (ngt_train_parse_choices(o, &ch, msg, n)) return 1;
  if (o->keep_models < 1)
    return snprintf(msg, n, "--keep-models=%d must be >= 1", o->keep_models), 1;
  if (o->max_param_change < 0)
    return snprintf(msg, n, "--max-param-change=%g must be >= 0", (double)o->max_param_change), 1;
  if (o->block_momentum >= 1.0)
    return snprintf(msg, n, "--block-momentum=%g must be < 1", o->block_momentum), 1;
  if (!(o->block_lr > 0)) return snprintf(msg, n, "--block-lr=%g must be > 0", o->block_lr), 1;
  if (o->combine_frames < 1 || o->prior_subset_size < 1)
    return snprintf(msg, n, "--combine-frames and --prior-subset-size must be >= 1"), 1;
  if (o->lda_frames < 1)
    return snprintf(msg, n, "--lda-frames=%" PRId64 " must be >= 1", o->lda_frames), 1;
  return 0;
}

static double hash_text(const char *s) {
  return (double)(ngt_fnv1a64_str(s) >> 11); /* exact in a double */
}

void ngt_coord_make_signature(ngt_train_ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_train_signature *s = &c->st.sig;
  s->seed = (double)o->seed;
  s->ranks = c->size;
  s->samples_per_iter = (double)c->spi; /* resolved: auto and the same explicit value agree */
  s->num_epochs = o->num_epochs;
  s->initial_lrate = o->initial_effective_lrate;
  s->final_lrate = o->final_effective_lrate;
  s->jobs_initial = o->num_jobs_initial;
  s->jobs_final = c->sched.jobs_final;
  s->jobs_step = o->num_jobs_step;
  s->minibatch = o->minibatch_size;
  s->max_param_change = o->max_param_change;
  s->natural_gradient = o->use_natural_gradient;
  s->preconditioner = hash_text(o->preconditioner);
  s->config = hash_text(c->net->config_text);
  double h = 0;
  for (int i = 0; i < c->n_paths; i++)
    h = fmod(h * 31.0 + hash_text(c->paths[i]), 9007199254740881.0);
  s->train = h;
  s->bmuf = c->ch.averaging == NGT_AVERAGING_BMUF;
  s->data_placement = c->ch.placement;
  s->optimizer = c->ch.optimizer;
  s->momentum = o->momentum;
  s->adam_beta1 = o->adam_beta1;
  s->adam_beta2 = o->adam_beta2;
  s->adam_epsilon = o->adam_epsilon;
}

/* ---------------------------------------------------------------- data placement */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Iterations in which worker w runs a job (local placement: it reads its own shards). */
static int64_t active_iters(const ngt_train_ctx *c, int w) {
  int64_t n = 0;
  for (int i = 0; i < c->sched.num_iters; i++) n += ngt_schedule_jobs(&c->sched, i) > w;
  return n;
}

/* Local placement: shards of workers that never run a job are refused (every rank decides
 * alike); uneven expected passes per worker are warned about (rank 0). */
void ngt_coord_check_placement(ngt_train_ctx *c) {
  if (c->ch.placement != NGT_PLACEMENT_LOCAL) return;
  const int j1 = c->sched.jobs_final;
  if (j1 < c->W) {
    char names[700] = "";
    size_t len = 0;
    int n = 0;
    for (int i = 0; i < c->n_paths; i++) {
      if (i % c->W < j1) continue;
      if (len < sizeof names - 80)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s'%s'", n ? ", " : "",
                                c->paths[i]);
      else if (len < sizeof names - 5)
        len += (size_t)snprintf(names + len, sizeof names - len, ", ...");
      n++;
    }
    char msg[1024];
    snprintf(msg, sizeof msg,
             "--data-placement=local with --num-jobs-final=%d below the %d "
             "workers: workers %d..%d never run a job, so %d shard(s) would never be read: %s. "
             "Use --data-placement=shared (shards on a filesystem every rank sees: Kaldi's "
             "round-robin reads every frame), or --num-jobs-final=%d, or mpirun -np %d",
             j1, c->W, j1, c->W - 1, n, names, c->W, j1 + 1);
    ngt_comm_fail_all(msg);
  }
  if (c->rank != 0) return;
  double *passes = ngt_xcalloc((size_t)c->W, sizeof(double));
  double lo = INFINITY, hi = 0;
  char list[700] = "";
  size_t len = 0;
  for (int w = 0; w < c->W; w++) {
    int64_t Tw = 0;
    for (int i = w; i < c->n_paths; i += c->W) Tw += c->shard_frames[i];
    passes[w] = Tw > 0 ? (double)active_iters(c, w) * (double)c->spi / (double)Tw : 0;
    if (passes[w] < lo) lo = passes[w];
    if (passes[w] > hi) hi = passes[w];
    if (len < sizeof list - 24)
      len += (size_t)snprintf(list + len, sizeof list - len, "%sworker %d %.2f", w ? ", " : "", w,
                              passes[w]);
  }
  if (hi > 1.1 * lo)
    NGT_LOG(NGT_WARN,
            "--data-placement=local reads the data unevenly (job ramp %d -> %d, shard "
            "sizes): expected passes over each worker's own shards: %s (wanted %.2f each). Use "
            "--data-placement=shared for Kaldi's even round-robin",
            c->sched.jobs_initial, j1, list, c->o->num_epochs);
  free(passes);
}

/* Passes over the data per shard at the end of the run: min / median / max. Shared
 * placement: counted from the archive reads handed out; local: expected from the jobs
 * each worker ran. */
void ngt_coord_print_coverage(const ngt_train_ctx *c) {
  if (c->rank != 0) return;
  const int S = c->n_paths;
  double *fr = ngt_xcalloc((size_t)S, sizeof(double));
  const int64_t reads = ngt_schedule_processed(&c->sched, c->sched.num_iters);
  if (c->arch) {
    for (int64_t g = 0; g < reads; g++) {
      ngt_archive_piece *p = NULL;
      int np = 0;
      ngt_archives_pieces(c->arch, g, &p, &np);
      for (int k = 0; k < np; k++) fr[p[k].shard] += (double)(p[k].f1 - p[k].f0);
      free(p);
    }
  } else {
    for (int w = 0; w < c->W; w++) {
      int64_t Tw = 0;
      for (int i = w; i < S; i += c->W) Tw += c->shard_frames[i];
      double f = (double)active_iters(c, w) * (double)c->spi;
      for (int i = w; i < S; i += c->W)
        fr[i] = Tw > 0 ? f * (double)c->shard_frames[i] / (double)Tw : 0;
    }
  }
  for (int i = 0; i < S; i++)
    fr[i] = c->shard_frames[i] > 0 ? fr[i] / (double)c->shard_frames[i] : 0;
  qsort(fr, (size_t)S, sizeof(double), cmp_double);
  double med = S % 2 ? fr[S / 2] : 0.5 * (fr[S / 2 - 1] + fr[S / 2]);
  if (c->arch)
    NGT_LOG(NGT_INFO,
            "data coverage: passes over the data per shard: min %.3f, median %.3f, "
            "max %.3f (%d shard(s); %" PRId64 " archive reads of %" PRId64 " archives; "
            "--num-epochs=%g)",
            fr[0], med, fr[S - 1], S, reads, c->num_archives, c->o->num_epochs);
  else
    NGT_LOG(NGT_INFO,
            "data coverage: passes over the data per shard (expected, local placement): "
            "min %.3f, median %.3f, max %.3f (%d shard(s); --num-epochs=%g)",
            fr[0], med, fr[S - 1], S, c->o->num_epochs);
  free(fr);
}

/* Keep metrics.jsonl lines of iterations < keep only (after a resume). */
static void truncate_metrics(const char *path, int keep) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char tmp[4096];
  ngt_tmp_path(path, tmp, sizeof tmp);
  FILE *g = fopen(tmp, "w");
  if (!g) {
    fclose(f);
    return;
  }
  char line[8192];
  while (fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "\"iter\":");
    if (p && atoi(p + 7) < keep) fputs(line, g);
  }
  fclose(f);
  fclose(g);
  ngt_err e = {0};
  if (ngt_commit_tmp(tmp, path, &e)) NGT_LOG(NGT_WARN, "%s", e.msg);
}

int ngt_coord_open_run(ngt_train_ctx *c, int *finished) {
  const ngt_train_opts *o = c->o;
  ngt_err err = {0};
  int start = 0, code = 0;
  char msg[1024] = "";
  *finished = 0;
  if (c->rank == 0) {
    if (ngt_mkdir_p(o->dir, &err)) {
      code = err.code;
      snprintf(msg, sizeof msg, "--dir: %s", err.msg);
    } else {
      int nt = ngt_checkpoint_remove_stale_tmp(o->dir);
      if (nt > 0)
        NGT_LOG(NGT_INFO, "removed %d temporary file(s) left in %s by an interrupted run", nt,
                o->dir);
      ngt_train_state got;
      ngt_train_state_init(&got);
      int k = ngt_checkpoint_load_latest(o->dir, &c->st, c->net, &got, &err);
      if (err.code) {
        code = err.code;
        snprintf(msg, sizeof msg, "%s", err.msg);
      } else if (k >= 0) {
        start = k;
        memcpy(c->st.positions, got.positions, sizeof(int64_t) * (size_t)c->W);
        if (c->ng_doubles)
          memcpy(c->st.ngstate, got.ngstate, sizeof(double) * c->W * c->ng_doubles);
        if (c->st.bmuf_n) memcpy(c->st.bmuf_delta, got.bmuf_delta, sizeof(float) * c->st.bmuf_n);
        if (got.have_pending) {
          c->st.pending = got.pending;
          c->st.have_pending = 1;
        }
        char fp[4096];
        snprintf(fp, sizeof fp, "%s/final.h5", o->dir);
        if (k >= c->sched.num_iters && access(fp, F_OK) == 0) *finished = 1;
        NGT_LOG(NGT_INFO, "resuming from checkpoint %s/%d.h5 (iteration %d of %d)", o->dir, k, k,
                c->sched.num_iters);
      }
      ngt_train_state_deinit(&got);
    }
  }
  ngt_train_sync_status(code, msg);
  int32_t st2[2] = {start, *finished};
  if (ngt_comm_bcast(st2, sizeof st2, 0, &err)) ngt_train_fail_local(err.msg);
  start = st2[0];
  *finished = st2[1];
  if (*finished) {
    if (c->rank == 0)
      NGT_LOG(NGT_INFO,
              "%s already holds a finished run (final.h5); nothing to do. Use a new "
              "--dir to train again.",
              o->dir);
    return start;
  }
  if (c->rank == 0) {
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/metrics.jsonl", o->dir);
    if (start > 0) truncate_metrics(mp, start - 1);
    else
      unlink(mp);
    c->metrics = fopen(mp, "a");
    if (!c->metrics) NGT_LOG(NGT_WARN, "cannot open '%s' for metrics: %s", mp, strerror(errno));
    c->progress = o->progress < 0 ? isatty(2) : o->progress;
  }
  return start;
}

void ngt_coord_print_startup(const ngt_train_ctx *c) {
  if (c->rank != 0) return;
  const ngt_train_opts *o = c->o;
  NGT_LOG(NGT_INFO,
          "ngtrain: %d rank(s): %s; %d worker(s), %d training shard(s), %" PRId64 " frames",
          c->size, c->size == 1 ? "one process is coordinator and worker" : "rank 0 coordinates",
          c->W, c->n_paths, c->total_frames);
  NGT_LOG(NGT_INFO,
          "network: %d components, %zu parameters, input %d x (%d+%d+1) = %d, %d classes",
          c->net->num_comps, c->net->num_params, c->net->feat_dim, c->net->ctx_left,
          c->net->ctx_right, c->net->input_dim, c->net->num_classes);
  NGT_LOG(NGT_INFO,
          "schedule: %d iterations, %.2f epochs, jobs %d -> %d, effective lrate %g -> %g, "
          "%" PRId64 " frames per job per iteration%s, minibatch %d",
          c->sched.num_iters, o->num_epochs, c->sched.jobs_initial, c->sched.jobs_final,
          o->initial_effective_lrate, o->final_effective_lrate,
          c->num_archives ? c->total_frames / c->num_archives : c->spi,
          o->samples_per_iter ? "" : " (automatic: --samples-per-iter=0)", o->minibatch_size);
  if (c->num_archives)
    NGT_LOG(NGT_INFO,
            "data: shared placement: the %d shard(s) are cut into A = %" PRId64
            " archives of about %" PRId64
            " frames (whole utterances, a new cut each epoch); job j "
            "of iteration i reads archive (p_i + j) mod A, p_i = archives handed out before "
            "(Kaldi), so every frame is read %g times; every rank reads every shard",
            c->n_paths, c->num_archives, c->total_frames / c->num_archives, o->num_epochs);
  else
    NGT_LOG(NGT_INFO,
            "data: local placement: worker w reads its own shards w, w+%d, ... "
            "(%" PRId64 " frames per job per iteration)",
            c->W, c->spi);
  NGT_LOG(NGT_INFO,
          "optimizer: %s, max-param-change %g, averaging %s; BLAS %s kernels, %d thread(s) "
          "per rank; HDF5 file locking: %s",
          c->ch.optimizer == NGT_OPTIMIZER_ADAM ? "Adam"
          : c->ch.precond == NGT_PRECOND_NONE   ? "plain SGD"
          : c->ch.precond == NGT_PRECOND_SIMPLE ? "simple NG-SGD"
                                                : "online NG-SGD",
          (double)o->max_param_change,
          c->ch.averaging == NGT_AVERAGING_BMUF ? "BMUF" : "model average", ngt_blas_corename(),
          ngt_engine_threads(), ngt_hdf5_locking());
  char eng[512];
  ngt_engine_describe(eng, sizeof eng);
  NGT_LOG(NGT_INFO, "compute: %s", eng);
}

void ngt_coord_load_frames(ngt_train_ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_err err = {0};
  int code = 0;
  char msg[1024] = "";
  if (c->rank == 0) {
    int64_t want = o->combine_frames > o->prior_subset_size ? o->combine_frames
                                                            : o->prior_subset_size;
    if (ngt_frameset_load((const char *const *)c->paths, c->n_paths, want,
                          ngt_rng_mix(o->seed, 77), &c->subset, &err)) {
      code = err.code;
      snprintf(msg, sizeof msg, "%s", err.msg);
    }
    if (!code && o->valid) {
      char **vp = NULL;
      int nv = 0;
      if (ngt_glob_paths(o->valid, &vp, &nv, &err) ||
          ngt_frameset_load((const char *const *)vp, nv, o->valid_frames, ngt_rng_mix(o->seed, 78),
                            &c->valid, &err) ||
          ngt_check_model_data(c->net, c->valid->feat_dim, c->valid->num_classes, "--valid",
                               &err)) {
        code = err.code ? err.code : NGT_EINVAL;
        snprintf(msg, sizeof msg, "--valid=%s: %s", o->valid, err.msg);
      }
      ngt_paths_free(vp, nv);
    }
  }
  ngt_train_sync_status(code, msg);
}

/* The fixed input transform (§4.9): statistics from every worker's shards, one reduction. */
void ngt_coord_compute_transform(ngt_train_ctx *c) {
  const ngt_train_opts *o = c->o;
  const int type = c->ch.transform;
  if (type == NGT_TRANSFORM_NONE) return;
  const int D = c->net->input_dim, C = c->net->num_classes;
  ngt_lda_stats st;
  ngt_lda_stats_init(&st, D, C);
  ngt_err err = {0};
  if (c->worker >= 0) ngt_worker_lda_stats(c, &st);
  double *sum = c->rank == 0 ? ngt_xcalloc(st.size, sizeof(double)) : NULL;
  if (ngt_comm_reduce_sum_f64(st.buf, sum, st.size, 0, &err)) ngt_train_fail_local(err.msg);
  float *T = ngt_xmalloc(sizeof(float) * (size_t)D * (size_t)(D + 1));
  int code = 0;
  char msg[1024] = "";
  if (c->rank == 0) {
    memcpy(st.buf, sum, sizeof(double) * st.size);
    ngt_lda_opts lo = ngt_lda_opts_default();
    lo.within_class_factor = o->lda_within_class_factor;
    lo.max_singular_value = o->lda_max_singular_value;
    ngt_lda_info info;
    memset(&info, 0, sizeof info);
    int rc = type == NGT_TRANSFORM_LDA ? ngt_lda_compute(&st, &lo, T, &info, &err)
                                       : ngt_cmvn_compute(&st, T, &err);
    if (rc) {
      code = rc;
      snprintf(msg, sizeof msg, "--input-transform=%s: %s", o->input_transform, err.msg);
    } else if (type == NGT_TRANSFORM_LDA) {
      NGT_LOG(NGT_INFO,
              "input transform: LDA on %.0f frames, %d classes seen, between-class "
              "variance %.3g .. %.3g, %d singular values ceiled%s",
              st.buf[0], info.num_classes_seen, info.max_between, info.min_between,
              info.num_ceiled,
              info.used_fallback ? " (singular within-class covariance: regularised)" : "");
    } else {
      NGT_LOG(NGT_INFO, "input transform: CMVN on %.0f frames", st.buf[0]);
    }
  }
  free(sum);
  ngt_train_sync_status(code, msg);
  if (ngt_comm_bcast(T, sizeof(float) * (size_t)D * (size_t)(D + 1), 0, &err))
    ngt_train_fail_local(err.msg);
  ngt_nnet_set_transform(c->net, type, T);
  free(T);
  ngt_lda_stats_deinit(&st);
}

/* ---------------------------------------------------------------- each iteration */

void ngt_coord_header(ngt_train_ctx *c, int it, int start, int retry, float lr_scale,
                      ngt_iter_header *h) {
  const ngt_train_opts *o = c->o;
  memset(h, 0, sizeof *h);
  if (c->rank != 0) return;
  if (it >= c->sched.num_iters || (o->stop_after > 0 && it >= start + o->stop_after)) {
    h->iter = -1;
    return;
  }
  h->iter = it;
  h->jobs = ngt_schedule_jobs(&c->sched, it);
  h->lr = (float)(h->jobs * ngt_schedule_lrate_eff(&c->sched, it)) * lr_scale;
  h->minibatch = it == 0 ? (o->minibatch_size + 1) / 2 : o->minibatch_size;
  h->mpc_scale = it == 0 ? (float)(1.0 / sqrt(2.0)) : 1.0f;
  h->retry = retry;
  h->first_read = ngt_schedule_processed(&c->sched, it);
}

static void write_checkpoint(ngt_train_ctx *c, int iter) {
  ngt_err err = {0};
  char path[4096];
  ngt_checkpoint_path(c->o->dir, iter, path, sizeof path);
  c->st.iter = iter;
  c->st.num_iters = c->sched.num_iters;
  c->st.archives_done = c->num_archives ? ngt_schedule_processed(&c->sched, iter) : 0;
  if (ngt_checkpoint_write(path, c->net, &c->st, &err)) {
    ngt_err_prefix(&err, "writing checkpoint %d", iter);
    ngt_train_fail_local(err.msg);
  }
  /* Keep the last keep_models checkpoints, and every one in the combination window. */
  int ncomb = ngt_schedule_combine_count(&c->sched, c->o->max_models_combine);
  int old = iter - (c->o->keep_models > 0 ? c->o->keep_models : 1);
  if (old >= 0 && old < c->sched.num_iters - ncomb + 1 && old != 0) {
    char op[4096];
    ngt_checkpoint_path(c->o->dir, old, op, sizeof op);
    unlink(op);
  }
}

static void evaluate_current(ngt_train_ctx *c, ngt_eval_result *v) {
  ngt_err err = {0};
  const ngt_frameset *fs = c->valid ? c->valid : c->subset;
  if (ngt_evaluate(c->net, fs, 512, NULL, v, &err)) ngt_train_fail_local(err.msg);
}

static void log_iteration(ngt_train_ctx *c, const ngt_train_metrics *pm,
                          const ngt_eval_result *v) {
  int it = (int)pm->iter;
  const char *vname = c->valid ? "valid" : "train-subset";
  double fps = pm->seconds > 0 ? pm->frames / pm->seconds : 0.0;
  NGT_LOG(NGT_INFO,
          "iter %*d/%d epoch %5.2f jobs %d lr %.3g | train obj %.4f acc %.2f%% | %s obj %.4f "
          "acc %.2f%% | %.0f frames/s %.1fs (avg %.3fs) max-change %.1f%%%s",
          (int)(c->sched.num_iters >= 1000  ? 4
                : c->sched.num_iters >= 100 ? 3
                                            : 2),
          it, c->sched.num_iters, pm->epoch, (int)pm->jobs, pm->lr,
          pm->frames > 0 ? pm->objective : NAN, 100 * pm->accuracy, vname, v->objective,
          100 * v->accuracy, fps, pm->seconds, pm->avg_s, 100 * pm->max_change,
          pm->refused > 0 ? " (some steps refused: non-finite)" : "");
  if (c->metrics) {
    fprintf(
        c->metrics,
        "{\"iter\":%d,\"epoch\":%.4f,\"jobs\":%d,\"accepted\":%d,\"lr\":%.6g,"
        "\"train_objective\":%.6f,\"train_accuracy\":%.6f,\"valid_objective\":%.6f,"
        "\"valid_accuracy\":%.6f,\"valid_set\":\"%s\",\"frames\":%.0f,\"frames_per_sec\":%.1f,"
        "\"seconds\":%.4f,\"compute_s\":%.4f,\"data_wait_s\":%.4f,\"comm_s\":%.4f,"
        "\"avg_s\":%.4f,\"max_change_pct\":%.3f,\"max_param_change_pct\":%.3f,\"refused\":%.0f,"
        "\"cpu_s\":%.3f,\"elapsed_s\":%.3f,\"valid_s\":%.3f,\"valid_cpu_s\":%.3f",
        it, pm->epoch, (int)pm->jobs, (int)pm->accepted, pm->lr, pm->objective, pm->accuracy,
        v->objective, v->accuracy, vname, pm->frames, fps, pm->seconds, pm->compute_s,
        pm->data_wait_s, pm->comm_s, pm->avg_s, 100 * pm->max_change, 100 * pm->max_param_change,
        pm->refused, pm->cpu_s, pm->elapsed_s, c->valid_s, c->valid_cpu_s);
    if (c->num_archives) {
      /* which archive each job read: job j read (p_i + j) mod A, in epoch (p_i + j) div A */
      const int64_t p = ngt_schedule_processed(&c->sched, it), A = c->num_archives;
      fprintf(c->metrics, ",\"archives\":[");
      for (int j = 0; j < (int)pm->jobs; j++)
        fprintf(c->metrics, "%s%" PRId64, j ? "," : "", (p + j) % A);
      fprintf(c->metrics, "],\"archive_epochs\":[");
      for (int j = 0; j < (int)pm->jobs; j++)
        fprintf(c->metrics, "%s%" PRId64, j ? "," : "", (p + j) / A);
      fprintf(c->metrics, "]");
    }
    fprintf(c->metrics, "}\n");
    fflush(c->metrics);
  }
  if (c->progress) {
    double el = ngt_now() - c->t_start;
    double frac = (double)(it + 1) / c->sched.num_iters;
    fprintf(stderr, "\r[%d/%d] epoch %.2f, %.0f frames/s, ETA %.0fs   %s", it + 1,
            c->sched.num_iters, pm->epoch, fps, frac > 0 ? el / frac - el : 0.0,
            it + 1 == c->sched.num_iters ? "\n" : "");
    fflush(stderr);
  }
}

static void log_pending(ngt_train_ctx *c) {
  if (!c->st.have_pending) return;
  ngt_eval_result v;
  const double t0 = ngt_now(), cpu0 = ngt_cpu_now();
  evaluate_current(c, &v);
  c->valid_s = ngt_now() - t0;
  c->valid_cpu_s = ngt_cpu_now() - cpu0;
  log_iteration(c, &c->st.pending, &v);
  c->st.have_pending = 0;
}

void ngt_coord_checkpoint_and_validate(ngt_train_ctx *c, int it, int write) {
  if (write) write_checkpoint(c, it);
  log_pending(c);
}

int ngt_coord_accept(ngt_train_ctx *c, int it, const ngt_worker_stats *all, int32_t *accept) {
  ngt_job_result *jr = ngt_xcalloc((size_t)c->size, sizeof *jr);
  int *mask = ngt_xcalloc((size_t)c->size, sizeof(int));
  for (int r = 0; r < c->size; r++)
    jr[r] = (ngt_job_result){all[r].obj, all[r].frames, all[r].finite, all[r].active};
  int n_acc = ngt_accept_jobs(jr, c->size, it, mask);
  for (int r = 0; r < c->size; r++) {
    accept[r] = mask[r] == NGT_JOB_ACCEPTED;
    if (mask[r] == NGT_JOB_NONFINITE || mask[r] == NGT_JOB_BELOW_BEST)
      if (it > 0)
        NGT_LOG(NGT_WARN, "iteration %d: leaving worker %d (rank %d) out of the average: %s", it,
                c->size > 1 ? r - 1 : 0, r,
                mask[r] == NGT_JOB_NONFINITE ? "its objective or parameters are not finite"
                                             : "its objective is more than 1.0 below the best");
  }
  free(jr);
  free(mask);
  return n_acc;
}

static float bmuf_eta(const ngt_train_ctx *c) {
  double eta = c->o->block_momentum >= 0 ? c->o->block_momentum : 1.0 - 1.0 / c->sched.jobs_final;
  return (float)eta;
}

void ngt_coord_average(ngt_train_ctx *c, int n_accept) {
  const size_t P = c->net->num_params;
  if (c->ch.averaging != NGT_AVERAGING_BMUF) {
    ngt_average_params(c->sum, n_accept, P, c->net->params);
    return;
  }
  ngt_bmuf_update(c->sum, n_accept, P, bmuf_eta(c), (float)c->o->block_lr, c->bmuf_global,
                  c->st.bmuf_delta);
  memcpy(c->net->params, c->bmuf_global, sizeof(float) * P);
}

void ngt_coord_lookahead(const ngt_train_ctx *c, float *out) {
  ngt_bmuf_lookahead(c->bmuf_global, c->st.bmuf_delta, c->net->num_params, bmuf_eta(c), out);
}

void ngt_coord_take_positions(ngt_train_ctx *c, const ngt_worker_stats *all) {
  if (c->num_archives) return; /* shared placement: the iteration decides the data */
  for (int r = 0; r < c->size; r++)
    if (c->size == 1 || r > 0) c->st.positions[c->size > 1 ? r - 1 : 0] = all[r].position;
}

void ngt_coord_record(ngt_train_ctx *c, const ngt_iter_header *h, const ngt_worker_stats *all,
                      int n_acc, double seconds, double comm, double t_avg) {
  double cpu = 0;
  for (int r = 0; r < c->size; r++) cpu += all[r].t_cpu;
  double obj = 0, fr = 0, cor = 0, tc = 0, td = 0, mc = 0, mcs = 0, gc = 0, steps = 0, ref = 0;
  int nact = 0;
  for (int r = 0; r < c->size; r++) {
    const ngt_worker_stats *s = &all[r];
    if (!s->active) continue;
    nact++;
    obj += s->obj;
    fr += s->frames;
    cor += s->correct;
    tc += s->t_compute;
    td += s->t_data;
    mc += (double)s->comp_clipped;
    mcs += (double)s->comp_steps;
    gc += (double)s->global_clipped;
    steps += (double)s->steps;
    ref += (double)s->refused;
  }
  ngt_train_metrics *pm = &c->st.pending;
  pm->iter = h->iter;
  pm->jobs = h->jobs;
  pm->lr = h->lr;
  pm->objective = fr > 0 ? obj / fr : 0;
  pm->accuracy = fr > 0 ? cor / fr : 0;
  pm->frames = fr;
  pm->seconds = seconds;
  pm->compute_s = nact ? tc / nact : 0;
  pm->data_wait_s = nact ? td / nact : 0;
  pm->comm_s = comm;
  pm->avg_s = t_avg;
  pm->max_change = mcs > 0 ? mc / mcs : 0;
  pm->max_param_change = steps > 0 ? gc / steps : 0;
  pm->refused = ref;
  pm->accepted = n_acc;
  pm->epoch = ngt_schedule_epoch(&c->sched, h->iter + 1);
  pm->cpu_s = cpu;
  pm->elapsed_s = ngt_now() - c->t_start;
  c->st.have_pending = 1;
}

/* ---------------------------------------------------------------- the end */

/* Final combination (§4.4 current nnet3): newest first, running average, keep the best n. */
static void final_combination(ngt_train_ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_err err = {0};
  const int I = c->sched.num_iters;
  int K = o->do_final_combination ? ngt_schedule_combine_count(&c->sched, o->max_models_combine)
                                  : 1;
  ngt_nnet *avg = ngt_nnet_copy(c->net); /* model_I */
  ngt_nnet *best = ngt_nnet_copy(c->net);
  ngt_eval_result r;
  if (ngt_evaluate(avg, c->subset, 512, NULL, &r, &err)) ngt_train_fail_local(err.msg);
  double best_obj = isfinite(r.objective) ? r.objective : -INFINITY;
  int best_n = 1, every = (K + 29) / 30;
  for (int n = 2; n <= K; n++) {
    char path[4096];
    ngt_checkpoint_path(o->dir, I - n + 1, path, sizeof path);
    ngt_nnet *m = NULL;
    if (ngt_nnet_load(path, &m, &err)) {
      NGT_LOG(NGT_WARN, "combination: cannot read '%s' (%s); combining %d models", path, err.msg,
              n - 1);
      break;
    }
    /* avg_n = ((n-1)/n) avg_{n-1} + (1/n) model_n */
    float a = (float)(n - 1) / (float)n, b = 1.0f / (float)n;
    for (size_t i = 0; i < avg->num_params; i++)
      avg->params[i] = a * avg->params[i] + b * m->params[i];
    ngt_nnet_free(m);
    if ((n - 1) % every == 0 || n == K) {
      if (ngt_evaluate(avg, c->subset, 512, NULL, &r, &err)) ngt_train_fail_local(err.msg);
      double obj = isfinite(r.objective) ? r.objective : -INFINITY;
      NGT_LOG(NGT_DEBUG, "combination: %d newest models: objective %.5f", n, obj);
      if (obj > best_obj) {
        best_obj = obj;
        best_n = n;
        memcpy(best->params, avg->params, sizeof(float) * avg->num_params);
      }
    }
  }
  NGT_LOG(NGT_INFO,
          "final combination: averaged the %d newest of %d candidate models "
          "(train-subset objective %.4f)",
          best_n, K, best_obj);
  memcpy(c->net->params, best->params, sizeof(float) * best->num_params);
  ngt_nnet_free(avg);
  ngt_nnet_free(best);
}

/* Priors (§4.5): the average posterior of the final model on a training subset. */
static void estimate_priors(ngt_train_ctx *c) {
  ngt_err err = {0};
  const int C = c->net->num_classes;
  double *post = ngt_xcalloc((size_t)C, sizeof(double));
  ngt_eval_result r;
  if (ngt_evaluate(c->net, c->subset, 512, post, &r, &err)) ngt_train_fail_local(err.msg);
  float *pr = ngt_xmalloc(sizeof(float) * (size_t)C);
  double tot = 0;
  for (int k = 0; k < C; k++) tot += post[k];
  for (int k = 0; k < C; k++) pr[k] = (float)(tot > 0 ? post[k] / tot : 1.0 / C);
  ngt_nnet_set_priors(c->net, pr);
  free(pr);
  free(post);
}

void ngt_coord_finish(ngt_train_ctx *c, int stopped_early, int stop_iter) {
  if (c->rank != 0) return;
  ngt_err err = {0};
  if (stopped_early) {
    write_checkpoint(c, stop_iter);
    log_pending(c);
    NGT_LOG(NGT_INFO,
            "stopped after iteration %d as asked (--stop-after); rerun the same "
            "command to resume",
            stop_iter);
    return;
  }
  write_checkpoint(c, c->sched.num_iters);
  log_pending(c);
  ngt_coord_print_coverage(c);
  final_combination(c);
  estimate_priors(c);
  char fp[4096];
  snprintf(fp, sizeof fp, "%s/final.h5", c->o->dir);
  if (ngt_nnet_save(c->net, fp, NULL, 0, &err)) ngt_train_fail_local(err.msg);
  ngt_eval_result v;
  evaluate_current(c, &v);
  NGT_LOG(NGT_INFO,
          "wrote %s: %s objective %.4f, frame accuracy %.2f%% (%" PRId64 " frames); %.1f s in all",
          fp, c->valid ? "validation" : "train-subset", v.objective, 100 * v.accuracy, v.frames,
          ngt_now() - c->t_start);
}

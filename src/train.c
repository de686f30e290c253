/* train.c — the training loop; see include/ngtrain/train.h and docs/ngsgd.md §4.
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

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ngtrain/batcher.h"
#include "ngtrain/comm.h"
#include "ngtrain/engine.h"
#include "ngtrain/evaluate.h"
#include "ngtrain/fileio.h"
#include "ngtrain/hash.h"
#include "ngtrain/lda.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/optim.h"
#include "ngtrain/rng.h"
#include "ngtrain/schedule.h"
#include "ngtrain/shard.h"

ngt_train_opts ngt_train_opts_default(void) {
  ngt_train_opts o;
  memset(&o, 0, sizeof o);
  o.num_epochs = 8.0;
  o.initial_effective_lrate = 0.0003;
  o.final_effective_lrate = 0.00003;
  o.num_jobs_initial = 1;
  o.num_jobs_final = 0;
  o.num_jobs_step = 1;
  o.samples_per_iter = 400000;
  o.minibatch_size = 512;
  o.max_param_change = 2.0f;
  o.use_natural_gradient = 1;
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
  o.block_momentum = -1.0;
  o.block_lr = 1.0;
  o.max_retries = 3;
  o.progress = -1;
  return o;
}

/* ---------------------------------------------------------------- messages */

typedef struct header {
  int32_t iter;        /* iteration index, or -1 = stop */
  int32_t jobs;        /* active workers: 0 .. jobs-1 */
  int32_t minibatch;
  int32_t retry;       /* 0, or the retry count of this iteration */
  float lr;            /* learning rate given to every job (jobs x effective) */
  float mpc_scale;     /* max-change scale (1/sqrt(2) on iteration 0) */
} header;

typedef struct wstats {
  double obj;          /* sum of log p(label) over the iteration's frames */
  double frames;
  double correct;
  double t_compute, t_data; /* seconds */
  int64_t position;    /* batcher position after the iteration */
  int64_t steps, refused, comp_clipped, comp_steps, global_clipped;
  int32_t finite;      /* objective and parameters finite */
  int32_t active;
} wstats;

/* Numbers that must agree between a checkpoint and the command that resumes it. */
enum { SIG_SEED, SIG_RANKS, SIG_SPI, SIG_EPOCHS, SIG_LR0, SIG_LR1, SIG_J0, SIG_J1, SIG_JS, SIG_MB,
       SIG_MPC, SIG_NG, SIG_PRECOND, SIG_CONFIG, SIG_TRAIN, SIG_BMUF, SIG_N };
static const char *sig_names[SIG_N] = {
    "--seed", "number of MPI ranks", "--samples-per-iter", "--num-epochs",
    "--initial-effective-lrate", "--final-effective-lrate", "--num-jobs-initial",
    "--num-jobs-final", "--num-jobs-step", "--minibatch-size", "--max-param-change",
    "--use-natural-gradient", "--preconditioner", "the network config (--config)",
    "the training shards (--train)", "--averaging"};

/* Pending metrics of the iteration whose output model a checkpoint holds. */
enum { PM_ITER, PM_JOBS, PM_LR, PM_OBJ, PM_ACC, PM_FRAMES, PM_SECONDS, PM_COMPUTE, PM_DATA,
       PM_COMM, PM_AVG, PM_MC, PM_GC, PM_REFUSED, PM_ACCEPTED, PM_EPOCH, PM_N };

/* ---------------------------------------------------------------- context */

typedef struct ctx {
  const ngt_train_opts *o;
  int rank, size, W;        /* W workers */
  int worker;               /* this rank's worker index, -1 on a pure coordinator */
  char **paths;             /* all training shards, sorted */
  int n_paths;
  ngt_nnet *net;            /* the model (params = model_i while training) */
  ngt_schedule sched;
  int64_t total_frames;
  int bmuf;
  /* worker */
  ngt_batcher *batch;
  ngt_optim *opt;
  ngt_nnet_ws *ws;
  ngt_mat X;
  int32_t *y;
  double *ng_snapshot;      /* NG state at the start of the iteration (retries) */
  size_t ng_doubles;        /* per worker */
  /* coordinator */
  ngt_frameset *valid;
  ngt_frameset *subset;     /* training subset: combination and priors */
  FILE *metrics;
  float *sum;               /* reduction target, num_params */
  float *zeros;             /* num_params zeros (non-contributing ranks) */
  float *bmuf_global, *bmuf_delta;
  double *ng_all;           /* W x ng_doubles (checkpoint) */
  int64_t *positions;       /* W */
  double sig[SIG_N];
  double pending[PM_N];
  int have_pending;
  int progress;
  double t_start;
} ctx;

static _Noreturn void fail_local(const char *msg) { ngt_die("%s", msg); }

/* Coordinator-decided failure known on rank 0 only: broadcast it, then all stop. */
static void sync_status(ctx *c, int code, const char *msg) {
  struct { int32_t code; char msg[1024]; } st;
  memset(&st, 0, sizeof st);
  st.code = code;
  if (msg) snprintf(st.msg, sizeof st.msg, "%s", msg);
  ngt_err e = {0};
  if (ngt_comm_bcast(&st, sizeof st, 0, &e)) fail_local(e.msg);
  if (st.code) ngt_comm_fail_all(st.msg);
  (void)c;
}

static double hash_text(const char *s) {
  return (double)(ngt_fnv1a64_str(s) >> 11); /* exact in a double */
}

static void make_signature(ctx *c) {
  const ngt_train_opts *o = c->o;
  c->sig[SIG_SEED] = (double)o->seed;
  c->sig[SIG_RANKS] = c->size;
  c->sig[SIG_SPI] = (double)o->samples_per_iter;
  c->sig[SIG_EPOCHS] = o->num_epochs;
  c->sig[SIG_LR0] = o->initial_effective_lrate;
  c->sig[SIG_LR1] = o->final_effective_lrate;
  c->sig[SIG_J0] = o->num_jobs_initial;
  c->sig[SIG_J1] = c->sched.jobs_final;
  c->sig[SIG_JS] = o->num_jobs_step;
  c->sig[SIG_MB] = o->minibatch_size;
  c->sig[SIG_MPC] = o->max_param_change;
  c->sig[SIG_NG] = o->use_natural_gradient;
  c->sig[SIG_PRECOND] = hash_text(o->preconditioner);
  c->sig[SIG_CONFIG] = hash_text(c->net->config_text);
  double h = 0;
  for (int i = 0; i < c->n_paths; i++) h = fmod(h * 31.0 + hash_text(c->paths[i]), 9007199254740881.0);
  c->sig[SIG_TRAIN] = h;
  c->sig[SIG_BMUF] = c->bmuf;
}

/* ---------------------------------------------------------------- checkpoints */

static void ckpt_path(const ctx *c, int iter, char *buf, size_t n) {
  snprintf(buf, n, "%s/%d.h5", c->o->dir, iter);
}

static int write_checkpoint(ctx *c, int iter, ngt_err *err) {
  char path[4096];
  ckpt_path(c, iter, path, sizeof path);
  int64_t it = iter, nit = c->sched.num_iters;
  ngt_blob b[8];
  int nb = 0;
  b[nb++] = (ngt_blob){"iter", NGT_BLOB_I64, 1, &it};
  b[nb++] = (ngt_blob){"num_iters", NGT_BLOB_I64, 1, &nit};
  b[nb++] = (ngt_blob){"positions", NGT_BLOB_I64, (size_t)c->W, c->positions};
  b[nb++] = (ngt_blob){"signature", NGT_BLOB_F64, SIG_N, c->sig};
  if (c->have_pending) b[nb++] = (ngt_blob){"pending", NGT_BLOB_F64, PM_N, c->pending};
  if (c->ng_doubles) b[nb++] = (ngt_blob){"ngstate", NGT_BLOB_F64, (size_t)c->W * c->ng_doubles, c->ng_all};
  if (c->bmuf) b[nb++] = (ngt_blob){"bmuf_delta", NGT_BLOB_F32, c->net->num_params, c->bmuf_delta};
  int rc = ngt_nnet_save(c->net, path, b, nb, err);
  if (rc) return ngt_err_prefix(err, "writing checkpoint %d", iter);
  /* Keep the last keep_models checkpoints, and every one in the combination window. */
  int ncomb = ngt_schedule_combine_count(&c->sched, c->o->max_models_combine);
  int old = iter - (c->o->keep_models > 0 ? c->o->keep_models : 1);
  if (old >= 0 && old < c->sched.num_iters - ncomb + 1 && old != 0) {
    char op[4096];
    ckpt_path(c, old, op, sizeof op);
    unlink(op);
  }
  return 0;
}

static int cmp_int_desc(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x < y) - (x > y);
}

/* Find and load the newest readable checkpoint. Returns its iteration, -1 if none. */
static int load_latest_checkpoint(ctx *c, ngt_err *err) {
  DIR *d = opendir(c->o->dir);
  if (!d) return -1;
  int cap = 64, n = 0, *its = ngt_xmalloc(sizeof(int) * (size_t)cap);
  struct dirent *de;
  while ((de = readdir(d))) {
    char *end;
    long v = strtol(de->d_name, &end, 10);
    if (end == de->d_name || strcmp(end, ".h5") != 0 || v < 0) continue;
    if (n == cap) its = realloc(its, sizeof(int) * (size_t)(cap *= 2));
    NGT_ASSERT(its);
    its[n++] = (int)v;
  }
  closedir(d);
  qsort(its, (size_t)n, sizeof(int), cmp_int_desc);
  int found = -1;
  for (int k = 0; k < n && found < 0; k++) {
    char path[4096];
    ckpt_path(c, its[k], path, sizeof path);
    ngt_err e = {0};
    ngt_nnet *m = NULL;
    void *sig = NULL, *pos = NULL, *ng = NULL, *pend = NULL, *bd = NULL, *itb = NULL;
    size_t nsig = 0, npos = 0, nng = 0, npend = 0, nbd = 0, nit = 0;
    int rc = ngt_nnet_load(path, &m, &e);
    if (!rc) rc = ngt_nnet_load_blob(path, "iter", NGT_BLOB_I64, &itb, &nit, &e);
    if (!rc) rc = ngt_nnet_load_blob(path, "signature", NGT_BLOB_F64, &sig, &nsig, &e);
    if (!rc) rc = ngt_nnet_load_blob(path, "positions", NGT_BLOB_I64, &pos, &npos, &e);
    if (!rc && c->ng_doubles) rc = ngt_nnet_load_blob(path, "ngstate", NGT_BLOB_F64, &ng, &nng, &e);
    if (!rc && c->bmuf) rc = ngt_nnet_load_blob(path, "bmuf_delta", NGT_BLOB_F32, &bd, &nbd, &e);
    if (!rc && ngt_nnet_load_blob(path, "pending", NGT_BLOB_F64, &pend, &npend, NULL) != 0) {
      pend = NULL; npend = 0;
    }
    if (!rc && nsig == SIG_N) {
      const double *s = sig;
      for (int j = 0; j < SIG_N; j++)
        if (s[j] != c->sig[j]) {
          char msg[1024];
          snprintf(msg, sizeof msg,
                   "--dir=%s holds checkpoints of another run: %s differs (checkpoint %g, now %g). "
                   "Use a new --dir, or delete the old one to start over",
                   c->o->dir, sig_names[j], s[j], c->sig[j]);
          free(its); ngt_nnet_free(m); free(sig); free(pos); free(ng); free(pend); free(bd); free(itb);
          return ngt_err_set(err, NGT_EINVAL, "%s", msg);
        }
    }
    if (!rc && (nsig != SIG_N || npos != (size_t)c->W || nit != 1 ||
                (c->ng_doubles && nng != (size_t)c->W * c->ng_doubles) ||
                (c->bmuf && nbd != c->net->num_params)))
      rc = ngt_err_set(&e, NGT_EFORMAT, "checkpoint '%s' does not match this run's layout", path);
    if (!rc) {
      /* The checkpoint decides the input transform (estimated before iteration 0), so the
       * structures are compared with the transform set aside. */
      char why[512];
      int tt = m->transform_type;
      float *tr = m->transform;
      m->transform_type = c->net->transform_type;
      m->transform = c->net->transform;
      int same = ngt_nnet_same_structure(m, c->net, why, sizeof why);
      m->transform_type = tt;
      m->transform = tr;
      if (!same)
        rc = ngt_err_set(&e, NGT_EFORMAT, "checkpoint '%s' has another network: %s", path, why);
    }
    if (rc) {
      NGT_LOG(NGT_WARN, "checkpoint '%s' is unusable (%s); falling back to the one before", path, e.msg);
    } else {
      memcpy(c->net->params, m->params, sizeof(float) * m->num_params);
      if (m->transform) ngt_nnet_set_transform(c->net, m->transform_type, m->transform);
      memcpy(c->positions, pos, sizeof(int64_t) * (size_t)c->W);
      if (c->ng_doubles) memcpy(c->ng_all, ng, sizeof(double) * nng);
      if (c->bmuf) memcpy(c->bmuf_delta, bd, sizeof(float) * nbd);
      if (pend && npend == PM_N) { memcpy(c->pending, pend, sizeof c->pending); c->have_pending = 1; }
      found = (int)*(int64_t *)itb;
    }
    ngt_nnet_free(m); free(sig); free(pos); free(ng); free(pend); free(bd); free(itb);
  }
  free(its);
  return found;
}

/* Remove "<name>.tmp.<pid>" files a killed coordinator left in the run directory (a
 * checkpoint, final.h5 or metrics.jsonl being written when it died; fileio.h): they are
 * never read, and for a big model each one is as large as a checkpoint. Only rank 0 of
 * the one run that owns --dir writes there. Returns how many were removed. */
static int remove_stale_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *t = strstr(de->d_name, ".tmp.");
    if (!t || t == de->d_name || t[5] == '\0' || strspn(t + 5, "0123456789") != strlen(t + 5)) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    if (unlink(p) == 0) n++;
  }
  closedir(d);
  return n;
}

/* Keep metrics.jsonl lines of iterations < keep only (after a resume). */
static void truncate_metrics(const char *path, int keep) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char tmp[4096];
  ngt_tmp_path(path, tmp, sizeof tmp);
  FILE *g = fopen(tmp, "w");
  if (!g) { fclose(f); return; }
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

/* ---------------------------------------------------------------- worker */

static void worker_setup(ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_err err = {0};
  int n = 0;
  char **mine = ngt_xcalloc((size_t)c->n_paths, sizeof(char *));
  for (int i = c->worker; i < c->n_paths; i += c->W) mine[n++] = c->paths[i];
  ngt_batcher_opts bo = ngt_batcher_opts_default();
  bo.ctx_left = c->net->ctx_left;
  bo.ctx_right = c->net->ctx_right;
  bo.seed = ngt_rng_mix(o->seed, (uint64_t)c->worker + 1000);
  bo.shuffle_buffer = o->shuffle_buffer;
  if (ngt_batcher_new((const char *const *)mine, n, &bo, &c->batch, &err)) fail_local(err.msg);
  free(mine);
  ngt_optim_opts oo = ngt_optim_opts_default();
  oo.use_natural_gradient = o->use_natural_gradient;
  oo.preconditioner = strcmp(o->preconditioner, "simple") == 0 ? NGT_PRECOND_SIMPLE : NGT_PRECOND_ONLINE;
  oo.rank_in = o->rank_in;
  oo.rank_out = o->rank_out;
  oo.update_period = o->update_period;
  oo.num_samples_history = o->num_samples_history;
  oo.alpha = o->alpha;
  oo.max_param_change = o->max_param_change;
  if (ngt_optim_new(c->net, &oo, o->minibatch_size, &c->opt, &err)) fail_local(err.msg);
  c->ws = ngt_nnet_ws_new(c->net, o->minibatch_size);
  c->X = ngt_mat_alloc(o->minibatch_size, c->net->input_dim);
  c->y = ngt_xmalloc(sizeof(int32_t) * (size_t)o->minibatch_size);
  c->ng_snapshot = ngt_xmalloc(sizeof(double) * (c->ng_doubles ? c->ng_doubles : 1));
}

/* Train one iteration on this worker; params in c->net are overwritten. */
static void worker_train(ctx *c, const header *h, wstats *st) {
  ngt_err err = {0};
  memset(st, 0, sizeof *st);
  st->active = 1;
  if (c->ng_doubles) {
    if (h->retry) {
      if (ngt_optim_state_load(c->opt, c->ng_snapshot, c->ng_doubles, &err)) fail_local(err.msg);
    } else {
      ngt_optim_state_save(c->opt, c->ng_snapshot);
    }
  }
  if (c->o->ng_reset_each_iter) ngt_optim_reset_ng(c->opt);
  ngt_optim_clear_stats(c->opt);
  int64_t remaining = c->o->samples_per_iter;
  double t0 = ngt_now();
  while (remaining > 0) {
    int n = (int)(remaining < h->minibatch ? remaining : h->minibatch);
    double td = ngt_now();
    int got = 0;
    if (ngt_batcher_next(c->batch, n, c->X, c->y, &got, &err)) fail_local(err.msg);
    st->t_data += ngt_now() - td;
    NGT_ASSERT(got == n);
    ngt_mat Xn = ngt_mat_rows(c->X, 0, n);
    ngt_nnet_forward(c->net, c->ws, Xn);
    int nc = 0;
    st->obj += ngt_nnet_objective(c->net, c->ws, c->y, &nc);
    st->correct += nc;
    st->frames += n;
    ngt_nnet_backward(c->net, c->ws, c->y);
    ngt_optim_step(c->opt, c->net, c->ws, h->lr, h->mpc_scale);
    remaining -= n;
  }
  st->t_compute = ngt_now() - t0 - st->t_data;
  st->position = ngt_batcher_position(c->batch);
  const ngt_optim_stats *os = ngt_optim_get_stats(c->opt);
  st->steps = os->steps;
  st->refused = os->refused;
  st->comp_clipped = os->comp_clipped;
  st->comp_steps = os->comp_steps;
  st->global_clipped = os->global_clipped;
  st->finite = isfinite(st->obj) && ngt_vec_all_finite(c->net->params, c->net->num_params);
  if (c->o->debug_save_jobs) {
    char path[4096];
    snprintf(path, sizeof path, "%s/job-%d-%d.h5", c->o->dir, h->iter, c->worker);
    if (ngt_nnet_save(c->net, path, NULL, 0, &err)) fail_local(err.msg);
  }
}

/* ---------------------------------------------------------------- coordinator helpers */

static void load_frames(ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_err err = {0};
  int code = 0;
  char msg[1024] = "";
  if (c->rank == 0) {
    int64_t want = o->combine_frames > o->prior_subset_size ? o->combine_frames : o->prior_subset_size;
    if (ngt_frameset_load((const char *const *)c->paths, c->n_paths, want,
                          ngt_rng_mix(o->seed, 77), &c->subset, &err)) {
      code = err.code; snprintf(msg, sizeof msg, "%s", err.msg);
    }
    if (!code && o->valid) {
      char **vp = NULL;
      int nv = 0;
      if (ngt_glob_paths(o->valid, &vp, &nv, &err) ||
          ngt_frameset_load((const char *const *)vp, nv, o->valid_frames, ngt_rng_mix(o->seed, 78),
                            &c->valid, &err) ||
          ngt_check_model_data(c->net, c->valid->feat_dim, c->valid->num_classes, "--valid", &err)) {
        code = err.code ? err.code : NGT_EINVAL;
        snprintf(msg, sizeof msg, "--valid=%s: %s", o->valid, err.msg);
      }
      ngt_paths_free(vp, nv);
    }
  }
  sync_status(c, code, msg);
}

/* The fixed input transform (§4.9): statistics from every worker's shards, one reduction. */
static void compute_transform(ctx *c) {
  const ngt_train_opts *o = c->o;
  int type = !strcmp(o->input_transform, "lda") ? NGT_TRANSFORM_LDA
             : !strcmp(o->input_transform, "cmvn") ? NGT_TRANSFORM_CMVN : NGT_TRANSFORM_NONE;
  if (type == NGT_TRANSFORM_NONE) return;
  const int D = c->net->input_dim, C = c->net->num_classes;
  ngt_lda_stats st;
  ngt_lda_stats_init(&st, D, C);
  ngt_err err = {0};
  if (c->worker >= 0) {
    /* Stream lda_frames / W frames of this worker's shards in a seeded order through a
     * batcher of its own: memory stays bounded by the shuffle buffer, whatever the corpus. */
    int n = 0;
    char **mine = ngt_xcalloc((size_t)c->n_paths, sizeof(char *));
    for (int i = c->worker; i < c->n_paths; i += c->W) mine[n++] = c->paths[i];
    ngt_batcher_opts bo = ngt_batcher_opts_default();
    bo.ctx_left = c->net->ctx_left;
    bo.ctx_right = c->net->ctx_right;
    bo.seed = ngt_rng_mix(o->seed, 79 + (uint64_t)c->worker);
    bo.shuffle_buffer = o->shuffle_buffer;
    bo.loop = 0;
    ngt_batcher *b = NULL;
    if (ngt_batcher_new((const char *const *)mine, n, &bo, &b, &err)) fail_local(err.msg);
    free(mine);
    int64_t want = o->lda_frames / c->W + 1;
    const int mb = 1024;
    ngt_mat X = ngt_mat_alloc(mb, D);
    int32_t *y = ngt_xmalloc(sizeof(int32_t) * mb);
    for (int64_t done = 0; done < want;) {
      int k = (int)(want - done < mb ? want - done : mb), got = 0;
      if (ngt_batcher_next(b, k, X, y, &got, &err)) fail_local(err.msg);
      if (got == 0) break;
      ngt_lda_stats_add(&st, ngt_mat_rows(X, 0, got), y);
      done += got;
    }
    free(y);
    ngt_mat_free(&X);
    ngt_batcher_free(b);
  }
  double *sum = c->rank == 0 ? ngt_xcalloc(st.size, sizeof(double)) : NULL;
  if (ngt_comm_reduce_sum_f64(st.buf, sum, st.size, 0, &err)) fail_local(err.msg);
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
      NGT_LOG(NGT_INFO, "input transform: LDA on %.0f frames, %d classes seen, between-class "
              "variance %.3g .. %.3g, %d singular values ceiled%s", st.buf[0],
              info.num_classes_seen, info.max_between, info.min_between, info.num_ceiled,
              info.used_fallback ? " (singular within-class covariance: regularised)" : "");
    } else {
      NGT_LOG(NGT_INFO, "input transform: CMVN on %.0f frames", st.buf[0]);
    }
  }
  free(sum);
  sync_status(c, code, msg);
  if (ngt_comm_bcast(T, sizeof(float) * (size_t)D * (size_t)(D + 1), 0, &err)) fail_local(err.msg);
  ngt_nnet_set_transform(c->net, type, T);
  free(T);
  ngt_lda_stats_deinit(&st);
}

static void log_iteration(ctx *c, const double *pm, const ngt_eval_result *v) {
  int it = (int)pm[PM_ITER];
  const char *vname = c->valid ? "valid" : "train-subset";
  NGT_LOG(NGT_INFO,
          "iter %*d/%d epoch %5.2f jobs %d lr %.3g | train obj %.4f acc %.2f%% | %s obj %.4f "
          "acc %.2f%% | %.0f frames/s %.1fs (avg %.3fs) max-change %.1f%%%s",
          (int)(c->sched.num_iters >= 1000 ? 4 : c->sched.num_iters >= 100 ? 3 : 2), it,
          c->sched.num_iters, pm[PM_EPOCH], (int)pm[PM_JOBS], pm[PM_LR],
          pm[PM_FRAMES] > 0 ? pm[PM_OBJ] : NAN, 100 * pm[PM_ACC], vname, v->objective,
          100 * v->accuracy, pm[PM_SECONDS] > 0 ? pm[PM_FRAMES] / pm[PM_SECONDS] : 0.0,
          pm[PM_SECONDS], pm[PM_AVG], 100 * pm[PM_MC],
          pm[PM_REFUSED] > 0 ? " (some steps refused: non-finite)" : "");
  if (c->metrics) {
    fprintf(c->metrics,
            "{\"iter\":%d,\"epoch\":%.4f,\"jobs\":%d,\"accepted\":%d,\"lr\":%.6g,"
            "\"train_objective\":%.6f,\"train_accuracy\":%.6f,\"valid_objective\":%.6f,"
            "\"valid_accuracy\":%.6f,\"valid_set\":\"%s\",\"frames\":%.0f,\"frames_per_sec\":%.1f,"
            "\"seconds\":%.4f,\"compute_s\":%.4f,\"data_wait_s\":%.4f,\"comm_s\":%.4f,"
            "\"avg_s\":%.4f,\"max_change_pct\":%.3f,\"max_param_change_pct\":%.3f,\"refused\":%.0f}\n",
            it, pm[PM_EPOCH], (int)pm[PM_JOBS], (int)pm[PM_ACCEPTED], pm[PM_LR], pm[PM_OBJ],
            pm[PM_ACC], v->objective, v->accuracy, vname, pm[PM_FRAMES],
            pm[PM_SECONDS] > 0 ? pm[PM_FRAMES] / pm[PM_SECONDS] : 0.0, pm[PM_SECONDS],
            pm[PM_COMPUTE], pm[PM_DATA], pm[PM_COMM], pm[PM_AVG], 100 * pm[PM_MC],
            100 * pm[PM_GC], pm[PM_REFUSED]);
    fflush(c->metrics);
  }
  if (c->progress) {
    double el = ngt_now() - c->t_start;
    double frac = (double)(it + 1) / c->sched.num_iters;
    fprintf(stderr, "\r[%d/%d] epoch %.2f, %.0f frames/s, ETA %.0fs   %s", it + 1,
            c->sched.num_iters, pm[PM_EPOCH], pm[PM_SECONDS] > 0 ? pm[PM_FRAMES] / pm[PM_SECONDS] : 0.0,
            frac > 0 ? el / frac - el : 0.0, it + 1 == c->sched.num_iters ? "\n" : "");
    fflush(stderr);
  }
}

static void evaluate_current(ctx *c, ngt_eval_result *v) {
  ngt_err err = {0};
  const ngt_frameset *fs = c->valid ? c->valid : c->subset;
  if (ngt_evaluate(c->net, fs, 512, NULL, v, &err)) fail_local(err.msg);
}

/* Final combination (§4.4 current nnet3): newest first, running average, keep the best n. */
static void final_combination(ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_err err = {0};
  const int I = c->sched.num_iters;
  int K = o->do_final_combination ? ngt_schedule_combine_count(&c->sched, o->max_models_combine) : 1;
  ngt_nnet *avg = ngt_nnet_copy(c->net);  /* model_I */
  ngt_nnet *best = ngt_nnet_copy(c->net);
  ngt_eval_result r;
  if (ngt_evaluate(avg, c->subset, 512, NULL, &r, &err)) fail_local(err.msg);
  double best_obj = isfinite(r.objective) ? r.objective : -INFINITY;
  int best_n = 1, every = (K + 29) / 30;
  for (int n = 2; n <= K; n++) {
    char path[4096];
    ckpt_path(c, I - n + 1, path, sizeof path);
    ngt_nnet *m = NULL;
    if (ngt_nnet_load(path, &m, &err)) {
      NGT_LOG(NGT_WARN, "combination: cannot read '%s' (%s); combining %d models", path, err.msg, n - 1);
      break;
    }
    /* avg_n = ((n-1)/n) avg_{n-1} + (1/n) model_n */
    float a = (float)(n - 1) / (float)n, b = 1.0f / (float)n;
    for (size_t i = 0; i < avg->num_params; i++) avg->params[i] = a * avg->params[i] + b * m->params[i];
    ngt_nnet_free(m);
    if ((n - 1) % every == 0 || n == K) {
      if (ngt_evaluate(avg, c->subset, 512, NULL, &r, &err)) fail_local(err.msg);
      double obj = isfinite(r.objective) ? r.objective : -INFINITY;
      NGT_LOG(NGT_DEBUG, "combination: %d newest models: objective %.5f", n, obj);
      if (obj > best_obj) {
        best_obj = obj;
        best_n = n;
        memcpy(best->params, avg->params, sizeof(float) * avg->num_params);
      }
    }
  }
  NGT_LOG(NGT_INFO, "final combination: averaged the %d newest of %d candidate models "
          "(train-subset objective %.4f)", best_n, K, best_obj);
  memcpy(c->net->params, best->params, sizeof(float) * best->num_params);
  ngt_nnet_free(avg);
  ngt_nnet_free(best);
}

/* Priors (§4.5): the average posterior of the final model on a training subset. */
static void estimate_priors(ctx *c) {
  ngt_err err = {0};
  const int C = c->net->num_classes;
  double *post = ngt_xcalloc((size_t)C, sizeof(double));
  ngt_eval_result r;
  if (ngt_evaluate(c->net, c->subset, 512, post, &r, &err)) fail_local(err.msg);
  float *pr = ngt_xmalloc(sizeof(float) * (size_t)C);
  double tot = 0;
  for (int k = 0; k < C; k++) tot += post[k];
  for (int k = 0; k < C; k++) pr[k] = (float)(tot > 0 ? post[k] / tot : 1.0 / C);
  ngt_nnet_set_priors(c->net, pr);
  free(pr);
  free(post);
}

static void average_models(ctx *c, const int32_t *accept, int n_accept) {
  const size_t P = c->net->num_params;
  float inv = 1.0f / (float)n_accept;
  if (!c->bmuf) {
    for (size_t i = 0; i < P; i++) c->net->params[i] = c->sum[i] * inv;
    return;
  }
  /* BMUF with Nesterov block momentum (Chen & Huo 2016). The jobs started from the
   * broadcast look-ahead W_b = W_g + η Δ, and the block gradient is measured from there:
   *   G = W̄ − W_b;  Δ ← η Δ + ζ G;  W_g ← W_g + Δ;  the next broadcast is W_g + η Δ.
   * (Measuring G from W_g instead counts η Δ twice: Δ grows by η(1+ζ) per block, which
   * diverges for η > 1/2.) */
  double eta = c->o->block_momentum >= 0 ? c->o->block_momentum : 1.0 - 1.0 / c->sched.jobs_final;
  float fe = (float)eta, fz = (float)c->o->block_lr;
  for (size_t i = 0; i < P; i++) {
    float wb = c->bmuf_global[i] + fe * c->bmuf_delta[i];
    float g = c->sum[i] * inv - wb;
    c->bmuf_delta[i] = fe * c->bmuf_delta[i] + fz * g;
    c->bmuf_global[i] += c->bmuf_delta[i];
  }
  (void)accept;
}

/* The model the workers start from: W_g (+ η Δ for BMUF's Nesterov look-ahead). */
static void bmuf_lookahead(ctx *c, float *out) {
  double eta = c->o->block_momentum >= 0 ? c->o->block_momentum : 1.0 - 1.0 / c->sched.jobs_final;
  for (size_t i = 0; i < c->net->num_params; i++)
    out[i] = c->bmuf_global[i] + (float)eta * c->bmuf_delta[i];
}

/* ---------------------------------------------------------------- the run */

static void print_startup(ctx *c) {
  if (c->rank != 0) return;
  const ngt_train_opts *o = c->o;
  NGT_LOG(NGT_INFO, "ngtrain: %d rank(s): %s; %d worker(s), %d training shard(s), %" PRId64 " frames",
          c->size, c->size == 1 ? "one process is coordinator and worker" : "rank 0 coordinates",
          c->W, c->n_paths, c->total_frames);
  NGT_LOG(NGT_INFO, "network: %d components, %zu parameters, input %d x (%d+%d+1) = %d, %d classes",
          c->net->num_comps, c->net->num_params, c->net->feat_dim, c->net->ctx_left,
          c->net->ctx_right, c->net->input_dim, c->net->num_classes);
  NGT_LOG(NGT_INFO, "schedule: %d iterations, %.2f epochs, jobs %d -> %d, effective lrate %g -> %g, "
          "%" PRId64 " frames per job per iteration, minibatch %d",
          c->sched.num_iters, o->num_epochs, c->sched.jobs_initial, c->sched.jobs_final,
          o->initial_effective_lrate, o->final_effective_lrate, o->samples_per_iter,
          o->minibatch_size);
  NGT_LOG(NGT_INFO, "optimizer: %s, max-param-change %g, averaging %s; BLAS %s kernels, %d thread(s) "
          "per rank; HDF5 file locking: %s",
          !o->use_natural_gradient ? "plain SGD"
          : !strcmp(o->preconditioner, "simple") ? "simple NG-SGD" : "online NG-SGD",
          (double)o->max_param_change, c->bmuf ? "BMUF" : "model average", ngt_blas_corename(),
          ngt_blas_get_threads(), ngt_hdf5_locking());
  char eng[512];
  ngt_engine_describe(eng, sizeof eng);
  NGT_LOG(NGT_INFO, "compute: %s", eng);
}

static int validate_opts(const ngt_train_opts *o, char *msg, size_t n) {
  if (!o->config) return snprintf(msg, n, "--config is required (the network config file; see --help)"), 1;
  if (!o->train) return snprintf(msg, n, "--train is required (a glob of training shards, e.g. --train='shards/*.h5')"), 1;
  if (!o->dir) return snprintf(msg, n, "--dir is required (the run directory for checkpoints and final.h5)"), 1;
  if (o->minibatch_size < 1) return snprintf(msg, n, "--minibatch-size=%d must be >= 1", o->minibatch_size), 1;
  if (o->samples_per_iter < 1) return snprintf(msg, n, "--samples-per-iter=%" PRId64 " must be >= 1", o->samples_per_iter), 1;
  if (strcmp(o->preconditioner, "online") && strcmp(o->preconditioner, "simple"))
    return snprintf(msg, n, "--preconditioner=%s: use online or simple", o->preconditioner), 1;
  if (strcmp(o->input_transform, "lda") && strcmp(o->input_transform, "cmvn") && strcmp(o->input_transform, "none"))
    return snprintf(msg, n, "--input-transform=%s: use lda, cmvn or none", o->input_transform), 1;
  if (strcmp(o->averaging, "average") && strcmp(o->averaging, "bmuf"))
    return snprintf(msg, n, "--averaging=%s: use average or bmuf", o->averaging), 1;
  if (o->keep_models < 1) return snprintf(msg, n, "--keep-models=%d must be >= 1", o->keep_models), 1;
  if (o->max_param_change < 0) return snprintf(msg, n, "--max-param-change=%g must be >= 0", (double)o->max_param_change), 1;
  if (o->block_momentum >= 1.0) return snprintf(msg, n, "--block-momentum=%g must be < 1", o->block_momentum), 1;
  if (!(o->block_lr > 0)) return snprintf(msg, n, "--block-lr=%g must be > 0", o->block_lr), 1;
  if (o->combine_frames < 1 || o->prior_subset_size < 1) return snprintf(msg, n, "--combine-frames and --prior-subset-size must be >= 1"), 1;
  if (o->lda_frames < 1) return snprintf(msg, n, "--lda-frames=%" PRId64 " must be >= 1", o->lda_frames), 1;
  return 0;
}

int ngt_train_run(const ngt_train_opts *o) {
  ctx C_, *c = &C_;
  memset(c, 0, sizeof *c);
  c->o = o;
  c->rank = ngt_comm_rank();
  c->size = ngt_comm_size();
  c->W = c->size > 1 ? c->size - 1 : 1;
  c->worker = c->size > 1 ? c->rank - 1 : 0;
  c->bmuf = !strcmp(o->averaging, "bmuf");
  c->t_start = ngt_now();
  ngt_err err = {0};
  char msg[1024];

  /* Everything every rank can check identically fails collectively (printed once). */
  if (validate_opts(o, msg, sizeof msg)) ngt_comm_fail_all(msg);
  if (ngt_nnet_from_config_file(o->config, &c->net, &err)) ngt_comm_fail_all(err.msg);
  if (ngt_glob_paths(o->train, &c->paths, &c->n_paths, &err)) {
    snprintf(msg, sizeof msg, "--train: %s", err.msg);
    ngt_comm_fail_all(msg);
  }
  if (c->n_paths < c->W) {
    snprintf(msg, sizeof msg, "--train='%s' matches %d shard(s) but there are %d workers "
             "(each worker needs at least one shard: run with mpirun -np %d or fewer, or make "
             "more shards with mkshards --num-shards)", o->train, c->n_paths, c->W, c->n_paths + 1);
    ngt_comm_fail_all(msg);
  }
  int j1 = o->num_jobs_final > 0 ? o->num_jobs_final : c->W;
  if (j1 > c->W) {
    snprintf(msg, sizeof msg, "--num-jobs-final=%d is more than the %d worker rank(s) "
             "(run mpirun -np %d, or lower --num-jobs-final)", j1, c->W, j1 + 1);
    ngt_comm_fail_all(msg);
  }
  if (o->num_jobs_initial > j1) {
    snprintf(msg, sizeof msg, "--num-jobs-initial=%d is more than --num-jobs-final=%d", o->num_jobs_initial, j1);
    ngt_comm_fail_all(msg);
  }

  /* Rank 0 reads every shard's header: totals and early, clear errors. */
  int code = 0;
  msg[0] = '\0';
  int64_t total = 0;
  if (c->rank == 0) {
    for (int i = 0; i < c->n_paths && !code; i++) {
      ngt_shard *sh = NULL;
      if (ngt_shard_open(c->paths[i], &sh, &err) ||
          ngt_check_model_data(c->net, sh->feat_dim, sh->num_classes, c->paths[i], &err)) {
        code = err.code ? err.code : NGT_EFORMAT;
        snprintf(msg, sizeof msg, "%s", err.msg);
      } else {
        total += sh->num_frames;
      }
      ngt_shard_close(sh);
    }
  }
  sync_status(c, code, msg);
  if (ngt_comm_bcast(&total, sizeof total, 0, &err)) fail_local(err.msg);
  c->total_frames = total;
  if (ngt_schedule_init(&c->sched, o->num_epochs, total, o->samples_per_iter, o->num_jobs_initial,
                        j1, o->num_jobs_step, o->initial_effective_lrate,
                        o->final_effective_lrate, &err))
    ngt_comm_fail_all(err.msg);
  make_signature(c);

  /* Every rank needs the NG state size (the coordinator stores the workers' states). */
  {
    ngt_optim_opts oo = ngt_optim_opts_default();
    oo.use_natural_gradient = o->use_natural_gradient;
    oo.preconditioner = strcmp(o->preconditioner, "simple") == 0 ? NGT_PRECOND_SIMPLE : NGT_PRECOND_ONLINE;
    oo.rank_in = o->rank_in; oo.rank_out = o->rank_out; oo.update_period = o->update_period;
    oo.num_samples_history = o->num_samples_history; oo.alpha = o->alpha;
    oo.max_param_change = o->max_param_change;
    ngt_optim *probe = NULL;
    if (ngt_optim_new(c->net, &oo, 1, &probe, &err)) ngt_comm_fail_all(err.msg);
    c->ng_doubles = ngt_optim_state_doubles(probe);
    ngt_optim_free(probe);
  }
  const size_t P = c->net->num_params;
  c->positions = ngt_xcalloc((size_t)c->W, sizeof(int64_t));
  c->ng_all = ngt_xcalloc((size_t)c->W * (c->ng_doubles ? c->ng_doubles : 1), sizeof(double));
  if (c->bmuf) {
    c->bmuf_global = ngt_xcalloc(P, sizeof(float));
    c->bmuf_delta = ngt_xcalloc(P, sizeof(float));
  }

  /* Run directory, resume, or a fresh start. */
  int start = 0, finished = 0;
  code = 0;
  msg[0] = '\0';
  if (c->rank == 0) {
    if (ngt_mkdir_p(o->dir, &err)) {
      code = err.code; snprintf(msg, sizeof msg, "--dir: %s", err.msg);
    } else {
      int nt = remove_stale_tmp(o->dir);
      if (nt > 0)
        NGT_LOG(NGT_INFO, "removed %d temporary file(s) left in %s by an interrupted run", nt,
                o->dir);
      int k = load_latest_checkpoint(c, &err);
      if (err.code) {
        code = err.code; snprintf(msg, sizeof msg, "%s", err.msg);
      } else if (k >= 0) {
        start = k;
        char fp[4096];
        snprintf(fp, sizeof fp, "%s/final.h5", o->dir);
        if (k >= c->sched.num_iters && access(fp, F_OK) == 0) finished = 1;
        NGT_LOG(NGT_INFO, "resuming from checkpoint %s/%d.h5 (iteration %d of %d)", o->dir, k, k,
                c->sched.num_iters);
      }
    }
  }
  sync_status(c, code, msg);
  int32_t st2[2] = {start, finished};
  if (ngt_comm_bcast(st2, sizeof st2, 0, &err)) fail_local(err.msg);
  start = st2[0];
  if (st2[1]) {
    if (c->rank == 0)
      NGT_LOG(NGT_INFO, "%s already holds a finished run (final.h5); nothing to do. Use a new "
              "--dir to train again.", o->dir);
    goto out;
  }
  if (c->rank == 0) {
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/metrics.jsonl", o->dir);
    if (start > 0) truncate_metrics(mp, start - 1); else unlink(mp);
    c->metrics = fopen(mp, "a");
    if (!c->metrics) NGT_LOG(NGT_WARN, "cannot open '%s' for metrics: %s", mp, strerror(errno));
    c->progress = o->progress < 0 ? isatty(2) : o->progress;
  }
  print_startup(c);

  /* Input transform (fresh start only; a checkpoint carries it) and initial model. */
  if (start == 0) {
    compute_transform(c);
    if (c->rank == 0) ngt_nnet_init_params(c->net, o->seed);
  } else {
    /* the coordinator loaded it; the workers get it here */
    int32_t tt = c->net->transform_type;
    if (ngt_comm_bcast(&tt, sizeof tt, 0, &err)) fail_local(err.msg);
    if (tt != NGT_TRANSFORM_NONE) {
      size_t tn = (size_t)c->net->input_dim * (size_t)(c->net->input_dim + 1);
      float *T = ngt_xmalloc(sizeof(float) * tn);
      if (c->rank == 0) memcpy(T, c->net->transform, sizeof(float) * tn);
      if (ngt_comm_bcast(T, sizeof(float) * tn, 0, &err)) fail_local(err.msg);
      if (c->rank != 0) ngt_nnet_set_transform(c->net, tt, T);
      free(T);
    }
  }
  if (c->bmuf && c->rank == 0) memcpy(c->bmuf_global, c->net->params, sizeof(float) * P);
  load_frames(c);

  /* Workers: data streams positioned, NG state restored. */
  if (ngt_comm_bcast(c->positions, sizeof(int64_t) * (size_t)c->W, 0, &err)) fail_local(err.msg);
  if (c->worker >= 0) {
    worker_setup(c);
    if (ngt_batcher_seek(c->batch, c->positions[c->worker], &err)) fail_local(err.msg);
  }
  if (c->ng_doubles && start > 0) {
    /* scatter the workers' NG states: bcast all (small) and let each take its own */
    if (ngt_comm_bcast(c->ng_all, sizeof(double) * (size_t)c->W * c->ng_doubles, 0, &err))
      fail_local(err.msg);
    if (c->worker >= 0 &&
        ngt_optim_state_load(c->opt, c->ng_all + (size_t)c->worker * c->ng_doubles, c->ng_doubles, &err))
      fail_local(err.msg);
  }
  if (c->rank == 0) {
    c->sum = ngt_xcalloc(P, sizeof(float));
  }
  c->zeros = ngt_xcalloc(P, sizeof(float));
  wstats *all = c->rank == 0 ? ngt_xcalloc((size_t)c->size, sizeof(wstats)) : NULL;
  int32_t *accept = ngt_xcalloc((size_t)c->size, sizeof(int32_t));
  size_t *ngbytes = ngt_xcalloc((size_t)c->size, sizeof(size_t));
  for (int r = 0; r < c->size; r++)
    ngbytes[r] = (c->size == 1 || r > 0) ? c->ng_doubles * sizeof(double) : 0;
  double *my_ng = ngt_xmalloc(sizeof(double) * (c->ng_doubles ? c->ng_doubles : 1));
  float *lookahead = c->bmuf && c->rank == 0 ? ngt_xmalloc(sizeof(float) * P) : NULL;

  int retry = 0, stopped_early = 0, stop_iter = 0;
  float lr_scale = 1.0f;
  for (int it = start;; ) {
    /* ---- header and model */
    header h;
    memset(&h, 0, sizeof h);
    if (c->rank == 0) {
      if (it >= c->sched.num_iters || (o->stop_after > 0 && it >= start + o->stop_after)) {
        h.iter = -1;
        stopped_early = it < c->sched.num_iters;
        stop_iter = it;
      } else {
        h.iter = it;
        h.jobs = ngt_schedule_jobs(&c->sched, it);
        h.lr = (float)(h.jobs * ngt_schedule_lrate_eff(&c->sched, it)) * lr_scale;
        h.minibatch = it == 0 ? (o->minibatch_size + 1) / 2 : o->minibatch_size;
        h.mpc_scale = it == 0 ? (float)(1.0 / sqrt(2.0)) : 1.0f;
        h.retry = retry;
      }
    }
    double t_iter = ngt_now();
    if (ngt_comm_bcast(&h, sizeof h, 0, &err)) fail_local(err.msg);
    if (h.iter < 0) break;
    float *send_model = c->net->params;
    if (c->bmuf && c->rank == 0) { bmuf_lookahead(c, lookahead); send_model = lookahead; }
    if (c->size > 1 && ngt_comm_bcast(send_model, sizeof(float) * P, 0, &err)) fail_local(err.msg);
    double t_bcast = ngt_now() - t_iter;

    /* ---- coordinator: checkpoint and validate model_it (overlaps the workers' training);
     * its own params hold model_it (W_g under BMUF) */
    if (c->rank == 0 && !retry) {
      if (it > start || start == 0)
        if (write_checkpoint(c, it, &err)) fail_local(err.msg);
      if (c->have_pending) {
        ngt_eval_result v;
        evaluate_current(c, &v);
        log_iteration(c, c->pending, &v);
        c->have_pending = 0;
      }
    }
    if (c->size == 1) {
      memcpy(c->sum, c->net->params, sizeof(float) * P); /* model_it, for a retry */
      if (c->bmuf) memcpy(c->net->params, lookahead, sizeof(float) * P);
    }

    /* ---- workers train */
    wstats mine;
    memset(&mine, 0, sizeof mine);
    if (c->worker >= 0 && c->worker < h.jobs) {
      worker_train(c, &h, &mine);
    } else if (c->worker >= 0) {
      mine.position = ngt_batcher_position(c->batch);
      mine.finite = 1;
    }
    if (c->worker >= 0 && c->ng_doubles) ngt_optim_state_save(c->opt, my_ng);
    (void)ngt_comm_take_wait_seconds();
    if (ngt_comm_gather(&mine, sizeof mine, all, 0, &err)) fail_local(err.msg);

    /* ---- accept: finite and within 1.0 of the best per-frame objective (§4.3) */
    int n_acc = 0;
    if (c->rank == 0) {
      int best = -1;
      double best_obj = -INFINITY;
      for (int r = 0; r < c->size; r++) {
        wstats *s = &all[r];
        accept[r] = 0;
        if (!s->active || s->frames <= 0) continue;
        double pf = s->obj / s->frames;
        if (s->finite && pf > best_obj) { best_obj = pf; best = r; }
      }
      for (int r = 0; r < c->size; r++) {
        wstats *s = &all[r];
        if (!s->active || s->frames <= 0) continue;
        int ok = s->finite && (it == 0 ? r == best : s->obj / s->frames >= best_obj - 1.0);
        if (!ok && it > 0)
          NGT_LOG(NGT_WARN, "iteration %d: leaving worker %d (rank %d) out of the average: %s", it,
                  c->size > 1 ? r - 1 : 0, r,
                  !s->finite ? "its objective or parameters are not finite"
                             : "its objective is more than 1.0 below the best");
        accept[r] = ok;
        n_acc += ok;
      }
    }
    if (ngt_comm_bcast(accept, sizeof(int32_t) * (size_t)c->size, 0, &err)) fail_local(err.msg);
    if (ngt_comm_bcast(&n_acc, sizeof n_acc, 0, &err)) fail_local(err.msg);
    if (n_acc == 0) {
      /* every job diverged: retry from the last model with half the learning rate */
      if (c->rank == 0) {
        retry++;
        if (retry > o->max_retries)
          ngt_die("iteration %d diverged in every job %d times, even at learning rate x%g; "
                  "stopping. Lower --initial-effective-lrate (or set --max-param-change / per-layer "
                  "max-change) and train again in a new --dir", it, retry, (double)lr_scale);
        lr_scale *= 0.5f;
        NGT_LOG(NGT_WARN, "iteration %d: every job diverged; retrying with the learning rate "
                "halved (x%g)", it, (double)lr_scale);
        for (int r = 0; r < c->size; r++)
          if (all[r].active) c->positions[c->size > 1 ? r - 1 : 0] = all[r].position;
      }
      /* model_it is re-broadcast at the top of the loop; one process restores its copy */
      if (c->size == 1) memcpy(c->net->params, c->sum, sizeof(float) * P);
      continue;
    }

    /* ---- average: one reduction of the flat parameter buffer */
    double t_avg0 = ngt_now();
    const float *contrib = accept[c->rank] ? c->net->params : c->zeros;
    if (c->size > 1) {
      if (ngt_comm_reduce_sum_f32(contrib, c->sum, P, 0, &err)) fail_local(err.msg);
    } else {
      memcpy(c->sum, c->net->params, sizeof(float) * P);
    }
    if (c->rank == 0) average_models(c, accept, n_acc);
    if (c->bmuf && c->rank == 0) memcpy(c->net->params, c->bmuf_global, sizeof(float) * P);
    double t_avg = ngt_now() - t_avg0 + t_bcast;
    if (c->ng_doubles) {
      if (ngt_comm_gatherv(my_ng, c->worker >= 0 ? c->ng_doubles * sizeof(double) : 0, c->ng_all,
                           ngbytes, 0, &err))
        fail_local(err.msg);
    }
    double comm = ngt_comm_take_wait_seconds();

    /* ---- bookkeeping on the coordinator */
    if (c->rank == 0) {
      double obj = 0, fr = 0, cor = 0, tc = 0, td = 0, mc = 0, mcs = 0, gc = 0, steps = 0, ref = 0;
      int nact = 0;
      for (int r = 0; r < c->size; r++) {
        wstats *s = &all[r];
        if (c->size > 1 && r > 0) c->positions[r - 1] = s->position;
        if (c->size == 1) c->positions[0] = s->position;
        if (!s->active) continue;
        nact++;
        obj += s->obj; fr += s->frames; cor += s->correct; tc += s->t_compute; td += s->t_data;
        mc += (double)s->comp_clipped; mcs += (double)s->comp_steps; gc += (double)s->global_clipped;
        steps += (double)s->steps; ref += (double)s->refused;
      }
      double secs = ngt_now() - t_iter;
      double *pm = c->pending;
      pm[PM_ITER] = it; pm[PM_JOBS] = h.jobs; pm[PM_LR] = h.lr;
      pm[PM_OBJ] = fr > 0 ? obj / fr : 0; pm[PM_ACC] = fr > 0 ? cor / fr : 0; pm[PM_FRAMES] = fr;
      pm[PM_SECONDS] = secs; pm[PM_COMPUTE] = nact ? tc / nact : 0; pm[PM_DATA] = nact ? td / nact : 0;
      pm[PM_COMM] = comm; pm[PM_AVG] = t_avg; pm[PM_MC] = mcs > 0 ? mc / mcs : 0;
      pm[PM_GC] = steps > 0 ? gc / steps : 0; pm[PM_REFUSED] = ref; pm[PM_ACCEPTED] = n_acc;
      pm[PM_EPOCH] = ngt_schedule_epoch(&c->sched, it + 1);
      c->have_pending = 1;
    }
    retry = 0;
    lr_scale = 1.0f;
    it++;
  }

  /* ---- the end: last checkpoint, combination, priors, final.h5 (coordinator) */
  if (c->rank == 0) {
    if (stopped_early) {
      if (write_checkpoint(c, stop_iter, &err)) fail_local(err.msg);
      if (c->have_pending) {
        ngt_eval_result v;
        evaluate_current(c, &v);
        log_iteration(c, c->pending, &v);
      }
      NGT_LOG(NGT_INFO, "stopped after iteration %d as asked (--stop-after); rerun the same "
              "command to resume", stop_iter);
    } else {
      if (write_checkpoint(c, c->sched.num_iters, &err)) fail_local(err.msg);
      if (c->have_pending) {
        ngt_eval_result v;
        evaluate_current(c, &v);
        log_iteration(c, c->pending, &v);
        c->have_pending = 0;
      }
      final_combination(c);
      estimate_priors(c);
      char fp[4096];
      snprintf(fp, sizeof fp, "%s/final.h5", o->dir);
      if (ngt_nnet_save(c->net, fp, NULL, 0, &err)) fail_local(err.msg);
      ngt_eval_result v;
      evaluate_current(c, &v);
      NGT_LOG(NGT_INFO, "wrote %s: %s objective %.4f, frame accuracy %.2f%% (%" PRId64
              " frames); %.1f s in all", fp, c->valid ? "validation" : "train-subset",
              v.objective, 100 * v.accuracy, v.frames, ngt_now() - c->t_start);
    }
  }
  free(all);
  free(accept);
  free(ngbytes);
  free(my_ng);
  free(lookahead);
out:
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
  free(c->zeros);
  free(c->bmuf_global);
  free(c->bmuf_delta);
  free(c->ng_all);
  free(c->positions);
  ngt_paths_free(c->paths, c->n_paths);
  ngt_nnet_free(c->net);
  return 0;
}

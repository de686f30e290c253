/* worker.c — a worker rank's part of training: its data stream, the NG-SGD steps of one
 * job, and its NG state across iterations and retries (docs/algorithm.md §3, §4.1-4.3;
 * docs/design.md §3).
 * Data: with --data-placement=shared (default) the job j of iteration i reads archive
 * read p_i + j of the whole corpus (archives.h), whichever worker it is, and tells the
 * stream which read comes next so prefetch runs ahead; with local placement worker w
 * reads its own shards w, w+W, ... in a seeded order, positioned exactly on resume. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/lda.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/rng.h"
#include "train_internal.h"

char **ngt_worker_shards(const ngt_train_ctx *c, int *n) {
  char **mine = ngt_xcalloc((size_t)c->n_paths, sizeof(char *));
  *n = 0;
  for (int i = c->worker; i < c->n_paths; i += c->W) mine[(*n)++] = c->paths[i];
  return mine;
}

/* A stream over this worker's shards (local placement), or over every shard (shared). */
static ngt_batcher *open_stream(const ngt_train_ctx *c, uint64_t seed, int loop,
                                int64_t archives) {
  ngt_err err = {0};
  int n = 0;
  char **mine = ngt_worker_shards(c, &n);
  if (c->ch.placement == NGT_PLACEMENT_SHARED) {
    n = c->n_paths;
    memcpy(mine, c->paths, sizeof(char *) * (size_t)n);
  }
  ngt_batcher_opts bo = ngt_batcher_opts_default();
  bo.num_archives = archives;
  bo.ctx_left = c->net->ctx_left;
  bo.ctx_right = c->net->ctx_right;
  bo.seed = seed;
  bo.shuffle_buffer = c->o->shuffle_buffer;
  bo.loop = loop;
  ngt_batcher *b = NULL;
  if (ngt_batcher_new((const char *const *)mine, n, &bo, &b, &err)) ngt_train_fail_local(err.msg);
  free(mine);
  return b;
}

void ngt_worker_setup(ngt_train_ctx *c) {
  const ngt_train_opts *o = c->o;
  ngt_err err = {0};
  if (c->num_archives) c->batch = open_stream(c, c->data_seed, 1, c->num_archives);
  else
    c->batch = open_stream(c, ngt_rng_mix(o->seed, (uint64_t)c->worker + 1000), 1, 0);
  ngt_optim_opts oo = ngt_train_optim_opts(c);
  if (ngt_optim_new(c->net, &oo, o->minibatch_size, &c->opt, &err)) ngt_train_fail_local(err.msg);
  c->ws = ngt_nnet_ws_new(c->net, o->minibatch_size);
  c->X = ngt_mat_alloc(o->minibatch_size, c->net->input_dim);
  c->y = ngt_xmalloc(sizeof(int32_t) * (size_t)o->minibatch_size);
  c->ng_snapshot = ngt_xmalloc(sizeof(double) * (c->ng_doubles ? c->ng_doubles : 1));
  if (!c->num_archives && ngt_batcher_seek(c->batch, c->st.positions[c->worker], &err))
    ngt_train_fail_local(err.msg);
}

/* Shared placement: announce this job's archive read and the next one this worker will
 * make (its next iteration with a job), so the prefetch thread reads ahead across
 * iterations. Returns the frames of this read. */
static int64_t begin_archive(ngt_train_ctx *c, const ngt_iter_header *h) {
  ngt_err err = {0};
  const int64_t g = ngt_archives_read_of(h->first_read, c->worker);
  int64_t g_next = -1;
  for (int i = h->iter + 1; i < c->sched.num_iters && g_next < 0; i++)
    if (ngt_schedule_jobs(&c->sched, i) > c->worker)
      g_next = ngt_archives_read_of(ngt_schedule_processed(&c->sched, i), c->worker);
  if (ngt_batcher_archive_begin(c->batch, g, g_next, &err)) ngt_train_fail_local(err.msg);
  return ngt_batcher_archive_frames(c->batch, g);
}

void ngt_worker_train(ngt_train_ctx *c, const ngt_iter_header *h, ngt_worker_stats *st) {
  ngt_err err = {0};
  memset(st, 0, sizeof *st);
  st->active = 1;
  if (c->ng_doubles) {
    /* a retry starts from the NG state the failed attempt started from */
    if (h->retry) {
      if (ngt_optim_state_load(c->opt, c->ng_snapshot, c->ng_doubles, &err))
        ngt_train_fail_local(err.msg);
    } else {
      ngt_optim_state_save(c->opt, c->ng_snapshot);
    }
  }
  if (c->o->ng_reset_each_iter) ngt_optim_reset_ng(c->opt);
  ngt_optim_clear_stats(c->opt);
  int64_t remaining = c->num_archives ? begin_archive(c, h) : c->spi;
  double t0 = ngt_now();
  while (remaining > 0) {
    int n = (int)(remaining < h->minibatch ? remaining : h->minibatch);
    double td = ngt_now();
    int got = 0;
    if (ngt_batcher_next(c->batch, n, c->X, c->y, &got, &err)) ngt_train_fail_local(err.msg);
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
    if (ngt_nnet_save(c->net, path, NULL, 0, &err)) ngt_train_fail_local(err.msg);
  }
}

/* Stream lda_frames / W frames of this worker's shards in a seeded order through a batcher
 * of its own: memory stays bounded by the shuffle buffer, whatever the corpus (§4.9). */
void ngt_worker_lda_stats(ngt_train_ctx *c, ngt_lda_stats *st) {
  ngt_err err = {0};
  ngt_batcher *b = open_stream(c, ngt_rng_mix(c->o->seed, 79 + (uint64_t)c->worker), 0, 0);
  int64_t want = c->o->lda_frames / c->W + 1;
  const int mb = 1024;
  ngt_mat X = ngt_mat_alloc(mb, c->net->input_dim);
  int32_t *y = ngt_xmalloc(sizeof(int32_t) * mb);
  for (int64_t done = 0; done < want;) {
    int k = (int)(want - done < mb ? want - done : mb), got = 0;
    if (ngt_batcher_next(b, k, X, y, &got, &err)) ngt_train_fail_local(err.msg);
    if (got == 0) break;
    ngt_lda_stats_add(st, ngt_mat_rows(X, 0, got), y);
    done += got;
  }
  free(y);
  ngt_mat_free(&X);
  ngt_batcher_free(b);
}

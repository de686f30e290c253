/* batcher.c — frames out of shards: splicing, seeded shuffling, minibatches, prefetch;
 * in-memory framesets. See include/ngtrain/batcher.h.
 *
 * Contract (the order is a pure function of seed and epoch, batcher.h):
 *   epoch e: shard order  = perm(n_shards)  from ngt_rng_make(seed, k_e),
 *            chunk order  = perm(n_chunks)  from ngt_rng_make(seed, k_es),
 *            frame order  = perm(chunk len) from ngt_rng_make(seed, k_esc), with
 *   k_e   = ngt_rng_mix(NGT_RNG_STREAM_DATA, e)
 *   k_es  = ngt_rng_mix(k_e,  1 + s)   s = index of the shard in the path list
 *   k_esc = ngt_rng_mix(k_es, 1 + c)   c = index of the chunk in file order
 * A chunk is a run of consecutive whole utterances of one shard holding at most
 * shuffle_buffer frames (greedy, in file order; a longer utterance is a chunk alone).
 * With shuffle = 0 every permutation is the identity (file order).
 *
 * Reading: the "loader" reads one chunk (opening the shard, checking it still matches
 * the metadata seen at ngt_batcher_new, reading the frame range, closing it) into a
 * chunk buffer, together with each frame's utterance bounds and the frame order. With
 * prefetch a background thread runs the loader for the NEXT chunk while the caller
 * splices from the current one (double buffering: two chunk buffers, one mutex, two
 * condition variables, no busy-waiting). Memory: two chunk buffers of the largest chunk.
 * Errors met by the loader travel with the chunk and are returned by ngt_batcher_next
 * when the stream reaches that chunk (so prefetch on/off behave identically); they are
 * sticky until ngt_batcher_seek.
 *
 * Positioning: a cursor (epoch, sp, cp) names the chunk at position cp of the chunk
 * order of the shard at position sp of the shard order of epoch e. ngt_batcher_seek
 * walks the sizes (metadata only) to the cursor and frame offset of any position.
 *
 * Archive mode (num_archives > 0; archives.h): the stream is the sequence of archive
 * reads the caller announces with ngt_batcher_archive_begin (the current read and the
 * next, so prefetch runs one read ahead). A read's pieces (shard, utterance range), in
 * corpus order, are loaded in groups of at most shuffle_buffer frames (one group when
 * the archive fits), and the frames of a group are delivered in a seeded permutation
 * keyed by (read, group). The loader takes reads from a small queue filled by the
 * consumer under the mutex; the archive metadata is used under the mutex too.
 *
 * Dimension letters: D feature dim, L/R left/right context, T frames.
 */
#include "ngtrain/batcher.h"

#include <hdf5.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/archives.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

/* ---------------------------------------------------------------- splicing */

void ngt_splice_frame(const float *feats, int D, int64_t s, int64_t e, int64_t t, int L, int R,
                      float *out) {
  const size_t rowb = (size_t)D * sizeof *feats;
  if (t - L >= s && t + R < e) { /* no clamping: one contiguous block of L+R+1 rows */
    memcpy(out, feats + (size_t)(t - L) * (size_t)D, rowb * (size_t)(L + R + 1));
    return;
  }
  for (int j = -L; j <= R; j++) {
    int64_t u = t + j;
    if (u < s) u = s;
    if (u > e - 1) u = e - 1;
    memcpy(out + (size_t)(j + L) * (size_t)D, feats + (size_t)u * (size_t)D, rowb);
  }
}

/* ---------------------------------------------------------------- types */

typedef struct shard_meta {
  char *path;           /* owned */
  int64_t T;            /* frames */
  int64_t U;            /* utterances */
  int64_t *utt_offsets; /* owned, (U+1) */
  int64_t n_chunks;
  int64_t *chunk_utt; /* owned, (n_chunks+1): first utterance of each chunk, last = U */
} shard_meta;

typedef struct cursor {
  int64_t epoch;
  int64_t sp; /* position in the epoch's shard order */
  int64_t cp; /* position in that shard's chunk order */
} cursor;

enum { BUF_EMPTY = 0, BUF_FULL, BUF_END, BUF_ERROR };

typedef struct chunk_buf {
  float *feats;     /* (cap, D): the chunk's frames in file order */
  int32_t *labels;  /* (cap) */
  int32_t *us, *ue; /* (cap): utterance [us, ue) of each frame, local indices */
  uint32_t *order;  /* (cap): delivery order, local frame indices */
  int64_t n;        /* frames in the chunk */
  int state;        /* BUF_*; written under the mutex when prefetching */
  ngt_err err;      /* for BUF_ERROR */
} chunk_buf;

struct ngt_batcher {
  ngt_batcher_opts o;
  int n_shards;
  shard_meta *sh;     /* (n_shards) */
  int D, C, in_dim;   /* feat_dim, num_classes, D*(L+R+1) */
  int64_t total;      /* frames per epoch */
  int64_t max_chunk;  /* frames in the largest chunk = buffer capacity */
  int64_t max_chunks; /* chunks in the shard with most chunks */

  /* consumer side */
  int64_t position; /* frames delivered since position 0 of epoch 0 */
  chunk_buf bufs[2];
  chunk_buf *cur, *nxt; /* cur: being spliced from; nxt: being filled / ready */
  int have_cur;         /* cur holds a chunk (possibly exhausted) */
  int64_t cur_pos;      /* next index into cur->order */
  int64_t pending_skip; /* frames of the next chunk already "delivered" (seek) */
  int ended;            /* loop = 0 and the pass is over */
  int failed;           /* a loader error was returned; sticky until seek */
  ngt_err fail_err;

  /* loader side (the prefetch thread, or the caller without prefetch) */
  cursor prod;           /* next chunk to load */
  int prod_end;          /* no more chunks (loop = 0) */
  uint32_t *perm_shards; /* (n_shards) scratch: shard order of perm_epoch */
  int64_t perm_epoch;    /* epoch perm_shards belongs to, -1 = none */
  uint32_t *perm_chunks; /* (max_chunks) scratch: chunk order of (pc_epoch, pc_shard) */
  int64_t pc_epoch, pc_shard;

  /* prefetch thread */
  pthread_t thread;
  int thread_running;
  int stop;
  pthread_mutex_t mu;
  pthread_cond_t cv_full;  /* nxt->state left BUF_EMPTY */
  pthread_cond_t cv_empty; /* nxt->state became BUF_EMPTY, or stop */

  /* archive mode */
  ngt_archives *arch; /* NULL in the shard-order mode */
  int64_t rq[4];      /* reads announced but not yet started by the loader (mutex) */
  int rq_n;
  int64_t ld_g;            /* loader: read being loaded, -1 = none */
  ngt_archive_piece *ld_p; /* its pieces */
  int ld_np, ld_pi;        /* pieces, next piece to load */
  int64_t ld_group;        /* groups of ld_g loaded so far */
  int64_t expect_g;        /* the read the consumer starts next if nothing changes */
};

ngt_batcher_opts ngt_batcher_opts_default(void) {
  ngt_batcher_opts o;
  memset(&o, 0, sizeof o);
  o.ctx_left = 0;
  o.ctx_right = 0;
  o.seed = 0;
  o.shuffle_buffer = 500000;
  o.shuffle = 1;
  o.loop = 1;
  o.prefetch = 1;
  return o;
}

/* ---------------------------------------------------------------- order */

static uint64_t key_epoch(int64_t e) { return ngt_rng_mix(NGT_RNG_STREAM_DATA, (uint64_t)e); }
static uint64_t key_shard(int64_t e, int64_t s) {
  return ngt_rng_mix(key_epoch(e), 1 + (uint64_t)s);
}
static uint64_t key_chunk(int64_t e, int64_t s, int64_t c) {
  return ngt_rng_mix(key_shard(e, s), 1 + (uint64_t)c);
}

static void identity_u32(uint32_t *a, int64_t n) {
  for (int64_t i = 0; i < n; i++) a[i] = (uint32_t)i;
}

/* Shard (index into b->sh) at position sp of epoch e's shard order. Loader-side. */
static int64_t shard_at(ngt_batcher *b, int64_t e, int64_t sp) {
  if (b->perm_epoch != e) {
    identity_u32(b->perm_shards, b->n_shards);
    if (b->o.shuffle) {
      ngt_rng r = ngt_rng_make(b->o.seed, key_epoch(e));
      ngt_rng_shuffle_u32(&r, b->perm_shards, (size_t)b->n_shards);
    }
    b->perm_epoch = e;
  }
  return b->perm_shards[sp];
}

/* Chunk (index in file order) at position cp of shard s's chunk order in epoch e. */
static int64_t chunk_at(ngt_batcher *b, int64_t e, int64_t s, int64_t cp) {
  if (b->pc_epoch != e || b->pc_shard != s) {
    int64_t n = b->sh[s].n_chunks;
    identity_u32(b->perm_chunks, n);
    if (b->o.shuffle) {
      ngt_rng r = ngt_rng_make(b->o.seed, key_shard(e, s));
      ngt_rng_shuffle_u32(&r, b->perm_chunks, (size_t)n);
    }
    b->pc_epoch = e;
    b->pc_shard = s;
  }
  return b->perm_chunks[cp];
}

/* Moves c forward (if needed) to the next cursor naming an existing chunk. Returns 0,
 * or 1 if the stream is over (loop = 0 and epoch 0 done). Shards without frames have no
 * chunks and are skipped; b->total > 0 guarantees termination. */
static int cursor_normalize(ngt_batcher *b, cursor *c) {
  for (;;) {
    if (!b->o.loop && c->epoch >= 1) return 1;
    if (c->sp >= b->n_shards) {
      c->epoch++;
      c->sp = 0;
      c->cp = 0;
      continue;
    }
    if (c->cp < b->sh[shard_at(b, c->epoch, c->sp)].n_chunks) return 0;
    c->sp++;
    c->cp = 0;
  }
}

/* ---------------------------------------------------------------- the loader */

/* Utterances [u0, u1) and frames [f0, f1) of chunk ci of shard m. */
static void chunk_range(const shard_meta *m, int64_t ci, int64_t *u0, int64_t *u1, int64_t *f0,
                        int64_t *f1) {
  *u0 = m->chunk_utt[ci];
  *u1 = m->chunk_utt[ci + 1];
  *f0 = m->utt_offsets[*u0];
  *f1 = m->utt_offsets[*u1];
}

/* Opens shard m and checks that it is still the file the batcher was built on (frames,
 * utterances, dims and utterance offsets): shards must not change during a run. */
static int shard_open_unchanged(const ngt_batcher *b, const shard_meta *m, ngt_shard **out,
                                ngt_err *err) {
  ngt_shard *sh = NULL;
  int rc = ngt_shard_open(m->path, &sh, err);
  if (rc) return rc;
  if (sh->num_frames != m->T || sh->num_utts != m->U || sh->feat_dim != b->D ||
      sh->num_classes != b->C ||
      memcmp(sh->utt_offsets, m->utt_offsets, (size_t)(m->U + 1) * sizeof *m->utt_offsets) != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s' changed while training (it had %" PRId64 " frames in %" PRId64
                     " utterances, now %" PRId64 " in %" PRId64 "); "
                     "do not modify shards during a run",
                     m->path, m->T, m->U, sh->num_frames, sh->num_utts);
    ngt_shard_close(sh);
    return rc;
  }
  *out = sh;
  return 0;
}

/* Reads chunk `c` into buf (feats, labels, utterance bounds, order). */
static int load_chunk(ngt_batcher *b, cursor c, chunk_buf *buf, ngt_err *err) {
  const int64_t s = shard_at(b, c.epoch, c.sp);
  const int64_t ci = chunk_at(b, c.epoch, s, c.cp);
  const shard_meta *m = &b->sh[s];
  int64_t u0, u1, f0, f1;
  chunk_range(m, ci, &u0, &u1, &f0, &f1);
  ngt_shard *sh = NULL;
  int rc = shard_open_unchanged(b, m, &sh, err);
  if (rc)
    return ngt_err_prefix(err, "reading chunk %" PRId64 " of shard '%s' in epoch %" PRId64, ci,
                          m->path, c.epoch);
  rc = ngt_shard_read(sh, f0, f1 - f0, buf->feats, buf->labels, err);
  ngt_shard_close(sh);
  if (rc) return rc;
  const int64_t n = f1 - f0;
  for (int64_t u = u0; u < u1; u++) {
    int32_t a = (int32_t)(m->utt_offsets[u] - f0), z = (int32_t)(m->utt_offsets[u + 1] - f0);
    for (int32_t t = a; t < z; t++) {
      buf->us[t] = a;
      buf->ue[t] = z;
    }
  }
  identity_u32(buf->order, n);
  if (b->o.shuffle) {
    ngt_rng r = ngt_rng_make(b->o.seed, key_chunk(c.epoch, s, ci));
    ngt_rng_shuffle_u32(&r, buf->order, (size_t)n);
  }
  buf->n = n;
  return 0;
}

/* Archive mode: 1 if the loader has a read to load (taking the next announced read from
 * the queue if needed), 0 if it must wait. Called with the mutex held when prefetching. */
static int loader_ready(ngt_batcher *b) {
  if (!b->arch) return 1;
  while (b->ld_g < 0 && b->rq_n > 0) {
    int64_t g = b->rq[0];
    memmove(b->rq, b->rq + 1, sizeof(int64_t) * (size_t)--b->rq_n);
    free(b->ld_p);
    b->ld_p = NULL;
    ngt_archives_pieces(b->arch, g, &b->ld_p, &b->ld_np);
    if (b->ld_np == 0) continue; /* an empty archive (utterances longer than T/A) */
    b->ld_g = g;
    b->ld_pi = 0;
    b->ld_group = 0;
  }
  return b->ld_g >= 0;
}

/* Archive mode: the next group of pieces of read ld_g into buf. */
static int load_group(ngt_batcher *b, chunk_buf *buf, ngt_err *err) {
  int64_t n = 0;
  while (b->ld_pi < b->ld_np) {
    const ngt_archive_piece *p = &b->ld_p[b->ld_pi];
    const int64_t len = p->f1 - p->f0;
    if (n > 0 && n + len > b->o.shuffle_buffer) break;
    const shard_meta *m = &b->sh[p->shard];
    ngt_shard *sh = NULL;
    int rc = shard_open_unchanged(b, m, &sh, err);
    if (rc)
      return ngt_err_prefix(err,
                            "reading archive %" PRId64 " (epoch %" PRId64 ") from "
                            "shard '%s'",
                            b->ld_g % ngt_archives_num(b->arch),
                            b->ld_g / ngt_archives_num(b->arch), m->path);
    rc = ngt_shard_read(sh, p->f0, len, buf->feats + (size_t)n * (size_t)b->D, buf->labels + n,
                        err);
    ngt_shard_close(sh);
    if (rc) return rc;
    for (int64_t u = p->u0; u < p->u1; u++) {
      int32_t a = (int32_t)(n + m->utt_offsets[u] - p->f0),
              z = (int32_t)(n + m->utt_offsets[u + 1] - p->f0);
      for (int32_t t = a; t < z; t++) {
        buf->us[t] = a;
        buf->ue[t] = z;
      }
    }
    n += len;
    b->ld_pi++;
  }
  identity_u32(buf->order, n);
  if (b->o.shuffle) {
    ngt_rng r = ngt_rng_make(b->o.seed, ngt_rng_mix(ngt_rng_mix(key_epoch(-1), (uint64_t)b->ld_g),
                                                    (uint64_t)b->ld_group));
    ngt_rng_shuffle_u32(&r, buf->order, (size_t)n);
  }
  buf->n = n;
  b->ld_group++;
  if (b->ld_pi == b->ld_np) b->ld_g = -1;
  return 0;
}

/* Fills buf with the chunk at b->prod and advances b->prod. Returns the new state
 * (BUF_FULL, BUF_END or BUF_ERROR with buf->err); does not store it in buf. */
static int fill_next(ngt_batcher *b, chunk_buf *buf) {
  buf->err.code = 0;
  buf->err.msg[0] = '\0';
  if (b->arch) {
    if (!loader_ready(b)) return BUF_END;
    return load_group(b, buf, &buf->err) ? BUF_ERROR : BUF_FULL;
  }
  if (b->prod_end) return BUF_END;
  if (load_chunk(b, b->prod, buf, &buf->err) != 0) return BUF_ERROR;
  b->prod.cp++;
  if (cursor_normalize(b, &b->prod)) b->prod_end = 1;
  return BUF_FULL;
}

static void *prefetch_main(void *arg) {
  ngt_batcher *b = arg;
  pthread_mutex_lock(&b->mu);
  for (;;) {
    while (!b->stop && (b->nxt->state != BUF_EMPTY || !loader_ready(b)))
      pthread_cond_wait(&b->cv_empty, &b->mu);
    if (b->stop) break;
    chunk_buf *buf = b->nxt; /* the consumer does not touch nxt while it is EMPTY */
    pthread_mutex_unlock(&b->mu);
    int st = fill_next(b, buf);
    pthread_mutex_lock(&b->mu);
    buf->state = st;
    pthread_cond_signal(&b->cv_full);
  }
  pthread_mutex_unlock(&b->mu);
  /* Threadsafe HDF5 keeps one error stack per thread and does not free its messages
   * when the thread ends: clear it, or a failed read leaks them. */
  H5Eclear2(H5E_DEFAULT);
  return NULL;
}

static int thread_start(ngt_batcher *b, ngt_err *err) {
  if (!b->o.prefetch) return 0;
  b->stop = 0;
  int e = pthread_create(&b->thread, NULL, prefetch_main, b);
  if (e != 0)
    return ngt_err_set(err, NGT_EIO, "cannot start the prefetch thread: %s (set prefetch = 0?)",
                       strerror(e));
  b->thread_running = 1;
  return 0;
}

static void thread_stop(ngt_batcher *b) {
  if (!b->thread_running) return;
  pthread_mutex_lock(&b->mu);
  b->stop = 1;
  pthread_cond_broadcast(&b->cv_empty);
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->thread, NULL);
  b->thread_running = 0;
}

/* Makes the next chunk current. Returns 0, 1 at the end of the pass, or an error. */
static int advance_chunk(ngt_batcher *b, ngt_err *err) {
  int st;
  if (b->thread_running) {
    pthread_mutex_lock(&b->mu);
    while (b->nxt->state == BUF_EMPTY) pthread_cond_wait(&b->cv_full, &b->mu);
    st = b->nxt->state;
    if (st == BUF_FULL) {
      chunk_buf *t = b->cur;
      b->cur = b->nxt;
      b->nxt = t;
      b->nxt->state = BUF_EMPTY;
      pthread_cond_signal(&b->cv_empty);
    }
    pthread_mutex_unlock(&b->mu);
  } else {
    st = fill_next(b, b->nxt);
    if (st == BUF_FULL) {
      chunk_buf *t = b->cur;
      b->cur = b->nxt;
      b->nxt = t;
    }
  }
  if (st == BUF_END) return 1;
  if (st == BUF_ERROR) {
    b->failed = 1;
    b->fail_err = b->nxt->err;
    if (err) *err = b->fail_err;
    return b->fail_err.code ? b->fail_err.code : NGT_EIO;
  }
  b->have_cur = 1;
  b->cur_pos = b->pending_skip;
  b->pending_skip = 0;
  return 0;
}

/* ---------------------------------------------------------------- public API */

static void free_meta(shard_meta *m) {
  free(m->path);
  free(m->utt_offsets);
  free(m->chunk_utt);
}

void ngt_batcher_free(ngt_batcher *b) {
  if (!b) return;
  thread_stop(b);
  pthread_cond_destroy(&b->cv_empty);
  pthread_cond_destroy(&b->cv_full);
  pthread_mutex_destroy(&b->mu);
  for (int i = 0; i < 2; i++) {
    free(b->bufs[i].feats);
    free(b->bufs[i].labels);
    free(b->bufs[i].us);
    free(b->bufs[i].ue);
    free(b->bufs[i].order);
  }
  if (b->sh)
    for (int i = 0; i < b->n_shards; i++) free_meta(&b->sh[i]);
  free(b->sh);
  free(b->perm_shards);
  free(b->perm_chunks);
  ngt_archives_free(b->arch);
  free(b->ld_p);
  free(b);
}

/* Cuts shard m into chunks of whole utterances holding at most `buffer` frames. */
static int make_chunks(shard_meta *m, int64_t buffer) {
  int64_t n = 0;
  for (int pass = 0; pass < 2; pass++) {
    n = 0;
    int64_t u = 0;
    while (u < m->U) {
      if (pass) m->chunk_utt[n] = u;
      int64_t f0 = m->utt_offsets[u];
      u++; /* at least one utterance, even if longer than the buffer */
      while (u < m->U && m->utt_offsets[u + 1] - f0 <= buffer) u++;
      n++;
    }
    if (pass == 0) {
      m->chunk_utt = malloc((size_t)(n + 1) * sizeof *m->chunk_utt);
      if (!m->chunk_utt) return NGT_ENOMEM;
    }
  }
  m->chunk_utt[n] = m->U;
  m->n_chunks = n;
  return 0;
}

int ngt_batcher_new(const char *const *paths, int n_paths, const ngt_batcher_opts *o,
                    ngt_batcher **out, ngt_err *err) {
  *out = NULL;
  ngt_batcher_opts opts = o ? *o : ngt_batcher_opts_default();
  if (n_paths <= 0) return ngt_err_set(err, NGT_EINVAL, "no shards given (check --train)");
  if (opts.ctx_left < 0 || opts.ctx_right < 0)
    return ngt_err_set(err, NGT_EINVAL, "context %d..%d: left and right context must be >= 0",
                       -opts.ctx_left, opts.ctx_right);
  if (opts.shuffle_buffer <= 0 || opts.shuffle_buffer > INT32_MAX)
    return ngt_err_set(err, NGT_EINVAL,
                       "shuffle buffer of %" PRId64 " frames: must be in "
                       "[1, %d]",
                       opts.shuffle_buffer, INT32_MAX);
  ngt_batcher *b = calloc(1, sizeof *b);
  if (!b) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv_full, NULL);
  pthread_cond_init(&b->cv_empty, NULL);
  b->o = opts;
  b->perm_epoch = b->pc_epoch = b->pc_shard = -1;
  b->ld_g = b->expect_g = -1;
  b->sh = calloc((size_t)n_paths, sizeof *b->sh);
  int rc = 0;
  if (!b->sh) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
    goto fail;
  }
  b->n_shards = n_paths;
  for (int i = 0; i < n_paths; i++) {
    ngt_shard *s = NULL;
    rc = ngt_shard_open(paths[i], &s, err);
    if (rc) goto fail;
    if (i == 0) {
      b->D = s->feat_dim;
      b->C = s->num_classes;
    } else if (s->feat_dim != b->D || s->num_classes != b->C) {
      int fd = s->feat_dim != b->D;
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "shards disagree on %s: '%s' has %s = %d but '%s' has "
                       "%s = %d (all shards of a run must come from the same features and "
                       "alignments)",
                       fd ? "feat_dim" : "num_classes", paths[0], fd ? "feat_dim" : "num_classes",
                       fd ? b->D : b->C, paths[i], fd ? "feat_dim" : "num_classes",
                       fd ? s->feat_dim : s->num_classes);
      ngt_shard_close(s);
      goto fail;
    }
    shard_meta *m = &b->sh[i];
    m->T = s->num_frames;
    m->U = s->num_utts;
    m->path = strdup(paths[i]);
    m->utt_offsets = malloc((size_t)(m->U + 1) * sizeof *m->utt_offsets);
    if (m->utt_offsets)
      memcpy(m->utt_offsets, s->utt_offsets, (size_t)(m->U + 1) * sizeof *m->utt_offsets);
    ngt_shard_close(s);
    if (!m->path || !m->utt_offsets || make_chunks(m, opts.shuffle_buffer) != 0) {
      rc = ngt_err_set(err, NGT_ENOMEM, "out of memory for the metadata of '%s'", paths[i]);
      goto fail;
    }
    b->total += m->T;
    if (m->n_chunks > b->max_chunks) b->max_chunks = m->n_chunks;
    for (int64_t c = 0; c < m->n_chunks; c++) {
      int64_t len = m->utt_offsets[m->chunk_utt[c + 1]] - m->utt_offsets[m->chunk_utt[c]];
      if (len > b->max_chunk) b->max_chunk = len;
    }
  }
  if (b->total == 0) {
    rc = ngt_err_set(err, NGT_EINVAL, "the %d shard(s) starting with '%s' hold no frames", n_paths,
                     paths[0]);
    goto fail;
  }
  if (b->max_chunk > INT32_MAX) {
    rc = ngt_err_set(err, NGT_EINVAL,
                     "an utterance of %" PRId64 " frames is too long (limit "
                     "%d)",
                     b->max_chunk, INT32_MAX);
    goto fail;
  }
  if ((int64_t)b->D * (opts.ctx_left + opts.ctx_right + 1) > INT32_MAX) {
    rc = ngt_err_set(err, NGT_EINVAL, "input dim %d x %d frames is too large", b->D,
                     opts.ctx_left + opts.ctx_right + 1);
    goto fail;
  }
  b->in_dim = b->D * (opts.ctx_left + opts.ctx_right + 1);
  b->perm_shards = malloc((size_t)n_paths * sizeof *b->perm_shards);
  b->perm_chunks = malloc((size_t)(b->max_chunks > 0 ? b->max_chunks : 1) *
                          sizeof *b->perm_chunks);
  if (!b->perm_shards || !b->perm_chunks) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
    goto fail;
  }
  size_t cap = (size_t)b->max_chunk;
  if (opts.num_archives > 0) {
    int64_t **off = malloc(sizeof(int64_t *) * (size_t)n_paths);
    int64_t *U = malloc(sizeof(int64_t) * (size_t)n_paths);
    if (!off || !U) {
      free(off);
      free(U);
      rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
      goto fail;
    }
    for (int i = 0; i < n_paths; i++) {
      off[i] = b->sh[i].utt_offsets;
      U[i] = b->sh[i].U;
    }
    rc = ngt_archives_new(n_paths, (const int64_t *const *)off, U, opts.num_archives,
                          ngt_archives_unit_for(b->total, opts.num_archives, opts.shuffle_buffer),
                          opts.seed, &b->arch, err);
    free(off);
    free(U);
    if (rc) goto fail;
    int64_t g = opts.shuffle_buffer < b->total ? opts.shuffle_buffer : b->total;
    if (ngt_archives_max_unit(b->arch) > g) g = ngt_archives_max_unit(b->arch);
    cap = (size_t)g;
  }
  for (int i = 0; i < 2; i++) {
    chunk_buf *c = &b->bufs[i];
    c->feats = malloc(cap * (size_t)b->D * sizeof *c->feats);
    c->labels = malloc(cap * sizeof *c->labels);
    c->us = malloc(cap * sizeof *c->us);
    c->ue = malloc(cap * sizeof *c->ue);
    c->order = malloc(cap * sizeof *c->order);
    if (!c->feats || !c->labels || !c->us || !c->ue || !c->order) {
      rc = ngt_err_set(err, NGT_ENOMEM,
                       "out of memory for two chunks of %zu frames x %d dims "
                       "(use a smaller shuffle buffer)",
                       cap, b->D);
      goto fail;
    }
  }
  b->cur = &b->bufs[0];
  b->nxt = &b->bufs[1];
  cursor c0 = {0, 0, 0};
  b->prod = c0;
  b->prod_end = cursor_normalize(b, &b->prod);
  rc = thread_start(b, err);
  if (rc) goto fail;
  *out = b;
  return 0;
fail:
  ngt_batcher_free(b);
  return rc;
}

int64_t ngt_batcher_total_frames(const ngt_batcher *b) { return b->total; }
int ngt_batcher_feat_dim(const ngt_batcher *b) { return b->D; }
int ngt_batcher_num_classes(const ngt_batcher *b) { return b->C; }
int ngt_batcher_input_dim(const ngt_batcher *b) { return b->in_dim; }
int64_t ngt_batcher_position(const ngt_batcher *b) { return b->position; }
int64_t ngt_batcher_epoch(const ngt_batcher *b) { return b->position / b->total; }

int ngt_batcher_next(ngt_batcher *b, int n, ngt_mat X, int32_t *labels, int *got, ngt_err *err) {
  NGT_ASSERT(b != NULL && n >= 0);
  NGT_ASSERT(X.cols == b->in_dim && X.rows >= n);
  *got = 0;
  if (b->failed) {
    if (err) *err = b->fail_err;
    return b->fail_err.code ? b->fail_err.code : NGT_EIO;
  }
  const int D = b->D, L = b->o.ctx_left, R = b->o.ctx_right;
  int k = 0;
  while (k < n && !b->ended) {
    if (!b->have_cur || b->cur_pos >= b->cur->n) {
      int rc = advance_chunk(b, err);
      if (rc == 1) {
        b->ended = 1;
        break;
      }
      if (rc) {
        *got = k;
        return rc;
      }
    }
    const chunk_buf *c = b->cur;
    int64_t m = c->n - b->cur_pos;
    if (m > n - k) m = n - k;
    for (int64_t i = 0; i < m; i++) {
      uint32_t t = c->order[b->cur_pos + i];
      ngt_splice_frame(c->feats, D, c->us[t], c->ue[t], t, L, R,
                       X.data + (size_t)(k + i) * (size_t)X.stride);
      if (labels) labels[k + i] = c->labels[t];
    }
    b->cur_pos += m;
    b->position += m;
    k += (int)m;
  }
  *got = k;
  return 0;
}

int ngt_batcher_seek(ngt_batcher *b, int64_t frames, ngt_err *err) {
  NGT_ASSERT(b != NULL);
  if (b->arch)
    return ngt_err_set(err, NGT_EINVAL,
                       "cannot seek an archive stream (announce reads with "
                       "ngt_batcher_archive_begin)");
  if (frames < 0 || (!b->o.loop && frames > b->total))
    return ngt_err_set(err, NGT_EINVAL,
                       "cannot seek to frame %" PRId64 ": the stream has %s%" PRId64 " frames",
                       frames, b->o.loop ? "positions >= 0, epochs of " : "", b->total);
  thread_stop(b);
  b->bufs[0].state = b->bufs[1].state = BUF_EMPTY;
  b->have_cur = 0;
  b->cur_pos = 0;
  b->failed = 0;
  b->ended = 0;
  b->position = frames;
  int64_t e = frames / b->total, r = frames % b->total;
  cursor c = {e, 0, 0};
  b->prod_end = 0;
  b->pending_skip = 0;
  if (!b->o.loop && e >= 1) {
    b->prod_end = 1;
  } else {
    for (c.sp = 0; c.sp < b->n_shards; c.sp++) {
      const shard_meta *m = &b->sh[shard_at(b, e, c.sp)];
      if (r >= m->T) {
        r -= m->T;
        continue;
      }
      int64_t s = shard_at(b, e, c.sp);
      for (c.cp = 0; c.cp < m->n_chunks; c.cp++) {
        int64_t ci = chunk_at(b, e, s, c.cp);
        int64_t len = m->utt_offsets[m->chunk_utt[ci + 1]] - m->utt_offsets[m->chunk_utt[ci]];
        if (r < len) break;
        r -= len;
      }
      NGT_ASSERT(c.cp < m->n_chunks);
      break;
    }
    NGT_ASSERT(c.sp < b->n_shards);
    b->prod = c;
    b->pending_skip = r;
  }
  return thread_start(b, err);
}

int64_t ngt_batcher_archive_frames(ngt_batcher *b, int64_t g) {
  NGT_ASSERT(b->arch && g >= 0);
  ngt_archive_piece *p = NULL;
  int np = 0;
  pthread_mutex_lock(&b->mu);
  int64_t n = ngt_archives_pieces(b->arch, g, &p, &np);
  pthread_mutex_unlock(&b->mu);
  free(p);
  return n;
}

int ngt_batcher_archive_begin(ngt_batcher *b, int64_t g, int64_t g_next, ngt_err *err) {
  NGT_ASSERT(b->arch && g >= 0);
  if (b->expect_g == g && !b->failed) {
    /* the loader already has g (queued or loaded): announce the one after it */
    pthread_mutex_lock(&b->mu);
    if (g_next >= 0) {
      NGT_ASSERT(b->rq_n < 4);
      b->rq[b->rq_n++] = g_next;
    }
    pthread_cond_signal(&b->cv_empty);
    pthread_mutex_unlock(&b->mu);
    b->expect_g = g_next;
    return 0;
  }
  /* anything else (the first read, a retry, a resume): start over at g */
  thread_stop(b);
  b->bufs[0].state = b->bufs[1].state = BUF_EMPTY;
  b->have_cur = 0;
  b->cur_pos = 0;
  b->pending_skip = 0;
  b->failed = 0;
  b->ended = 0;
  free(b->ld_p);
  b->ld_p = NULL;
  b->ld_g = -1;
  b->rq_n = 0;
  b->rq[b->rq_n++] = g;
  if (g_next >= 0) b->rq[b->rq_n++] = g_next;
  b->expect_g = g_next;
  return thread_start(b, err);
}

/* ---------------------------------------------------------------- frameset */

void ngt_frameset_free(ngt_frameset *fs) {
  if (!fs) return;
  free(fs->feats);
  free(fs->labels);
  free(fs->utt_start);
  free(fs->utt_end);
  free(fs->frame);
  free(fs);
}

/* Subset selection (max_frames > 0 and fewer than the total): utterances are taken in a
 * seeded random order until they hold min(total, 2 * max_frames) frames (so memory stays
 * about twice the subset, whatever the corpus size), then max_frames of their frames are
 * chosen uniformly (selection sampling, Knuth's Algorithm S, so they come out in file
 * order). Both draws use one ngt_rng from (seed, NGT_RNG_STREAM_SUBSET). */
int ngt_frameset_load(const char *const *paths, int n_paths, int64_t max_frames, uint64_t seed,
                      ngt_frameset **out, ngt_err *err) {
  *out = NULL;
  if (n_paths <= 0) return ngt_err_set(err, NGT_EINVAL, "no shards given");
  int rc = 0;
  ngt_shard **sh = calloc((size_t)n_paths, sizeof *sh);
  int64_t *ubase = calloc((size_t)n_paths + 1, sizeof *ubase); /* (n_paths+1) */
  uint8_t *keep = NULL;                                        /* (Utot) */
  uint32_t *perm = NULL;
  ngt_frameset *fs = calloc(1, sizeof *fs);
  if (!sh || !ubase || !fs) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
    goto out;
  }
  int64_t N = 0;
  for (int i = 0; i < n_paths; i++) {
    rc = ngt_shard_open(paths[i], &sh[i], err);
    if (rc) goto out;
    if (sh[i]->feat_dim != sh[0]->feat_dim || sh[i]->num_classes != sh[0]->num_classes) {
      int fd = sh[i]->feat_dim != sh[0]->feat_dim;
      const char *what = fd ? "feat_dim" : "num_classes";
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "shards disagree on %s: '%s' has %s = %d but '%s' has "
                       "%s = %d (all shards must come from the same features and alignments)",
                       what, paths[0], what, fd ? sh[0]->feat_dim : sh[0]->num_classes, paths[i],
                       what, fd ? sh[i]->feat_dim : sh[i]->num_classes);
      goto out;
    }
    N += sh[i]->num_frames;
    ubase[i + 1] = ubase[i] + sh[i]->num_utts;
  }
  const int D = sh[0]->feat_dim;
  const int64_t Utot = ubase[n_paths];
  if (Utot >= (int64_t)UINT32_MAX) {
    rc = ngt_err_set(err, NGT_EINVAL, "too many utterances (%" PRId64 ")", Utot);
    goto out;
  }
  keep = calloc((size_t)Utot + 1, 1);
  if (!keep) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
    goto out;
  }
  int subset = max_frames > 0 && max_frames < N;
  int64_t n_keep = 0; /* frames in kept utterances */
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_SUBSET);
  if (!subset) {
    memset(keep, 1, (size_t)Utot);
    n_keep = N;
  } else {
    perm = malloc((size_t)(Utot > 0 ? Utot : 1) * sizeof *perm);
    if (!perm) {
      rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
      goto out;
    }
    identity_u32(perm, Utot);
    ngt_rng_shuffle_u32(&r, perm, (size_t)Utot);
    const int64_t target = max_frames > N / 2 ? N : 2 * max_frames;
    for (int64_t k = 0; k < Utot && n_keep < target; k++) {
      int64_t g = perm[k];
      int lo = 0, hi = n_paths - 1; /* the shard i with ubase[i] <= g < ubase[i+1] */
      while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ubase[mid] <= g) lo = mid;
        else
          hi = mid - 1;
      }
      int i = lo;
      int64_t u = g - ubase[i];
      keep[g] = 1;
      n_keep += sh[i]->utt_offsets[u + 1] - sh[i]->utt_offsets[u];
    }
  }
  fs->n = n_keep;
  fs->feat_dim = D;
  fs->num_classes = sh[0]->num_classes;
  fs->n_sel = subset ? max_frames : n_keep;
  const size_t nk = (size_t)(n_keep > 0 ? n_keep : 1);
  fs->feats = malloc(nk * (size_t)D * sizeof *fs->feats);
  fs->labels = malloc(nk * sizeof *fs->labels);
  fs->utt_start = malloc(nk * sizeof *fs->utt_start);
  fs->utt_end = malloc(nk * sizeof *fs->utt_end);
  fs->frame = malloc((size_t)(fs->n_sel > 0 ? fs->n_sel : 1) * sizeof *fs->frame);
  if (!fs->feats || !fs->labels || !fs->utt_start || !fs->utt_end || !fs->frame) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory loading %" PRId64 " frames x %d dims", n_keep,
                     D);
    goto out;
  }
  /* Read the kept utterances, merging runs of consecutive ones into one read. */
  int64_t pos = 0;
  for (int i = 0; i < n_paths; i++) {
    const int64_t *o = sh[i]->utt_offsets, U = sh[i]->num_utts;
    int64_t u = 0;
    while (u < U) {
      if (!keep[ubase[i] + u]) {
        u++;
        continue;
      }
      int64_t ua = u;
      while (u < U && keep[ubase[i] + u]) u++;
      int64_t f0 = o[ua], len = o[u] - f0;
      rc = ngt_shard_read(sh[i], f0, len, fs->feats + (size_t)pos * (size_t)D, fs->labels + pos,
                          err);
      if (rc) goto out;
      for (int64_t v = ua; v < u; v++)
        for (int64_t t = o[v]; t < o[v + 1]; t++) {
          fs->utt_start[pos + t - f0] = pos + o[v] - f0;
          fs->utt_end[pos + t - f0] = pos + o[v + 1] - f0;
        }
      pos += len;
    }
  }
  NGT_ASSERT(pos == n_keep);
  if (!subset) {
    for (int64_t j = 0; j < n_keep; j++) fs->frame[j] = j;
  } else {
    int64_t need = max_frames, k = 0;
    for (int64_t j = 0; j < n_keep && need > 0; j++)
      if (ngt_rng_uniform(&r) * (double)(n_keep - j) < (double)need) {
        fs->frame[k++] = j;
        need--;
      }
    NGT_ASSERT(k == max_frames);
  }
  *out = fs;
  fs = NULL;
out:
  if (sh)
    for (int i = 0; i < n_paths; i++) ngt_shard_close(sh[i]);
  free(sh);
  free(ubase);
  free(keep);
  free(perm);
  ngt_frameset_free(fs);
  return rc;
}

void ngt_frameset_splice(const ngt_frameset *fs, int64_t i0, int n, int L, int R, ngt_mat X,
                         int32_t *labels) {
  NGT_ASSERT(fs != NULL && n >= 0 && i0 >= 0 && i0 + n <= fs->n_sel);
  NGT_ASSERT(L >= 0 && R >= 0 && X.cols == fs->feat_dim * (L + R + 1) && X.rows >= n);
  for (int j = 0; j < n; j++) {
    int64_t f = fs->frame[i0 + j];
    ngt_splice_frame(fs->feats, fs->feat_dim, fs->utt_start[f], fs->utt_end[f], f, L, R,
                     X.data + (size_t)j * (size_t)X.stride);
    if (labels) labels[j] = fs->labels[f];
  }
}

/* batcher.h — frames out of shards: splicing, seeded shuffling, minibatches, prefetch.
 *
 * Splicing: the network input for frame t of an utterance [s, e) is the concatenation
 * of frames t-L .. t+R (L = ctx_left, R = ctx_right); indices outside [s, e) are
 * clamped to the edge frame (Kaldi). Splicing never crosses an utterance boundary.
 *
 * ngt_batcher streams the frames of a list of shards, epoch after epoch (loop = 1) or
 * once (loop = 0), in an order that is a pure function of (seed, epoch):
 *   epoch e: shard order = permutation(seed, e);
 *            each shard is cut into chunks of consecutive whole utterances holding at
 *            most shuffle_buffer frames (an utterance longer than that is a chunk on
 *            its own); chunk order = permutation(seed, e, shard);
 *            frames within a chunk = permutation(seed, e, shard, chunk).
 * So memory is bounded by the chunk size (x2 with prefetch), not by the corpus, and
 * ngt_batcher_seek() can position the stream anywhere (exact resume) from metadata.
 * With shuffle = 0 the order is the file order. A background thread reads and
 * shuffles the next chunk while the caller consumes the current one.
 *
 *   ngt_batcher_opts o = ngt_batcher_opts_default(); o.ctx_left = o.ctx_right = 5;
 *   ngt_batcher *b;
 *   if (ngt_batcher_new((const char *const *)paths, n, &o, &b, &err)) ...
 *   ngt_mat X = ngt_mat_alloc(512, ngt_batcher_input_dim(b));  int32_t y[512]; int got;
 *   while (ngt_batcher_next(b, 512, X, y, &got, &err) == 0 && got > 0) { ... }
 *   ngt_batcher_free(b);
 *
 * ngt_frameset holds frames in memory (validation set, subsets for combination, priors
 * and LDA statistics) and splices on demand.
 */
#ifndef NGTRAIN_BATCHER_H
#define NGTRAIN_BATCHER_H

#include <stddef.h> /* size_t, for log.h */
#include <stdint.h>

#include "ngtrain/log.h"
#include "ngtrain/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Splice one frame t of the utterance [s, e) of feats (rows of D floats) into out
 * (D * (L+R+1) floats). */
void ngt_splice_frame(const float *feats, int D, int64_t s, int64_t e, int64_t t, int L, int R,
                      float *out);

typedef struct ngt_batcher_opts {
  int ctx_left, ctx_right; /* L, R >= 0 */
  uint64_t seed;
  int64_t shuffle_buffer; /* max frames per chunk in memory; default 500000 */
  int shuffle;            /* 1 (default) = seeded order above; 0 = file order */
  int loop;               /* 1 (default) = endless epochs; 0 = one pass, then got = 0 */
  int prefetch;           /* 1 (default) = background reader thread */
  int64_t num_archives;   /* > 0: archive mode (archives.h): the corpus of all the shards
                             * cut into this many archives, read as announced by
                             * ngt_batcher_archive_begin; 0 (default) = the order above */
} ngt_batcher_opts;

ngt_batcher_opts ngt_batcher_opts_default(void);

typedef struct ngt_batcher ngt_batcher;

/* Opens every shard (validating it) and checks that all agree on feat_dim and
 * num_classes (error names both files and values). */
int ngt_batcher_new(const char *const *paths, int n_paths, const ngt_batcher_opts *o,
                    ngt_batcher **out, ngt_err *err);
void ngt_batcher_free(ngt_batcher *b);                  /* NULL-tolerant; joins the thread */
int64_t ngt_batcher_total_frames(const ngt_batcher *b); /* frames in one epoch */
int ngt_batcher_feat_dim(const ngt_batcher *b);
int ngt_batcher_num_classes(const ngt_batcher *b);
int ngt_batcher_input_dim(const ngt_batcher *b); /* D * (L+R+1) */

/* Next n frames, spliced, into the first rows of X (X.cols == input_dim, X.rows >= n)
 * and labels. *got = n, except at the end of the single pass (loop = 0). Crosses
 * chunk, shard and epoch boundaries transparently. Errors (a shard that became
 * unreadable, bad labels) name the file. */
int ngt_batcher_next(ngt_batcher *b, int n, ngt_mat X, int32_t *labels, int *got, ngt_err *err);
/* Frames delivered so far (since position 0 of epoch 0). */
int64_t ngt_batcher_position(const ngt_batcher *b);
/* Position the stream as if `frames` frames had been delivered. */
int ngt_batcher_seek(ngt_batcher *b, int64_t frames, ngt_err *err);
/* Epoch of the next frame to be delivered (position / total_frames). */
int64_t ngt_batcher_epoch(const ngt_batcher *b);

/* Archive mode. Frames of read g (epoch g / A, archive g mod A; archives.h). */
int64_t ngt_batcher_archive_frames(ngt_batcher *b, int64_t g);
/* The next ngt_batcher_archive_frames(b, g) frames delivered are read g, whole; g_next
 * (or -1) is the read after it, which the prefetch thread starts on as soon as g is
 * loaded. When g is the g_next announced before and the previous read was consumed
 * whole, the prefetched data is kept; otherwise (a retry, a resume) the stream restarts
 * at g. Seeking is not available in archive mode. */
int ngt_batcher_archive_begin(ngt_batcher *b, int64_t g, int64_t g_next, ngt_err *err);

/* In-memory frames with utterance bounds. */
typedef struct ngt_frameset {
  int64_t n;    /* frames */
  int feat_dim; /* D */
  int num_classes;
  float *feats;       /* owned, n x D: the frames needed for splicing (see below) */
  int32_t *labels;    /* owned, n */
  int64_t *utt_start; /* owned, n: first frame (index into feats) of the frame's utt */
  int64_t *utt_end;   /* owned, n: one past the last frame of the frame's utt */
  int64_t *frame;     /* owned, n_sel: index into feats of each selected frame */
  int64_t n_sel;      /* frames selected (what evaluation iterates over) */
} ngt_frameset;

/* Load shards into memory. If max_frames > 0 and the shards hold more frames, select
 * a seeded random subset of max_frames frames (stream NGT_RNG_STREAM_SUBSET; whole
 * utterances are kept in feats for splicing but only the selected frames are in
 * `frame`). max_frames <= 0 selects all. Frames are in file order.
 * (Subset: utterances are drawn in a seeded random order until they hold about
 * 2 x max_frames frames, then max_frames of their frames are chosen uniformly, so
 * memory stays ~2 x max_frames frames however large the corpus; see batcher.c.) */
int ngt_frameset_load(const char *const *paths, int n_paths, int64_t max_frames, uint64_t seed,
                      ngt_frameset **out, ngt_err *err);
void ngt_frameset_free(ngt_frameset *fs);
/* Splice selected frames [i0, i0+n) into the first n rows of X (input_dim cols) and
 * copy their labels (labels may be NULL). */
void ngt_frameset_splice(const ngt_frameset *fs, int64_t i0, int n, int L, int R, ngt_mat X,
                         int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif

/* archives.h — the corpus cut into Kaldi-style archives, and Kaldi's round-robin
 * assignment of archives to jobs (docs/algorithm.md §4.1-4.2; docs/design.md §3.6).
 *
 * Kaldi dumps A egs archives and gives job j of iteration i archive (p_i + j) mod A,
 * p_i being the number of archive reads handed out before iteration i, so every archive
 * is read num-epochs times whatever the job ramp. ngtrain streams frames instead, so an
 * archive is a list of pieces (shard, utterance range) — metadata only:
 *   units:   each shard is cut into runs of whole utterances of at most unit_frames
 *            frames (a longer utterance is a unit alone);
 *   epoch e: the corpus order is a seeded permutation of all units (stream
 *            NGT_RNG_STREAM_DATA mixed with e); an utterance starting at frame s of that
 *            order (0 <= s < T) belongs to archive floor(s·A / T);
 *   read g:  epoch g / A, archive g mod A; its pieces in corpus order.
 * So the cut is a pure function of (seed, epoch), every epoch's A archives partition the
 * corpus, and g = p_i + j reads every frame once per A consecutive reads.
 *
 *   ngt_archives *a;
 *   if (ngt_archives_new(n, utt_offsets, num_utts, A, unit, seed, &a, &err)) ...
 *   ngt_archive_piece *p; int np;
 *   ngt_archives_pieces(a, p_i + j, &p, &np);   // caller frees p
 *   ngt_archives_free(a);
 */
#ifndef NGTRAIN_ARCHIVES_H
#define NGTRAIN_ARCHIVES_H

#include <stddef.h>
#include <stdint.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Utterances [u0, u1) = frames [f0, f1) of shard `shard` (index into the path list). */
typedef struct ngt_archive_piece {
  int shard;
  int64_t u0, u1;
  int64_t f0, f1;
} ngt_archive_piece;

typedef struct ngt_archives ngt_archives;

/* The frames per job per iteration for --samples-per-iter=requested: requested when > 0;
 * 0 = automatic, T / A frames with A = max(round(T / 400000), 4 jobs_final) archives, so each
 * epoch has at least 4 iterations at the final job count and every job of an iteration reads
 * a different archive (docs/algorithm.md §4.1). */
int64_t ngt_samples_per_iter(int64_t requested, int64_t total_frames, int jobs_final);
/* Kaldi's archive count for a corpus: max(1, round(total_frames / samples_per_iter)). */
int64_t ngt_archives_count_for(int64_t total_frames, int64_t samples_per_iter);
/* The unit size used by training: min(shuffle_buffer, max(1, T / (8 A))), so an archive
 * mixes about eight units from across the corpus. */
int64_t ngt_archives_unit_for(int64_t total_frames, int64_t num_archives, int64_t shuffle_buffer);

/* utt_offsets[s] has num_utts[s] + 1 entries (shard.h); copied. seed: the data seed. */
int ngt_archives_new(int n_shards, const int64_t *const *utt_offsets, const int64_t *num_utts,
                     int64_t num_archives, int64_t unit_frames, uint64_t seed, ngt_archives **out,
                     ngt_err *err);
void ngt_archives_free(ngt_archives *a);                  /* NULL-tolerant */
int64_t ngt_archives_num(const ngt_archives *a);          /* A */
int64_t ngt_archives_total_frames(const ngt_archives *a); /* T */
int64_t ngt_archives_max_unit(const ngt_archives *a);     /* frames in the largest unit */
int64_t ngt_archives_shard_frames(const ngt_archives *a, int s);
/* Pieces of read g (g >= 0) in delivery order into *pieces (allocated; caller frees) and
 * *n; returns the frames of the read. Not thread-safe (caches the epoch's order). */
int64_t ngt_archives_pieces(ngt_archives *a, int64_t g, ngt_archive_piece **pieces, int *n);

/* Kaldi's assignment: the read of job j in iteration i is p_i + j (archive mod A, epoch
 * div A). */
static inline int64_t ngt_archives_read_of(int64_t p_i, int job) { return p_i + job; }

#ifdef __cplusplus
}
#endif
#endif

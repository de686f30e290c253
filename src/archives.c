/* archives.c — the corpus cut into archives; see include/ngtrain/archives.h.
 *
 * Dimension letters: T frames of the corpus, A archives, N units. */
#include "ngtrain/archives.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/rng.h"

typedef struct unit {
  int shard;
  int64_t u0, u1; /* utterances */
  int64_t frames;
} unit;

struct ngt_archives {
  int n_shards;
  int64_t **off; /* owned: utt_offsets of each shard (U+1) */
  int64_t *U;    /* owned: utterances per shard */
  int64_t A, T, max_unit;
  uint64_t seed;
  unit *units; /* (N) in file order */
  int64_t N;
  /* cache of one epoch's order */
  int64_t epoch;   /* -1 = none */
  uint32_t *order; /* (N) unit at each position */
  int64_t *cum;    /* (N+1) first corpus frame of each position */
};

int64_t ngt_samples_per_iter(int64_t requested, int64_t total_frames, int jobs_final) {
  if (requested > 0) return requested;
  int64_t A = (int64_t)floor((double)total_frames / 400000.0 + 0.5);
  int64_t min_a = 4 * (int64_t)(jobs_final > 0 ? jobs_final : 1);
  if (A < min_a) A = min_a;
  int64_t spi = total_frames / A; /* floor: round(T / spi) >= A */
  return spi < 1 ? 1 : spi;
}

int64_t ngt_archives_count_for(int64_t total_frames, int64_t samples_per_iter) {
  int64_t A = (int64_t)floor((double)total_frames / (double)samples_per_iter + 0.5);
  return A < 1 ? 1 : A;
}

int64_t ngt_archives_unit_for(int64_t total_frames, int64_t num_archives, int64_t shuffle_buffer) {
  int64_t u = total_frames / (8 * num_archives);
  if (u < 1) u = 1;
  return u < shuffle_buffer ? u : shuffle_buffer;
}

void ngt_archives_free(ngt_archives *a) {
  if (!a) return;
  for (int s = 0; s < a->n_shards; s++) free(a->off ? a->off[s] : NULL);
  free(a->off);
  free(a->U);
  free(a->units);
  free(a->order);
  free(a->cum);
  free(a);
}

int ngt_archives_new(int n_shards, const int64_t *const *utt_offsets, const int64_t *num_utts,
                     int64_t num_archives, int64_t unit_frames, uint64_t seed, ngt_archives **out,
                     ngt_err *err) {
  *out = NULL;
  if (n_shards < 1 || num_archives < 1 || unit_frames < 1)
    return ngt_err_set(err, NGT_EINVAL,
                       "archives: %d shard(s), %lld archive(s), units of %lld "
                       "frames: all must be >= 1",
                       n_shards, (long long)num_archives, (long long)unit_frames);
  ngt_archives *a = ngt_xcalloc(1, sizeof *a);
  a->n_shards = n_shards;
  a->A = num_archives;
  a->seed = seed;
  a->epoch = -1;
  a->off = ngt_xcalloc((size_t)n_shards, sizeof *a->off);
  a->U = ngt_xcalloc((size_t)n_shards, sizeof *a->U);
  int64_t cap = 0;
  for (int s = 0; s < n_shards; s++) {
    a->U[s] = num_utts[s];
    a->off[s] = ngt_xmalloc(sizeof(int64_t) * (size_t)(num_utts[s] + 1));
    memcpy(a->off[s], utt_offsets[s], sizeof(int64_t) * (size_t)(num_utts[s] + 1));
    a->T += a->off[s][num_utts[s]];
    cap += num_utts[s];
  }
  if (a->T <= 0) {
    ngt_archives_free(a);
    return ngt_err_set(err, NGT_EINVAL, "archives: the %d shard(s) hold no frames", n_shards);
  }
  /* units: greedy runs of whole utterances of at most unit_frames frames */
  a->units = ngt_xmalloc(sizeof(unit) * (size_t)(cap > 0 ? cap : 1));
  for (int s = 0; s < n_shards; s++) {
    const int64_t *o = a->off[s];
    for (int64_t u = 0; u < a->U[s];) {
      int64_t u0 = u++;
      while (u < a->U[s] && o[u + 1] - o[u0] <= unit_frames) u++;
      unit *x = &a->units[a->N++];
      x->shard = s;
      x->u0 = u0;
      x->u1 = u;
      x->frames = o[u] - o[u0];
      if (x->frames > a->max_unit) a->max_unit = x->frames;
    }
  }
  a->order = ngt_xmalloc(sizeof(uint32_t) * (size_t)a->N);
  a->cum = ngt_xmalloc(sizeof(int64_t) * (size_t)(a->N + 1));
  *out = a;
  return 0;
}

int64_t ngt_archives_num(const ngt_archives *a) { return a->A; }
int64_t ngt_archives_total_frames(const ngt_archives *a) { return a->T; }
int64_t ngt_archives_max_unit(const ngt_archives *a) { return a->max_unit; }
int64_t ngt_archives_shard_frames(const ngt_archives *a, int s) { return a->off[s][a->U[s]]; }

static void set_epoch(ngt_archives *a, int64_t e) {
  if (a->epoch == e) return;
  for (int64_t k = 0; k < a->N; k++) a->order[k] = (uint32_t)k;
  ngt_rng r = ngt_rng_make(a->seed,
                           ngt_rng_mix(ngt_rng_mix(NGT_RNG_STREAM_DATA, 0x417C), (uint64_t)e));
  ngt_rng_shuffle_u32(&r, a->order, (size_t)a->N);
  a->cum[0] = 0;
  for (int64_t k = 0; k < a->N; k++) a->cum[k + 1] = a->cum[k] + a->units[a->order[k]].frames;
  a->epoch = e;
}

/* First corpus frame of archive k: ceil(k T / A), exact in integers. */
static int64_t bound(const ngt_archives *a, int64_t k) {
  return (int64_t)(((__int128)k * a->T + a->A - 1) / a->A);
}

int64_t ngt_archives_pieces(ngt_archives *a, int64_t g, ngt_archive_piece **pieces, int *n) {
  NGT_ASSERT(g >= 0);
  const int64_t e = g / a->A, k = g % a->A;
  set_epoch(a, e);
  const int64_t b0 = bound(a, k), b1 = bound(a, k + 1);
  /* position of the unit holding corpus frame b0: the last p with cum[p] <= b0 */
  int64_t lo = 0, hi = a->N - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (a->cum[mid] <= b0) lo = mid;
    else
      hi = mid - 1;
  }
  int cap = 8, m = 0;
  ngt_archive_piece *P = ngt_xmalloc(sizeof *P * (size_t)cap);
  int64_t frames = 0;
  for (int64_t p = lo; p < a->N && a->cum[p] < b1; p++) {
    const unit *x = &a->units[a->order[p]];
    const int64_t *o = a->off[x->shard];
    /* utterances of x whose corpus start c = cum[p] + o[u] - o[u0] lies in [b0, b1) */
    int64_t u = x->u0;
    while (u < x->u1 && a->cum[p] + o[u] - o[x->u0] < b0) u++;
    int64_t v = u;
    while (v < x->u1 && a->cum[p] + o[v] - o[x->u0] < b1) v++;
    if (v == u) continue;
    if (m == cap) P = realloc(P, sizeof *P * (size_t)(cap *= 2));
    NGT_ASSERT(P);
    P[m++] = (ngt_archive_piece){x->shard, u, v, o[u], o[v]};
    frames += o[v] - o[u];
  }
  *pieces = P;
  *n = m;
  return frames;
}

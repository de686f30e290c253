/* test_batcher.c — Check suite for src/batcher.c: splicing against a naive reference,
 * exactly-once delivery, seeded order, seek == read, prefetch on == off, mismatched
 * shards, a shard truncated mid-stream, and framesets.
 *
 * The test shards encode where each frame came from: feats[t] = (shard, t, t/1000 + d...),
 * so every delivered row can be checked against its expected spliced context. */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ngtrain/archives.h"
#include "ngtrain/batcher.h"
#include "ngtrain/fileio.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

#define D 4
#define C 6
#define MAXSH 8

static char g_dir[256];

typedef struct meta {
  int n; /* shards */
  char path[MAXSH][512];
  int64_t T[MAXSH], U[MAXSH];
  int64_t *offs[MAXSH]; /* (U+1) */
  int64_t total;
} meta;

static float enc(int s, int64_t t, int d) {
  if (d == 0) return (float)s;
  if (d == 1) return (float)t;
  return (float)t * 0.001f + (float)d;
}
static int32_t lab(int s, int64_t t) { return (int32_t)((t * 3 + s) % C); }

/* Writes shard s of m with U utterances of 1..max_len frames. */
static void make_shard(meta *m, int s, const char *tag, int64_t U, int max_len, uint64_t seed,
                       int dim) {
  ngt_rng r = ngt_rng_make(seed + (uint64_t)s, NGT_RNG_STREAM_TEST);
  int64_t *o = malloc((size_t)(U + 1) * sizeof *o);
  o[0] = 0;
  for (int64_t u = 0; u < U; u++) o[u + 1] = o[u] + 1 + ngt_rng_below(&r, (uint32_t)max_len);
  int64_t T = o[U];
  float *f = malloc((size_t)(T > 0 ? T : 1) * (size_t)dim * sizeof *f);
  int32_t *l = malloc((size_t)(T > 0 ? T : 1) * sizeof *l);
  for (int64_t t = 0; t < T; t++) {
    for (int d = 0; d < dim; d++) f[t * dim + d] = enc(s, t, d);
    l[t] = lab(s, t);
  }
  snprintf(m->path[s], sizeof m->path[s], "%s/%s-%02d.h5", g_dir, tag, s);
  ngt_shard_write_opts wo = {0, 16};
  ngt_err err = {0};
  ck_assert_msg(ngt_shard_write(m->path[s], f, T, dim, l, o, U, NULL, C, &wo, &err) == 0, "%s",
                err.msg);
  m->T[s] = T;
  m->U[s] = U;
  m->offs[s] = o;
  m->total += T;
  if (s + 1 > m->n) m->n = s + 1;
  free(f);
  free(l);
}

static void meta_free(meta *m) {
  for (int s = 0; s < m->n; s++) free(m->offs[s]);
}

/* A standard corpus: 3 shards of different sizes (~700 frames). */
static void make_corpus(meta *m, const char *tag) {
  memset(m, 0, sizeof *m);
  make_shard(m, 0, tag, 12, 30, 11, D);
  make_shard(m, 1, tag, 5, 60, 11, D);
  make_shard(m, 2, tag, 20, 25, 11, D);
}

static const char *paths_of(const meta *m, int s) { return m->path[s]; }

/* Checks row (L+R+1 frames of D) against the naive splice of its centre frame; returns
 * the centre's (shard, frame) as s * 1e6 + t. */
static int64_t check_row(const meta *m, const float *row, int L, int R, int32_t label) {
  const float *c = row + (size_t)L * D;
  int s = (int)c[0];
  int64_t t = (int64_t)c[1];
  ck_assert(s >= 0 && s < m->n && t >= 0 && t < m->T[s]);
  int64_t u = 0;
  while (m->offs[s][u + 1] <= t) u++;
  int64_t a = m->offs[s][u], e = m->offs[s][u + 1];
  for (int j = -L; j <= R; j++) {
    int64_t v = t + j < a ? a : (t + j >= e ? e - 1 : t + j);
    for (int d = 0; d < D; d++)
      ck_assert_msg(row[(j + L) * D + d] == enc(s, v, d), "shard %d frame %ld ctx %d dim %d", s,
                    (long)t, j, d);
  }
  ck_assert_int_eq(label, lab(s, t));
  return (int64_t)s * 1000000 + t;
}

static ngt_batcher *new_batcher(const meta *m, ngt_batcher_opts o) {
  const char *p[MAXSH];
  for (int s = 0; s < m->n; s++) p[s] = paths_of(m, s);
  ngt_batcher *b = NULL;
  ngt_err err = {0};
  ck_assert_msg(ngt_batcher_new(p, m->n, &o, &b, &err) == 0, "%s", err.msg);
  return b;
}

/* Reads n frames in batches of bs; returns the centre ids (s*1e6+t), (n). */
static int64_t *read_ids(ngt_batcher *b, const meta *m, int64_t n, int bs, int L, int R) {
  int64_t *ids = malloc((size_t)n * sizeof *ids);
  ngt_mat X = ngt_mat_alloc(bs, ngt_batcher_input_dim(b));
  int32_t *y = malloc((size_t)bs * sizeof *y);
  int64_t k = 0;
  ngt_err err = {0};
  while (k < n) {
    int want = n - k < bs ? (int)(n - k) : bs, got = -1;
    ck_assert_msg(ngt_batcher_next(b, want, X, y, &got, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(got, want);
    for (int i = 0; i < got; i++) ids[k + i] = check_row(m, &NGT_AT(X, i, 0), L, R, y[i]);
    k += got;
  }
  ngt_mat_free(&X);
  free(y);
  return ids;
}

/* ---------------------------------------------------------------- splicing */

START_TEST(test_splice_reference) {
  ngt_rng r = ngt_rng_make(5, NGT_RNG_STREAM_TEST);
  enum { N = 64, DD = 3 };
  float feats[N * DD], out[DD * 20], ref[DD * 20];
  for (int i = 0; i < N * DD; i++) feats[i] = (float)ngt_rng_normal(&r);
  for (int it = 0; it < 2000; it++) {
    int64_t s = ngt_rng_below(&r, N), e = s + 1 + ngt_rng_below(&r, (uint32_t)(N - s));
    int64_t t = s + ngt_rng_below(&r, (uint32_t)(e - s));
    int L = (int)ngt_rng_below(&r, 9), R = (int)ngt_rng_below(&r, 9);
    ngt_splice_frame(feats, DD, s, e, t, L, R, out);
    for (int j = -L; j <= R; j++) { /* naive: clamp each index to [s, e-1] */
      int64_t v = t + j;
      if (v < s) v = s;
      if (v >= e) v = e - 1;
      for (int d = 0; d < DD; d++) ref[(j + L) * DD + d] = feats[v * DD + d];
    }
    ck_assert(memcmp(out, ref, (size_t)(L + R + 1) * DD * sizeof *out) == 0);
  }
}
END_TEST

/* ---------------------------------------------------------------- stream */

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

START_TEST(test_one_pass_exactly_once) {
  meta m;
  make_corpus(&m, "once");
  /* an empty shard in the middle is skipped */
  ngt_shard_writer *w;
  ngt_err err = {0};
  snprintf(m.path[3], sizeof m.path[3], "%s/once-03.h5", g_dir);
  ck_assert_int_eq(ngt_shard_writer_open(m.path[3], D, C, NULL, &w, &err), 0);
  ck_assert_int_eq(ngt_shard_writer_commit(w, &err), 0);
  m.offs[3] = calloc(1, sizeof(int64_t));
  m.n = 4;
  for (int prefetch = 0; prefetch <= 1; prefetch++) {
    ngt_batcher_opts o = ngt_batcher_opts_default();
    o.ctx_left = 2;
    o.ctx_right = 3;
    o.loop = 0;
    o.shuffle_buffer = 50;
    o.prefetch = prefetch;
    o.seed = 7;
    ngt_batcher *b = new_batcher(&m, o);
    ck_assert_int_eq(ngt_batcher_total_frames(b), m.total);
    ck_assert_int_eq(ngt_batcher_feat_dim(b), D);
    ck_assert_int_eq(ngt_batcher_num_classes(b), C);
    ck_assert_int_eq(ngt_batcher_input_dim(b), D * 6);
    int64_t *ids = malloc((size_t)(m.total + 64) * sizeof *ids), k = 0;
    ngt_mat X = ngt_mat_alloc(17, D * 6);
    int32_t y[17];
    int got;
    for (;;) {
      ck_assert_int_eq(ngt_batcher_next(b, 17, X, y, &got, &err), 0);
      for (int i = 0; i < got; i++) ids[k++] = check_row(&m, &NGT_AT(X, i, 0), 2, 3, y[i]);
      if (got < 17) break;
    }
    ck_assert_int_eq(k, m.total);
    ck_assert_int_eq(ngt_batcher_position(b), m.total);
    ck_assert_int_eq(ngt_batcher_epoch(b), 1);
    ck_assert_int_eq(ngt_batcher_next(b, 17, X, y, &got, &err), 0);
    ck_assert_int_eq(got, 0);
    /* shuffled: not in file order */
    int in_order = 1;
    for (int64_t i = 1; i < k; i++) in_order &= ids[i] > ids[i - 1];
    ck_assert(!in_order);
    qsort(ids, (size_t)k, sizeof *ids, cmp_i64);
    int64_t i = 0;
    for (int s = 0; s < m.n; s++)
      for (int64_t t = 0; t < m.T[s]; t++) ck_assert_int_eq(ids[i++], (int64_t)s * 1000000 + t);
    free(ids);
    ngt_mat_free(&X);
    ngt_batcher_free(b);
  }
  meta_free(&m);
}
END_TEST

START_TEST(test_seed_determinism) {
  meta m;
  make_corpus(&m, "seed");
  ngt_batcher_opts o = ngt_batcher_opts_default();
  o.ctx_left = 1;
  o.ctx_right = 1;
  o.shuffle_buffer = 64;
  o.seed = 3;
  int64_t n = 3 * m.total + 11;
  ngt_batcher *b1 = new_batcher(&m, o), *b2 = new_batcher(&m, o);
  int64_t *a = read_ids(b1, &m, n, 29, 1, 1), *c = read_ids(b2, &m, n, 64, 1, 1);
  ck_assert(memcmp(a, c, (size_t)n * sizeof *a) == 0);
  ck_assert_int_eq(ngt_batcher_epoch(b1), 3);
  /* each epoch is a permutation, and epochs differ */
  ck_assert(memcmp(a, a + m.total, (size_t)m.total * sizeof *a) != 0);
  ngt_batcher_free(b1);
  ngt_batcher_free(b2);
  o.seed = 4;
  ngt_batcher *b3 = new_batcher(&m, o);
  int64_t *d = read_ids(b3, &m, n, 29, 1, 1);
  int64_t same = 0;
  for (int64_t i = 0; i < n; i++) same += a[i] == d[i];
  ck_assert_msg(same < n / 10, "seeds 3 and 4 agree on %ld of %ld positions", (long)same, (long)n);
  ngt_batcher_free(b3);
  /* shuffle = 0: file order, epoch after epoch */
  o.shuffle = 0;
  ngt_batcher *b4 = new_batcher(&m, o);
  int64_t *f = read_ids(b4, &m, 2 * m.total, 50, 1, 1), i = 0;
  for (int ep = 0; ep < 2; ep++)
    for (int s = 0; s < m.n; s++)
      for (int64_t t = 0; t < m.T[s]; t++) ck_assert_int_eq(f[i++], (int64_t)s * 1000000 + t);
  ngt_batcher_free(b4);
  free(a);
  free(c);
  free(d);
  free(f);
  meta_free(&m);
}
END_TEST

START_TEST(test_prefetch_equivalence) {
  meta m;
  make_corpus(&m, "pf");
  ngt_batcher_opts o = ngt_batcher_opts_default();
  o.ctx_left = 3;
  o.ctx_right = 0;
  o.shuffle_buffer = 40;
  o.seed = 99;
  int64_t n = 3 * m.total + 5;
  o.prefetch = 1;
  ngt_batcher *b1 = new_batcher(&m, o);
  o.prefetch = 0;
  ngt_batcher *b2 = new_batcher(&m, o);
  int64_t *a = read_ids(b1, &m, n, 7, 3, 0), *c = read_ids(b2, &m, n, 100, 3, 0);
  ck_assert(memcmp(a, c, (size_t)n * sizeof *a) == 0);
  ngt_batcher_free(b1);
  ngt_batcher_free(b2);
  free(a);
  free(c);
  meta_free(&m);
}
END_TEST

START_TEST(test_seek_equals_read) {
  meta m;
  make_corpus(&m, "seek");
  ngt_batcher_opts o = ngt_batcher_opts_default();
  o.ctx_left = 2;
  o.ctx_right = 2;
  o.shuffle_buffer = 37;
  o.seed = 12;
  const int64_t T = m.total, span = 45, n = 3 * T + 2 * span;
  ngt_batcher *ref = new_batcher(&m, o);
  int64_t *all = read_ids(ref, &m, n, 31, 2, 2);
  ngt_batcher_free(ref);
  for (int prefetch = 0; prefetch <= 1; prefetch++) {
    o.prefetch = prefetch;
    ngt_batcher *b = new_batcher(&m, o);
    ngt_err err = {0};
    /* every 5th position over three epochs crosses every chunk, shard and epoch edge
     * nearby; plus the exact epoch edges */
    for (int64_t k = 0; k <= 3 * T + span; k += (k % 2 ? 4 : 1)) {
      ck_assert_int_eq(ngt_batcher_seek(b, k, &err), 0);
      ck_assert_int_eq(ngt_batcher_position(b), k);
      ck_assert_int_eq(ngt_batcher_epoch(b), k / T);
      int64_t *got = read_ids(b, &m, span, 16, 2, 2);
      ck_assert_msg(memcmp(got, all + k, (size_t)span * sizeof *got) == 0, "seek(%ld) differs",
                    (long)k);
      free(got);
    }
    const int64_t edges[] = {T - 1, T, T + 1, 2 * T - 1, 2 * T, 2 * T + 1};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
      ck_assert_int_eq(ngt_batcher_seek(b, edges[i], &err), 0);
      int64_t *got = read_ids(b, &m, span, 45, 2, 2);
      ck_assert(memcmp(got, all + edges[i], (size_t)span * sizeof *got) == 0);
      free(got);
    }
    ck_assert_int_eq(ngt_batcher_seek(b, -1, &err), NGT_EINVAL);
    ngt_batcher_free(b);
  }
  /* single pass: seeking to the end gives got = 0; beyond it is an error */
  o.loop = 0;
  ngt_batcher *b = new_batcher(&m, o);
  ngt_err err = {0};
  ngt_mat X = ngt_mat_alloc(8, D * 5);
  int32_t y[8];
  int got = -1;
  ck_assert_int_eq(ngt_batcher_seek(b, T - 3, &err), 0);
  ck_assert_int_eq(ngt_batcher_next(b, 8, X, y, &got, &err), 0);
  ck_assert_int_eq(got, 3);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(check_row(&m, &NGT_AT(X, i, 0), 2, 2, y[i]), all[T - 3 + i]);
  ck_assert_int_eq(ngt_batcher_seek(b, T, &err), 0);
  ck_assert_int_eq(ngt_batcher_next(b, 8, X, y, &got, &err), 0);
  ck_assert_int_eq(got, 0);
  ck_assert_int_eq(ngt_batcher_seek(b, T + 1, &err), NGT_EINVAL);
  ngt_mat_free(&X);
  ngt_batcher_free(b);
  free(all);
  meta_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- errors */

/* Archive mode (archives.h): read g delivers exactly the frames of its pieces, whole,
 * spliced within their utterances; prefetch on == off; announcing the next read keeps
 * the prefetched data and a restart (retry) at g replays g exactly. */
START_TEST(test_archive_reads) {
  meta m;
  make_corpus(&m, "arch");
  const int64_t A = 4;
  for (int buffer = 40; buffer <= 4000; buffer *= 100) {
    ngt_batcher_opts o = ngt_batcher_opts_default();
    o.ctx_left = 2;
    o.ctx_right = 1;
    o.seed = 9;
    o.shuffle_buffer = buffer;
    o.num_archives = A;
    ngt_batcher *b1 = new_batcher(&m, o);
    o.prefetch = 0;
    ngt_batcher *b0 = new_batcher(&m, o);
    /* the plan, independently */
    const int64_t *offs[MAXSH];
    for (int s = 0; s < m.n; s++) offs[s] = m.offs[s];
    ngt_archives *ar = NULL;
    ngt_err err = {0};
    ck_assert_int_eq(ngt_archives_new(m.n, offs, m.U, A, ngt_archives_unit_for(m.total, A, buffer),
                                      9, &ar, &err),
                     0);
    int64_t seen = 0;
    for (int64_t g = 0; g < 2 * A; g++) {
      int64_t n = ngt_batcher_archive_frames(b1, g);
      ck_assert_int_eq(n, ngt_batcher_archive_frames(b0, g));
      ck_assert_int_eq(ngt_batcher_archive_begin(b1, g, g + 1, &err), 0);
      ck_assert_int_eq(ngt_batcher_archive_begin(b0, g, g + 1, &err), 0);
      int64_t *x1 = read_ids(b1, &m, n, 7, 2, 1), *x0 = read_ids(b0, &m, n, 7, 2, 1);
      ck_assert(memcmp(x1, x0, sizeof(int64_t) * (size_t)n) == 0);
      if (g == 2) { /* a retry of read 2 replays it */
        ck_assert_int_eq(ngt_batcher_archive_begin(b1, g, g + 1, &err), 0);
        int64_t *again = read_ids(b1, &m, n, 5, 2, 1);
        ck_assert(memcmp(x1, again, sizeof(int64_t) * (size_t)n) == 0);
        free(again);
      }
      /* the frames are exactly the pieces' frames */
      ngt_archive_piece *p = NULL;
      int np = 0;
      ck_assert_int_eq(ngt_archives_pieces(ar, g, &p, &np), n);
      int64_t *want = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1)), k = 0;
      for (int i = 0; i < np; i++) {
        ck_assert_int_eq(p[i].f0, m.offs[p[i].shard][p[i].u0]);
        ck_assert_int_eq(p[i].f1, m.offs[p[i].shard][p[i].u1]);
        for (int64_t t = p[i].f0; t < p[i].f1; t++) want[k++] = (int64_t)p[i].shard * 1000000 + t;
      }
      qsort(want, (size_t)n, sizeof(int64_t), cmp_i64);
      qsort(x1, (size_t)n, sizeof(int64_t), cmp_i64);
      ck_assert(memcmp(x1, want, sizeof(int64_t) * (size_t)n) == 0);
      seen += n;
      free(p);
      free(want);
      free(x1);
      free(x0);
    }
    ck_assert_int_eq(seen, 2 * m.total); /* two epochs: every frame twice */
    ngt_archives_free(ar);
    ngt_batcher_free(b1);
    ngt_batcher_free(b0);
  }
  meta_free(&m);
}
END_TEST

START_TEST(test_mismatched_shards) {
  meta m;
  memset(&m, 0, sizeof m);
  make_shard(&m, 0, "mm", 3, 10, 1, D);
  make_shard(&m, 1, "mm", 3, 10, 1, D + 1);
  const char *p[2] = {m.path[0], m.path[1]};
  ngt_batcher *b = NULL;
  ngt_err err = {0};
  ngt_batcher_opts o = ngt_batcher_opts_default();
  ck_assert_int_ne(ngt_batcher_new(p, 2, &o, &b, &err), 0);
  ck_assert_ptr_null(b);
  ck_assert_msg(strstr(err.msg, m.path[0]) && strstr(err.msg, m.path[1]) &&
                    strstr(err.msg, "feat_dim") && strstr(err.msg, "= 4") &&
                    strstr(err.msg, "= 5"),
                "%s", err.msg);
  ngt_frameset *fs = NULL;
  ck_assert_int_ne(ngt_frameset_load(p, 2, 0, 1, &fs, &err), 0);
  ck_assert(strstr(err.msg, m.path[0]) && strstr(err.msg, m.path[1]));
  /* a missing shard is named */
  char missing[600];
  snprintf(missing, sizeof missing, "%s/missing.h5", g_dir);
  p[1] = missing;
  ck_assert_int_ne(ngt_batcher_new(p, 2, &o, &b, &err), 0);
  ck_assert(strstr(err.msg, missing) != NULL);
  /* bad options */
  o.ctx_left = -1;
  ck_assert_int_eq(ngt_batcher_new(p, 1, &o, &b, &err), NGT_EINVAL);
  o.ctx_left = 0;
  o.shuffle_buffer = 0;
  ck_assert_int_eq(ngt_batcher_new(p, 1, &o, &b, &err), NGT_EINVAL);
  ck_assert_int_eq(ngt_batcher_new(p, 0, &o, &b, &err), NGT_EINVAL);
  ngt_batcher_free(NULL);
  meta_free(&m);
}
END_TEST

static void truncated_case(int prefetch) {
  meta m;
  make_corpus(&m, prefetch ? "trp" : "trs");
  ngt_batcher_opts o = ngt_batcher_opts_default();
  o.shuffle_buffer = 30;
  o.prefetch = prefetch;
  ngt_batcher *b = new_batcher(&m, o);
  ngt_mat X = ngt_mat_alloc(10, D);
  int32_t y[10];
  int got;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_batcher_next(b, 10, X, y, &got, &err), 0);
  struct stat st;
  ck_assert_int_eq(stat(m.path[1], &st), 0);
  ck_assert_int_eq(truncate(m.path[1], st.st_size / 2), 0);
  int rc = 0;
  for (int64_t k = 0; k < 3 * m.total && rc == 0; k += got) {
    rc = ngt_batcher_next(b, 10, X, y, &got, &err);
    if (rc == 0) ck_assert_int_eq(got, 10);
  }
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err.msg, m.path[1]) != NULL, "%s", err.msg);
  /* sticky: the next call fails the same way, without hanging */
  ngt_err err2 = {0};
  ck_assert_int_ne(ngt_batcher_next(b, 10, X, y, &got, &err2), 0);
  ck_assert_str_eq(err.msg, err2.msg);
  ngt_mat_free(&X);
  ngt_batcher_free(b);
  meta_free(&m);
}

START_TEST(test_truncated_midstream) {
  truncated_case(1);
  truncated_case(0);
}
END_TEST

START_TEST(test_bad_label_midstream) {
  /* a label out of range (patched into a valid shard) is found when its chunk is read,
   * and the error names the file, the frame and the value */
  meta m;
  make_corpus(&m, "badlab");
  hid_t f = H5Fopen(m.path[2], H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert(f >= 0);
  hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT), fsp = H5Dget_space(d);
  hsize_t start[1] = {77}, count[1] = {1};
  hid_t ms = H5Screate_simple(1, count, NULL);
  H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
  int32_t bad = 99;
  ck_assert(H5Dwrite(d, H5T_NATIVE_INT32, ms, fsp, H5P_DEFAULT, &bad) >= 0);
  H5Sclose(ms);
  H5Sclose(fsp);
  H5Dclose(d);
  H5Fclose(f);
  ngt_batcher_opts o = ngt_batcher_opts_default();
  o.shuffle_buffer = 50;
  o.loop = 0;
  ngt_batcher *b = new_batcher(&m, o);
  ngt_mat X = ngt_mat_alloc(16, D);
  int32_t y[16];
  int got = 16, rc = 0;
  ngt_err err = {0};
  while (rc == 0 && got == 16) rc = ngt_batcher_next(b, 16, X, y, &got, &err);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err.msg, m.path[2]) && strstr(err.msg, "frame 77") &&
                    strstr(err.msg, "label 99"),
                "%s", err.msg);
  ngt_mat_free(&X);
  ngt_batcher_free(b);
  meta_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- frameset */

START_TEST(test_frameset) {
  meta m;
  make_corpus(&m, "fs");
  const char *p[3] = {m.path[0], m.path[1], m.path[2]};
  ngt_frameset *all = NULL, *s1 = NULL, *s2 = NULL, *s3 = NULL;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_frameset_load(p, 3, 0, 1, &all, &err), 0);
  ck_assert_int_eq(all->n, m.total);
  ck_assert_int_eq(all->n_sel, m.total);
  ck_assert_int_eq(all->feat_dim, D);
  ck_assert_int_eq(all->num_classes, C);
  const int L = 3, R = 2;
  ngt_mat X = ngt_mat_alloc(64, D * (L + R + 1));
  int32_t y[64];
  int64_t prev = -1;
  for (int64_t i = 0; i < all->n_sel; i += 64) {
    int n = all->n_sel - i < 64 ? (int)(all->n_sel - i) : 64;
    ngt_frameset_splice(all, i, n, L, R, X, y);
    for (int j = 0; j < n; j++) {
      int64_t id = check_row(&m, &NGT_AT(X, j, 0), L, R, y[j]);
      ck_assert_int_gt(id, prev); /* file order */
      prev = id;
    }
  }
  const int64_t K = 150;
  ck_assert_int_eq(ngt_frameset_load(p, 3, K, 5, &s1, &err), 0);
  ck_assert_int_eq(ngt_frameset_load(p, 3, K, 5, &s2, &err), 0);
  ck_assert_int_eq(ngt_frameset_load(p, 3, K, 6, &s3, &err), 0);
  ck_assert_int_eq(s1->n_sel, K);
  ck_assert_int_le(s1->n, m.total);
  ck_assert_int_eq(s1->n, s2->n);
  ck_assert(memcmp(s1->frame, s2->frame, (size_t)K * sizeof *s1->frame) == 0);
  ck_assert(memcmp(s1->feats, s2->feats, (size_t)s1->n * D * sizeof *s1->feats) == 0);
  ngt_mat X2 = ngt_mat_alloc(K, D * (L + R + 1)), X3 = ngt_mat_alloc(K, D * (L + R + 1));
  int32_t y2[150], y3[150];
  ngt_frameset_splice(s2, 0, (int)K, L, R, X2, y2);
  ngt_frameset_splice(s3, 0, (int)K, L, R, X3, y3);
  int64_t ids2[150], ids3[150];
  for (int j = 0; j < K; j++) {
    ids2[j] = check_row(&m, &NGT_AT(X2, j, 0), L, R, y2[j]);
    ids3[j] = check_row(&m, &NGT_AT(X3, j, 0), L, R, y3[j]);
    if (j) {
      ck_assert_int_gt(ids2[j], ids2[j - 1]); /* selected frames in file order, distinct */
      ck_assert_int_gt(ids3[j], ids3[j - 1]);
    }
    /* the frame's whole utterance is in memory */
    int64_t f = s2->frame[j];
    int s = (int)(ids2[j] / 1000000);
    int64_t t = ids2[j] % 1000000, u = 0;
    while (m.offs[s][u + 1] <= t) u++;
    ck_assert_int_eq(s2->utt_end[f] - s2->utt_start[f], m.offs[s][u + 1] - m.offs[s][u]);
    ck_assert_int_eq(f - s2->utt_start[f], t - m.offs[s][u]);
  }
  ck_assert(memcmp(ids2, ids3, sizeof ids2) != 0);
  /* a subset as large as the data selects everything */
  ngt_frameset *s4 = NULL;
  ck_assert_int_eq(ngt_frameset_load(p, 3, m.total, 5, &s4, &err), 0);
  ck_assert_int_eq(s4->n_sel, m.total);
  ngt_frameset_free(s4);
  ngt_mat_free(&X);
  ngt_mat_free(&X2);
  ngt_mat_free(&X3);
  ngt_frameset_free(all);
  ngt_frameset_free(s1);
  ngt_frameset_free(s2);
  ngt_frameset_free(s3);
  ngt_frameset_free(NULL);
  meta_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- throughput */

START_TEST(test_throughput) {
  /* 40-dim frames, 11 spliced: the data path must deliver >= 10x what training eats
   * (~5k-20k frames/s), so >= 200k frames/s. Sanitizer builds are ~10x slower; there
   * the rate is only printed. */
  enum { DD = 40, U = 400, LEN = 150, BS = 512 };
  char path[600];
  snprintf(path, sizeof path, "%s/speed.h5", g_dir);
  int64_t T = (int64_t)U * LEN;
  float *f = malloc((size_t)T * DD * sizeof *f);
  int32_t *l = calloc((size_t)T, sizeof *l);
  int64_t offs[U + 1];
  for (int u = 0; u <= U; u++) offs[u] = (int64_t)u * LEN;
  ngt_rng r = ngt_rng_make(1, NGT_RNG_STREAM_TEST);
  for (int64_t i = 0; i < T * DD; i++) f[i] = (float)ngt_rng_uniform(&r);
  ngt_err err = {0};
  ngt_shard_write_opts wo = {1, 4096};
  ck_assert_int_eq(ngt_shard_write(path, f, T, DD, l, offs, U, NULL, 10, &wo, &err), 0);
  free(f);
  free(l);
  ngt_batcher_opts o = ngt_batcher_opts_default();
  o.ctx_left = o.ctx_right = 5;
  o.shuffle_buffer = 20000;
  const char *p[1] = {path};
  ngt_batcher *b = NULL;
  ck_assert_int_eq(ngt_batcher_new(p, 1, &o, &b, &err), 0);
  ngt_mat X = ngt_mat_alloc(BS, ngt_batcher_input_dim(b));
  int32_t y[BS];
  int got;
  /* CPU time of the whole process (both threads), so a loaded machine does not make
   * the test flaky; wall-clock rate is printed too. */
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  double t0 = ngt_now();
  int64_t n = 0;
  while (n < 3 * T) {
    ck_assert_int_eq(ngt_batcher_next(b, BS, X, y, &got, &err), 0);
    n += got;
  }
  double wall = ngt_now() - t0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
  double rate = (double)n / cpu;
  printf("batcher throughput: %.0f frames/s wall, %.0f frames per CPU-second (40-dim, 11 "
         "spliced, gzip shards)\n",
         (double)n / wall, rate);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  (void)rate;
#else
  ck_assert_msg(rate > 200000, "only %.0f frames/s (need >= 200k)", rate);
#endif
  ngt_mat_free(&X);
  ngt_batcher_free(b);
}
END_TEST

static Suite *batcher_suite(void) {
  Suite *s = suite_create("batcher");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_splice_reference);
  tcase_add_test(tc, test_one_pass_exactly_once);
  tcase_add_test(tc, test_seed_determinism);
  tcase_add_test(tc, test_prefetch_equivalence);
  tcase_add_test(tc, test_seek_equals_read);
  tcase_add_test(tc, test_archive_reads);
  tcase_add_test(tc, test_mismatched_shards);
  tcase_add_test(tc, test_truncated_midstream);
  tcase_add_test(tc, test_bad_label_midstream);
  tcase_add_test(tc, test_frameset);
  tcase_add_test(tc, test_throughput);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  ngt_hdf5_quiet();
  snprintf(g_dir, sizeof g_dir, "/tmp/test_batcher.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  SRunner *sr = srunner_create(batcher_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_dir);
  return failed != 0;
}

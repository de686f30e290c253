/* test_archives.c — the corpus cut into archives and Kaldi's round-robin (archives.h,
 * docs/algorithm.md §4.1-4.2): every epoch's archives partition the corpus into whole
 * utterances; with unequal shards (1:2:3:4), 3 workers, the job ramp 1 -> 3 and 5 epochs
 * every frame is read 5 times, except the frames of the one archive Kaldi's schedule
 * leaves unread (59 reads of 12 archives); the cut differs per epoch and is a pure
 * function of the seed. No files, no MPI. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/archives.h"
#include "ngtrain/rng.h"
#include "ngtrain/schedule.h"

#define S 4

typedef struct corpus {
  int64_t U[S];
  int64_t *off[S];
  int64_t T;
} corpus;

/* Shard s holds 100 (s+1) utterances of 20..80 frames: sizes about 1:2:3:4. */
static void make(corpus *c) {
  ngt_rng r = ngt_rng_make(5, NGT_RNG_STREAM_TEST);
  c->T = 0;
  for (int s = 0; s < S; s++) {
    c->U[s] = 100 * (s + 1);
    c->off[s] = malloc(sizeof(int64_t) * (size_t)(c->U[s] + 1));
    c->off[s][0] = 0;
    for (int64_t u = 0; u < c->U[s]; u++)
      c->off[s][u + 1] = c->off[s][u] + 20 + ngt_rng_below(&r, 61);
    c->T += c->off[s][c->U[s]];
  }
}
static void unmake(corpus *c) {
  for (int s = 0; s < S; s++) free(c->off[s]);
}

static ngt_archives *plan(const corpus *c, int64_t A, uint64_t seed) {
  ngt_archives *a = NULL;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_archives_new(S, (const int64_t *const *)c->off, c->U, A,
                                    ngt_archives_unit_for(c->T, A, 500000), seed, &a, &err),
                   0);
  return a;
}

/* Adds read g's frames to count[s][t]; checks the pieces are whole utterances. */
static int64_t add_read(ngt_archives *a, const corpus *c, int64_t g, int *count[S]) {
  ngt_archive_piece *p = NULL;
  int np = 0;
  int64_t n = ngt_archives_pieces(a, g, &p, &np), k = 0;
  for (int i = 0; i < np; i++) {
    ck_assert(p[i].shard >= 0 && p[i].shard < S && p[i].u0 < p[i].u1 &&
              p[i].u1 <= c->U[p[i].shard]);
    ck_assert_int_eq(p[i].f0, c->off[p[i].shard][p[i].u0]);
    ck_assert_int_eq(p[i].f1, c->off[p[i].shard][p[i].u1]);
    for (int64_t t = p[i].f0; t < p[i].f1; t++) count[p[i].shard][t]++;
    k += p[i].f1 - p[i].f0;
  }
  ck_assert_int_eq(k, n);
  free(p);
  return n;
}

static int same_pieces(const ngt_archive_piece *a, int na, const ngt_archive_piece *b, int nb) {
  if (na != nb) return 0;
  for (int i = 0; i < na; i++)
    if (a[i].shard != b[i].shard || a[i].u0 != b[i].u0 || a[i].u1 != b[i].u1) return 0;
  return 1;
}

START_TEST(every_epoch_partitions_the_corpus) {
  corpus c;
  make(&c);
  const int64_t A = 7;
  ngt_archives *a = plan(&c, A, 1);
  int *count[S];
  for (int s = 0; s < S; s++) count[s] = calloc((size_t)c.off[s][c.U[s]], sizeof(int));
  for (int64_t e = 0; e < 3; e++) {
    for (int64_t k = 0; k < A; k++) {
      int64_t n = add_read(a, &c, e * A + k, count);
      /* about T/A frames: within one unit of it */
      ck_assert(llabs(n - c.T / A) <= ngt_archives_max_unit(a));
    }
    for (int s = 0; s < S; s++)
      for (int64_t t = 0; t < c.off[s][c.U[s]]; t++) ck_assert_int_eq(count[s][t], (int)e + 1);
  }
  /* another epoch, another cut; the same seed, the same cut */
  ngt_archive_piece *p0 = NULL, *p1 = NULL, *q0 = NULL;
  int n0, n1, m0;
  ngt_archives_pieces(a, 0, &p0, &n0);
  ngt_archives_pieces(a, A, &p1, &n1);
  ngt_archives *b = plan(&c, A, 1);
  ngt_archives_pieces(b, 0, &q0, &m0);
  ck_assert(!same_pieces(p0, n0, p1, n1));
  ck_assert(same_pieces(p0, n0, q0, m0));
  free(p0);
  free(p1);
  free(q0);
  ngt_archives_free(b);
  for (int s = 0; s < S; s++) free(count[s]);
  ngt_archives_free(a);
  unmake(&c);
}
END_TEST

START_TEST(kaldi_round_robin_reads_every_frame_num_epochs_times) {
  corpus c;
  make(&c);
  /* about 12 archives: samples_per_iter = T / 12 */
  const int64_t spi = c.T / 12, A = ngt_archives_count_for(c.T, spi);
  ck_assert_int_eq(A, 12);
  ngt_schedule sc;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_schedule_init(&sc, 5.0, A * spi, spi, 1, 3, 1, 0.003, 0.0003, &err), 0);
  ngt_archives *a = plan(&c, A, 3);
  int *count[S];
  for (int s = 0; s < S; s++) count[s] = calloc((size_t)c.off[s][c.U[s]], sizeof(int));
  int64_t reads = 0, frames = 0;
  for (int i = 0; i < sc.num_iters; i++) {
    const int64_t p = ngt_schedule_processed(&sc, i);
    ck_assert_int_eq(p, reads);
    for (int j = 0; j < ngt_schedule_jobs(&sc, i); j++) { /* job j of iteration i */
      frames += add_read(a, &c, ngt_archives_read_of(p, j), count);
      reads++;
    }
  }
  /* Kaldi's schedule: 30 iterations, 59 reads of 12 archives (5 x 12 = 60 minus one) */
  ck_assert_int_eq(sc.num_iters, 30);
  ck_assert_int_eq(reads, 59);
  int64_t off5 = 0, lo = 99, hi = 0;
  double passes[S];
  for (int s = 0; s < S; s++) {
    int64_t Ts = c.off[s][c.U[s]], sum = 0;
    for (int64_t t = 0; t < Ts; t++) {
      ck_assert(count[s][t] == 5 || count[s][t] == 4);
      off5 += count[s][t] != 5;
      if (count[s][t] < lo) lo = count[s][t];
      if (count[s][t] > hi) hi = count[s][t];
      sum += count[s][t];
    }
    passes[s] = (double)sum / (double)Ts;
  }
  /* frames not read 5 times: exactly the one unread archive */
  ngt_archive_piece *p = NULL;
  int np = 0;
  ck_assert_int_eq(off5, ngt_archives_pieces(a, 59, &p, &np));
  free(p);
  printf("archives: 1:2:3:4 shards, 3 workers, ramp 1->3, 5 epochs: frame reads %ld..%ld; "
         "passes per shard %.3f %.3f %.3f %.3f; %ld of %ld frames read 4 times (one archive)\n",
         (long)lo, (long)hi, passes[0], passes[1], passes[2], passes[3], (long)off5, (long)c.T);
  for (int s = 0; s < S; s++) free(count[s]);
  ngt_archives_free(a);
  unmake(&c);
}
END_TEST

/* --samples-per-iter=0: at least 4 archives per final job, Kaldi's 400k frames when larger */
START_TEST(automatic_samples_per_iter) {
  const int64_t T = 1062813; /* the speech corpus of the evidence */
  int64_t s1 = ngt_samples_per_iter(0, T, 1), s8 = ngt_samples_per_iter(0, T, 8);
  ck_assert_int_eq(ngt_archives_count_for(T, s1), 4);
  ck_assert_int_eq(ngt_archives_count_for(T, s8), 32);
  ck_assert_int_eq(s1, 265703);
  ck_assert_int_eq(ngt_samples_per_iter(8000, T, 8), 8000); /* an explicit value stays */
  /* a large corpus keeps Kaldi's 400k (A = 270 >= 4 x 16) */
  ck_assert_int_eq(ngt_archives_count_for(108000000, ngt_samples_per_iter(0, 108000000, 16)), 270);
  ck_assert_int_eq(ngt_samples_per_iter(0, 108000000, 16), 400000);
  /* tiny corpora: never below one frame */
  ck_assert_int_eq(ngt_samples_per_iter(0, 3, 4), 1);
  ck_assert_int_eq(ngt_samples_per_iter(0, 0, 1), 1);
  for (int J = 1; J <= 64; J *= 2)
    for (int64_t t = 1000; t < 100000000; t = t * 7 + 13) {
      int64_t A = ngt_archives_count_for(t, ngt_samples_per_iter(0, t, J));
      ck_assert_int_ge(A, t >= 4 * J ? 4 * J : 1);
    }
}
END_TEST

START_TEST(counts_and_bad_input) {
  ck_assert_int_eq(ngt_archives_count_for(100, 1000), 1);
  ck_assert_int_eq(ngt_archives_count_for(1499, 1000), 1);
  ck_assert_int_eq(ngt_archives_count_for(1500, 1000), 2);
  ck_assert_int_eq(ngt_archives_unit_for(8000, 1, 500000), 1000);
  ck_assert_int_eq(ngt_archives_unit_for(8000000, 1, 500), 500);
  ngt_archives *a = NULL;
  ngt_err err = {0};
  int64_t off[2] = {0, 10}, U = 1;
  const int64_t *o = off;
  ck_assert_int_ne(ngt_archives_new(1, &o, &U, 0, 1, 0, &a, &err), 0);
  ck_assert_ptr_nonnull(strstr(err.msg, "must be >= 1"));
  /* more archives than utterances: some are empty, the others hold the frames */
  ck_assert_int_eq(ngt_archives_new(1, &o, &U, 3, 1, 0, &a, &err), 0);
  int64_t tot = 0;
  for (int k = 0; k < 3; k++) {
    ngt_archive_piece *p = NULL;
    int np = 0;
    tot += ngt_archives_pieces(a, k, &p, &np);
    free(p);
  }
  ck_assert_int_eq(tot, 10);
  ngt_archives_free(a);
}
END_TEST

int main(void) {
  Suite *s = suite_create("archives");
  TCase *t = tcase_create("core");
  tcase_add_test(t, every_epoch_partitions_the_corpus);
  tcase_add_test(t, kaldi_round_robin_reads_every_frame_num_epochs_times);
  tcase_add_test(t, automatic_samples_per_iter);
  tcase_add_test(t, counts_and_bad_input);
  suite_add_tcase(s, t);
  SRunner *r = srunner_create(s);
  srunner_set_fork_status(r, CK_NOFORK);
  srunner_run_all(r, CK_NORMAL);
  int nf = srunner_ntests_failed(r);
  srunner_free(r);
  return nf != 0;
}

/* test_shard.c — Check suite for src/shard.c: round trips, streaming vs whole writer,
 * every bad-shard path of docs/design.md §6 (each checks the message), globbing, and the
 * example data in data/. Scratch files go under a mkdtemp() directory. */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ngtrain/fileio.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

static char g_dir[256];

static void path_in(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* A random shard in memory: T frames of D dims in U utterances, C classes. */
typedef struct toy {
  int64_t T, U;
  int D, C;
  float *feats;    /* (T, D) */
  int32_t *labels; /* (T) */
  int64_t *offs;   /* (U+1) */
  char **ids;      /* (U) */
} toy;

static toy toy_make(uint64_t seed, int64_t U, int D, int C, int max_len) {
  toy t = {0, U, D, C, NULL, NULL, NULL, NULL};
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_TEST);
  t.offs = malloc((size_t)(U + 1) * sizeof *t.offs);
  t.offs[0] = 0;
  for (int64_t u = 0; u < U; u++)
    t.offs[u + 1] = t.offs[u] + 1 + ngt_rng_below(&r, (uint32_t)max_len);
  t.T = t.offs[U];
  t.feats = malloc((size_t)t.T * (size_t)D * sizeof *t.feats);
  t.labels = malloc((size_t)t.T * sizeof *t.labels);
  for (int64_t i = 0; i < t.T * D; i++) t.feats[i] = (float)ngt_rng_normal(&r);
  for (int64_t i = 0; i < t.T; i++) t.labels[i] = (int32_t)ngt_rng_below(&r, (uint32_t)C);
  t.ids = malloc((size_t)U * sizeof *t.ids);
  for (int64_t u = 0; u < U; u++) {
    t.ids[u] = malloc(32);
    snprintf(t.ids[u], 32, "spk%02d-utt%05ld", (int)(u % 7), (long)u);
  }
  return t;
}

static void toy_free(toy *t) {
  for (int64_t u = 0; u < t->U; u++) free(t->ids[u]);
  free(t->ids);
  free(t->feats);
  free(t->labels);
  free(t->offs);
}

/* Raw HDF5 writer for malformed shards: attributes may be omitted (format NULL,
 * version < 0), feats written as float64 if f64. */
typedef struct raw {
  const char *format;
  int version, feat_dim, num_classes;
  int f64;
} raw;

static void attr_int(hid_t f, const char *name, int v) {
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(a >= 0);
  H5Awrite(a, H5T_NATIVE_INT, &v);
  H5Aclose(a);
  H5Sclose(s);
}

static void write_raw(const char *path, const raw *o, const float *feats, int64_t T, int D,
                      const int32_t *labels, const int64_t *offs, int64_t n_off) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(f >= 0);
  if (o->format) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(o->format)); /* fixed-length, as some writers do */
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "format", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, o->format);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
  }
  if (o->version >= 0) attr_int(f, "version", o->version);
  attr_int(f, "feat_dim", o->feat_dim);
  attr_int(f, "num_classes", o->num_classes);
  hsize_t fd[2] = {(hsize_t)T, (hsize_t)D}, ld[1] = {(hsize_t)T}, od[1] = {(hsize_t)n_off};
  hid_t s = H5Screate_simple(2, fd, NULL);
  hid_t d = H5Dcreate2(f, "feats", o->f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE, s, H5P_DEFAULT,
                       H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, feats);
  H5Dclose(d);
  H5Sclose(s);
  s = H5Screate_simple(1, ld, NULL);
  d = H5Dcreate2(f, "labels", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
  H5Dclose(d);
  H5Sclose(s);
  s = H5Screate_simple(1, od, NULL);
  d = H5Dcreate2(f, "utt_offsets", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offs);
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);
}

static const raw RAW_OK = {"ngtrain-shard", 1, 3, 5, 0};

/* A 10-frame, 3-dim, 5-class raw shard with 3 utterances; overrides via the args. */
static void write_small_raw(const char *path, const raw *o, float bad_feat, int bad_at,
                            int32_t bad_label, const int64_t *offs, int n_off) {
  float feats[30];
  int32_t labels[10];
  for (int i = 0; i < 30; i++) feats[i] = (float)i * 0.5f;
  for (int i = 0; i < 10; i++) labels[i] = i % 5;
  if (bad_at >= 0) {
    feats[bad_at] = bad_feat;
    if (bad_label != 0) labels[bad_at / 3] = bad_label;
  }
  static const int64_t def_offs[4] = {0, 4, 7, 10};
  if (!offs) {
    offs = def_offs;
    n_off = 4;
  }
  write_raw(path, o, feats, 10, 3, labels, offs, n_off);
}

/* Opens path, expects failure whose message contains every needle. */
static void expect_open_fail(const char *path, const char *n1, const char *n2, const char *n3) {
  ngt_shard *sh = NULL;
  ngt_err err = {0};
  int rc = ngt_shard_open(path, &sh, &err);
  ck_assert_int_ne(rc, 0);
  ck_assert_ptr_null(sh);
  ck_assert_msg(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
  const char *n[3] = {n1, n2, n3};
  for (int i = 0; i < 3; i++)
    if (n[i]) ck_assert_msg(strstr(err.msg, n[i]) != NULL, "'%s' not in: %s", n[i], err.msg);
}

/* Opens path (must succeed), reads everything, expects failure naming the needles. */
static void expect_read_fail(const char *path, const char *n1, const char *n2, const char *n3) {
  ngt_shard *sh = NULL;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_shard_open(path, &sh, &err), 0);
  float feats[30];
  int32_t labels[10];
  int rc = ngt_shard_read(sh, 0, sh->num_frames, feats, labels, &err);
  ngt_shard_close(sh);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
  const char *n[3] = {n1, n2, n3};
  for (int i = 0; i < 3; i++)
    if (n[i]) ck_assert_msg(strstr(err.msg, n[i]) != NULL, "'%s' not in: %s", n[i], err.msg);
}

/* ---------------------------------------------------------------- round trips */

static void check_shard_equals(const char *path, const toy *t, int with_ids) {
  ngt_shard *sh = NULL;
  ngt_err err = {0};
  ck_assert_msg(ngt_shard_open(path, &sh, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(sh->num_frames, t->T);
  ck_assert_int_eq(sh->num_utts, t->U);
  ck_assert_int_eq(sh->feat_dim, t->D);
  ck_assert_int_eq(sh->num_classes, t->C);
  ck_assert(memcmp(sh->utt_offsets, t->offs, (size_t)(t->U + 1) * sizeof *t->offs) == 0);
  float *f = malloc((size_t)t->T * (size_t)t->D * sizeof *f);
  int32_t *l = malloc((size_t)t->T * sizeof *l);
  ck_assert_int_eq(ngt_shard_read(sh, 0, t->T, f, l, &err), 0);
  ck_assert(memcmp(f, t->feats, (size_t)t->T * (size_t)t->D * sizeof *f) == 0);
  ck_assert(memcmp(l, t->labels, (size_t)t->T * sizeof *l) == 0);
  /* ranges that straddle chunk boundaries, and labels-only / feats-only reads */
  for (int64_t a = 0; a < t->T; a += 37) {
    int64_t n = a + 101 <= t->T ? 101 : t->T - a;
    memset(f, 0, (size_t)n * (size_t)t->D * sizeof *f);
    ck_assert_int_eq(ngt_shard_read(sh, a, n, f, NULL, &err), 0);
    ck_assert(memcmp(f, t->feats + a * t->D, (size_t)n * (size_t)t->D * sizeof *f) == 0);
    ck_assert_int_eq(ngt_shard_read(sh, a, n, NULL, l, &err), 0);
    ck_assert(memcmp(l, t->labels + a, (size_t)n * sizeof *l) == 0);
  }
  char **ids = NULL;
  ck_assert_int_eq(ngt_shard_read_ids(sh, &ids, &err), 0);
  if (with_ids) {
    ck_assert_ptr_nonnull(ids);
    for (int64_t u = 0; u < t->U; u++) ck_assert_str_eq(ids[u], t->ids[u]);
  } else {
    ck_assert_ptr_null(ids);
  }
  ngt_shard_free_ids(ids, sh->num_utts);
  /* out-of-range read is an error naming the file */
  ck_assert_int_eq(ngt_shard_read(sh, t->T - 1, 2, f, l, &err), NGT_EINVAL);
  ck_assert(strstr(err.msg, path) != NULL);
  ngt_shard_close(sh);
  free(f);
  free(l);
}

START_TEST(test_roundtrip) {
  toy t = toy_make(1, 40, 7, 11, 60);
  for (int compress = 0; compress <= 4; compress += 4) {
    char p[512];
    path_in(p, sizeof p, compress ? "rt_gz.h5" : "rt.h5");
    ngt_shard_write_opts o = {compress, 64};
    ngt_err err = {0};
    ck_assert_msg(ngt_shard_write(p, t.feats, t.T, t.D, t.labels, t.offs, t.U,
                                  (const char *const *)t.ids, t.C, &o, &err) == 0,
                  "%s", err.msg);
    check_shard_equals(p, &t, 1);
    char tmp[600];
    ngt_tmp_path(p, tmp, sizeof tmp);
    ck_assert(!file_exists(tmp));
  }
  /* without ids, default options */
  char p[512];
  path_in(p, sizeof p, "rt_noids.h5");
  ngt_err err = {0};
  ck_assert_int_eq(ngt_shard_write(p, t.feats, t.T, t.D, t.labels, t.offs, t.U, NULL, t.C, NULL,
                                   &err),
                   0);
  check_shard_equals(p, &t, 0);
  toy_free(&t);
}
END_TEST

/* Reads a whole dataset of a file as raw bytes in its native type. */
static void *read_all(const char *path, const char *name, hid_t mtype, size_t *nbytes) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  ck_assert(f >= 0);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  ck_assert(d >= 0);
  hid_t s = H5Dget_space(d);
  hssize_t n = H5Sget_simple_extent_npoints(s);
  size_t sz = H5Tget_size(mtype);
  void *buf = calloc((size_t)n + 1, sz);
  ck_assert(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
  *nbytes = (size_t)n * sz;
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
  return buf;
}

static int files_equal(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  ck_assert(fa && fb);
  int eq = 1, ca, cb;
  do {
    ca = fgetc(fa);
    cb = fgetc(fb);
    if (ca != cb) eq = 0;
  } while (eq && ca != EOF);
  fclose(fa);
  fclose(fb);
  return eq;
}

START_TEST(test_stream_equals_whole) {
  toy t = toy_make(2, 25, 5, 9, 300);
  char pw[512], ps[512];
  path_in(pw, sizeof pw, "whole.h5");
  path_in(ps, sizeof ps, "stream.h5");
  ngt_shard_write_opts o = {1, 100};
  ngt_err err = {0};
  ck_assert_int_eq(ngt_shard_write(pw, t.feats, t.T, t.D, t.labels, t.offs, t.U,
                                   (const char *const *)t.ids, t.C, &o, &err),
                   0);
  ngt_shard_writer *w = NULL;
  ck_assert_int_eq(ngt_shard_writer_open(ps, t.D, t.C, &o, &w, &err), 0);
  ck_assert(!file_exists(ps)); /* nothing at path until commit */
  for (int64_t u = 0; u < t.U; u++) {
    int64_t a = t.offs[u];
    ck_assert_int_eq(ngt_shard_writer_add(w, t.ids[u], t.feats + a * t.D, t.offs[u + 1] - a,
                                          t.labels + a, &err),
                     0);
  }
  ck_assert(!file_exists(ps));
  ck_assert_msg(ngt_shard_writer_commit(w, &err) == 0, "%s", err.msg);
  check_shard_equals(ps, &t, 1);
  const char *names[3] = {"feats", "labels", "utt_offsets"};
  hid_t types[3] = {H5T_NATIVE_FLOAT, H5T_NATIVE_INT32, H5T_NATIVE_INT64};
  for (int i = 0; i < 3; i++) {
    size_t na, nb;
    void *a = read_all(pw, names[i], types[i], &na), *b = read_all(ps, names[i], types[i], &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(a, b, na) == 0);
    free(a);
    free(b);
  }
  /* no object timestamps: equal contents make equal files */
  ck_assert_msg(files_equal(pw, ps), "whole and streamed shards differ byte-wise");
  toy_free(&t);
}
END_TEST

START_TEST(test_writer_abort_and_errors) {
  char p[512], tmp[600];
  path_in(p, sizeof p, "aborted.h5");
  ngt_tmp_path(p, tmp, sizeof tmp);
  ngt_shard_writer *w = NULL;
  ngt_err err = {0};
  float f[6] = {1, 2, 3, 4, 5, 6};
  int32_t l[2] = {0, 1};
  ck_assert_int_eq(ngt_shard_writer_open(p, 3, 2, NULL, &w, &err), 0);
  ck_assert_int_eq(ngt_shard_writer_add(w, "u1", f, 2, l, &err), 0);
  ck_assert(file_exists(tmp));
  ngt_shard_writer_abort(w);
  ck_assert(!file_exists(tmp));
  ck_assert(!file_exists(p));
  ngt_shard_writer_abort(NULL);

  /* bad utterances are refused at write time, naming the utterance */
  ck_assert_int_eq(ngt_shard_writer_open(p, 3, 2, NULL, &w, &err), 0);
  int32_t bad[2] = {0, 2};
  ck_assert_int_eq(ngt_shard_writer_add(w, "uttX", f, 2, bad, &err), NGT_EINVAL);
  ck_assert(strstr(err.msg, "uttX") && strstr(err.msg, "label 2"));
  ck_assert_int_eq(ngt_shard_writer_add(w, "uttE", f, 0, l, &err), NGT_EINVAL);
  ck_assert(strstr(err.msg, "uttE") != NULL);
  f[4] = NAN;
  ck_assert_int_eq(ngt_shard_writer_add(w, "uttN", f, 2, l, &err), NGT_EINVAL);
  ck_assert(strstr(err.msg, "uttN") && strstr(err.msg, "frame 1"));
  ngt_shard_writer_abort(w);

  /* unwritable directory */
  ck_assert_int_eq(ngt_shard_writer_open("/nonexistent-dir/x.h5", 3, 2, NULL, &w, &err), NGT_EIO);
  ck_assert(strstr(err.msg, "/nonexistent-dir/x.h5") != NULL);
  /* bad options */
  ngt_shard_write_opts o = {12, 0};
  ck_assert_int_eq(ngt_shard_writer_open(p, 3, 2, &o, &w, &err), NGT_EINVAL);
  ck_assert_int_eq(ngt_shard_writer_open(p, 3, 0, NULL, &w, &err), NGT_EINVAL);
  ck_assert(strstr(err.msg, "num_classes") != NULL);

  /* an empty shard (no utterances) is valid */
  ck_assert_int_eq(ngt_shard_writer_open(p, 3, 2, NULL, &w, &err), 0);
  ck_assert_int_eq(ngt_shard_writer_commit(w, &err), 0);
  ngt_shard *sh = NULL;
  ck_assert_int_eq(ngt_shard_open(p, &sh, &err), 0);
  ck_assert_int_eq(sh->num_frames, 0);
  ck_assert_int_eq(sh->num_utts, 0);
  ngt_shard_close(sh);
}
END_TEST

START_TEST(test_float64_and_fixed_string_attr) {
  /* any float type is read as float32; a fixed-length format string is accepted */
  char p[512];
  path_in(p, sizeof p, "f64.h5");
  raw o = RAW_OK;
  o.f64 = 1;
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  ngt_shard *sh = NULL;
  ngt_err err = {0};
  ck_assert_msg(ngt_shard_open(p, &sh, &err) == 0, "%s", err.msg);
  float f[30];
  int32_t l[10];
  ck_assert_int_eq(ngt_shard_read(sh, 0, 10, f, l, &err), 0);
  for (int i = 0; i < 30; i++) ck_assert(f[i] == (float)i * 0.5f);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(l[i], i % 5);
  ngt_shard_close(sh);
}
END_TEST

/* ---------------------------------------------------------------- bad shards */

START_TEST(test_bad_missing) {
  char p[512];
  path_in(p, sizeof p, "does-not-exist.h5");
  expect_open_fail(p, "No such file", NULL, NULL);
}
END_TEST

START_TEST(test_bad_not_hdf5) {
  char p[512];
  path_in(p, sizeof p, "text.h5");
  FILE *f = fopen(p, "w");
  fputs("this is not an HDF5 file\n", f);
  fclose(f);
  expect_open_fail(p, "not an HDF5 file", NULL, NULL);
}
END_TEST

START_TEST(test_bad_foreign_hdf5) {
  char p[512];
  path_in(p, sizeof p, "foreign.h5");
  raw o = RAW_OK;
  o.format = NULL;
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  expect_open_fail(p, "not an ngtrain shard", "format", NULL);
  o.format = "something-else";
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  expect_open_fail(p, "something-else", NULL, NULL);
}
END_TEST

START_TEST(test_bad_version) {
  char p[512];
  path_in(p, sizeof p, "v2.h5");
  raw o = RAW_OK;
  o.version = 2;
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  expect_open_fail(p, "version 2", NULL, NULL);
  o.version = -1; /* missing */
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  expect_open_fail(p, "version", NULL, NULL);
}
END_TEST

START_TEST(test_bad_feat_dim) {
  char p[512];
  path_in(p, sizeof p, "fd.h5");
  raw o = RAW_OK;
  o.feat_dim = 4; /* /feats has 3 columns */
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  expect_open_fail(p, "3 columns", "feat_dim = 4", NULL);
  o.feat_dim = 0;
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  expect_open_fail(p, "feat_dim", "positive", NULL);
  o = RAW_OK;
  o.num_classes = -3;
  write_small_raw(p, &o, 0, -1, 0, NULL, 0);
  expect_open_fail(p, "num_classes", "-3", NULL);
}
END_TEST

START_TEST(test_bad_label) {
  char p[512];
  path_in(p, sizeof p, "label.h5");
  raw o = RAW_OK; /* 5 classes; frame 7 gets label 5 */
  write_small_raw(p, &o, 10.5f, 7 * 3, 5, NULL, 0);
  expect_read_fail(p, "frame 7", "label 5", "num_classes = 5");
  expect_read_fail(p, "--num-classes", NULL, NULL);
  write_small_raw(p, &o, 10.5f, 2 * 3, -1, NULL, 0);
  expect_read_fail(p, "frame 2", "label -1", NULL);
}
END_TEST

START_TEST(test_bad_nonfinite) {
  char p[512];
  path_in(p, sizeof p, "nan.h5");
  raw o = RAW_OK;
  write_small_raw(p, &o, NAN, 5 * 3 + 2, 0, NULL, 0);
  expect_read_fail(p, "frame 5", "dim 2", "NaN");
  write_small_raw(p, &o, INFINITY, 9 * 3 + 0, 0, NULL, 0);
  expect_read_fail(p, "frame 9", "dim 0", "Inf");
  /* a read that does not touch the bad frame succeeds */
  ngt_shard *sh = NULL;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_shard_open(p, &sh, &err), 0);
  float f[27];
  ck_assert_int_eq(ngt_shard_read(sh, 0, 9, f, NULL, &err), 0);
  ngt_shard_close(sh);
}
END_TEST

START_TEST(test_bad_offsets) {
  char p[512];
  path_in(p, sizeof p, "offs.h5");
  raw o = RAW_OK;
  const int64_t start1[4] = {1, 4, 7, 10};
  write_small_raw(p, &o, 0, -1, 0, start1, 4);
  expect_open_fail(p, "utt_offsets[0] = 1", NULL, NULL);
  const int64_t end9[4] = {0, 4, 7, 9};
  write_small_raw(p, &o, 0, -1, 0, end9, 4);
  expect_open_fail(p, "is 9", "T = 10", NULL);
  const int64_t empty[5] = {0, 4, 4, 7, 10};
  write_small_raw(p, &o, 0, -1, 0, empty, 5);
  expect_open_fail(p, "utterance 1 is empty", NULL, NULL);
  const int64_t decr[4] = {0, 7, 4, 10};
  write_small_raw(p, &o, 0, -1, 0, decr, 4);
  expect_open_fail(p, "decreases", NULL, NULL);
  write_small_raw(p, &o, 0, -1, 0, start1, 0);
  expect_open_fail(p, "utt_offsets is empty", NULL, NULL);
}
END_TEST

START_TEST(test_bad_truncated) {
  char p[512];
  path_in(p, sizeof p, "trunc.h5");
  toy t = toy_make(3, 30, 8, 4, 100);
  ngt_err err = {0};
  ck_assert_int_eq(ngt_shard_write(p, t.feats, t.T, t.D, t.labels, t.offs, t.U, NULL, t.C, NULL,
                                   &err),
                   0);
  struct stat st;
  ck_assert_int_eq(stat(p, &st), 0);
  ck_assert_int_eq(truncate(p, st.st_size / 2), 0);
  expect_open_fail(p, "truncated", NULL, NULL);
  toy_free(&t);
}
END_TEST

/* ---------------------------------------------------------------- glob, example data */

START_TEST(test_glob) {
  const char *names[3] = {"g-b.h5", "g-a.h5", "g-c.h5"};
  for (int i = 0; i < 3; i++) {
    char p[512];
    path_in(p, sizeof p, names[i]);
    FILE *f = fopen(p, "w");
    fclose(f);
  }
  char pat[512];
  path_in(pat, sizeof pat, "g-*.h5");
  char **paths = NULL;
  int n = 0;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_glob_paths(pat, &paths, &n, &err), 0);
  ck_assert_int_eq(n, 3);
  ck_assert(strstr(paths[0], "g-a.h5") && strstr(paths[1], "g-b.h5") &&
            strstr(paths[2], "g-c.h5"));
  ngt_paths_free(paths, n);
  /* a plain existing path */
  path_in(pat, sizeof pat, "g-c.h5");
  ck_assert_int_eq(ngt_glob_paths(pat, &paths, &n, &err), 0);
  ck_assert_int_eq(n, 1);
  ck_assert_str_eq(paths[0], pat);
  ngt_paths_free(paths, n);
  path_in(pat, sizeof pat, "nothing-*.h5");
  ck_assert_int_eq(ngt_glob_paths(pat, &paths, &n, &err), NGT_EIO);
  ck_assert(strstr(err.msg, pat) != NULL);
  ck_assert_ptr_null(paths);
  ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(test_example_data) {
  const char *src = getenv("NGT_SRCDIR");
  char pat[1024];
  snprintf(pat, sizeof pat, "%s/data/*.h5", src ? src : ".");
  char **paths = NULL;
  int n = 0;
  ngt_err err = {0};
  ck_assert_msg(ngt_glob_paths(pat, &paths, &n, &err) == 0, "%s", err.msg);
  ck_assert_int_ge(n, 2);
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    ngt_shard *sh = NULL;
    ck_assert_msg(ngt_shard_open(paths[i], &sh, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sh->feat_dim, 13);
    ck_assert_int_eq(sh->num_classes, 48);
    float *f = malloc((size_t)sh->num_frames * 13 * sizeof *f);
    int32_t *l = malloc((size_t)sh->num_frames * sizeof *l);
    ck_assert_msg(ngt_shard_read(sh, 0, sh->num_frames, f, l, &err) == 0, "%s", err.msg);
    char **ids = NULL;
    ck_assert_int_eq(ngt_shard_read_ids(sh, &ids, &err), 0);
    ck_assert_ptr_nonnull(ids);
    ngt_shard_free_ids(ids, sh->num_utts);
    total += sh->num_frames;
    free(f);
    free(l);
    ngt_shard_close(sh);
  }
  ck_assert_int_gt(total, 50000);
  ngt_paths_free(paths, n);
}
END_TEST

static Suite *shard_suite(void) {
  Suite *s = suite_create("shard");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_roundtrip);
  tcase_add_test(tc, test_stream_equals_whole);
  tcase_add_test(tc, test_writer_abort_and_errors);
  tcase_add_test(tc, test_float64_and_fixed_string_attr);
  tcase_add_test(tc, test_bad_missing);
  tcase_add_test(tc, test_bad_not_hdf5);
  tcase_add_test(tc, test_bad_foreign_hdf5);
  tcase_add_test(tc, test_bad_version);
  tcase_add_test(tc, test_bad_feat_dim);
  tcase_add_test(tc, test_bad_label);
  tcase_add_test(tc, test_bad_nonfinite);
  tcase_add_test(tc, test_bad_offsets);
  tcase_add_test(tc, test_bad_truncated);
  tcase_add_test(tc, test_glob);
  tcase_add_test(tc, test_example_data);
  suite_add_tcase(s, tc);
  return s;
}

static int rm_cb(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

int main(void) {
  ngt_hdf5_quiet();
  snprintf(g_dir, sizeof g_dir, "/tmp/test_shard.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  SRunner *sr = srunner_create(shard_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (rm_cb(g_dir) != 0) fprintf(stderr, "warning: could not remove %s\n", g_dir);
  return failed != 0;
}

/* test_nnet_io.c — Check suite for src/nnet_io.c: round trips (params, transform, priors,
 * config, per-layer settings, train_state blobs), byte-identical saves, atomic writes
 * (no temp file left, missing directory), and every kind of bad file: missing, empty,
 * random bytes, truncated, foreign HDF5, wrong version, wrong shapes, NaN, bad priors,
 * tampered structure — each checked for a message naming the file and the problem.
 */
#include <check.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ngtrain/h5util.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/rng.h"

static char g_dir[4096];

static const char *kCfg =
    "# round-trip test network\n"
    "input dim=4 context=-2..1\n"
    "layer type=relu-renorm dim=10 max-change=0.5 use-natural-gradient=false\n"
    "layer type=pnorm dim=12 group=3 rank-in=5 rank-out=7 update-period=2 alpha=3.5\n"
    "layer type=relu dim=6 learning-rate-factor=0.25 num-samples-history=500\n"
    "layer type=affine dim=5\n"
    "output dim=7 param-stddev=0.3 bias-stddev=0.1\n";

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ngt_test_nnet_io_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void teardown(void) {
  DIR *d = opendir(g_dir);
  if (d) {
    struct dirent *e;
    char p[8192];
    while ((e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(g_dir);
}

static const char *tpath(const char *name) {
  static char buf[4][8192];
  static int k = 0;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

/* A model with every layer type, a transform and priors. */
static ngt_nnet *make_model(uint64_t seed) {
  ngt_nnet *net = NULL;
  ngt_err err = {0};
  ck_assert_msg(ngt_nnet_from_config(kCfg, "test.cfg", &net, &err) == 0, "%s", err.msg);
  ngt_nnet_init_params(net, seed);
  int D = net->input_dim;
  float *T = malloc(sizeof(float) * (size_t)D * (size_t)(D + 1));
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_TEST);
  for (int i = 0; i < D * (D + 1); i++) T[i] = (float)ngt_rng_normal(&r);
  ngt_nnet_set_transform(net, NGT_TRANSFORM_LDA, T);
  free(T);
  float P[7];
  double s = 0;
  for (int i = 0; i < 7; i++) s += (P[i] = (float)(1 + i));
  for (int i = 0; i < 7; i++) P[i] = (float)(P[i] / s);
  ngt_nnet_set_priors(net, P);
  return net;
}

static void save_ok(const ngt_nnet *net, const char *path, const ngt_blob *b, int nb) {
  ngt_err err = {0};
  int rc = ngt_nnet_save(net, path, b, nb, &err);
  ck_assert_msg(rc == 0, "save '%s' failed: %s", path, err.msg);
}

static void expect_load_error(const char *path, int code, const char *w1, const char *w2) {
  ngt_nnet *net = (ngt_nnet *)0x1;
  ngt_err err = {0};
  int rc = ngt_nnet_load(path, &net, &err);
  ck_assert_msg(rc != 0, "loading '%s' should fail", path);
  if (code) ck_assert_msg(rc == code, "rc %d, expected %d: %s", rc, code, err.msg);
  ck_assert_int_eq(err.code, rc);
  ck_assert_ptr_null(net);
  ck_assert_msg(strstr(err.msg, path) != NULL, "message must name the file: %s", err.msg);
  if (w1) ck_assert_msg(strstr(err.msg, w1) != NULL, "'%s' should contain '%s'", err.msg, w1);
  if (w2) ck_assert_msg(strstr(err.msg, w2) != NULL, "'%s' should contain '%s'", err.msg, w2);
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)len + 1);
  ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}

static void write_all(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  fclose(f);
}

static int count_dir_entries(void) {
  DIR *d = opendir(g_dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

/* ------------------------------------------------------------------------------------ */

START_TEST(test_round_trip) {
  ngt_nnet *a = make_model(7);
  const char *p = tpath("model.h5");
  save_ok(a, p, NULL, 0);
  ngt_nnet *b = NULL;
  ngt_err err = {0};
  ck_assert_msg(ngt_nnet_load(p, &b, &err) == 0, "%s", err.msg);
  char why[256];
  ck_assert_msg(ngt_nnet_same_structure(a, b, why, sizeof why), "%s", why);
  ck_assert_uint_eq(a->num_params, b->num_params);
  ck_assert(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ck_assert_int_eq(b->transform_type, NGT_TRANSFORM_LDA);
  ck_assert_ptr_nonnull(b->transform);
  size_t nt = (size_t)a->input_dim * (size_t)(a->input_dim + 1);
  ck_assert(memcmp(a->transform, b->transform, nt * sizeof(float)) == 0);
  ck_assert_ptr_nonnull(b->priors);
  ck_assert(memcmp(a->priors, b->priors, 7 * sizeof(float)) == 0);
  ck_assert_str_eq(a->config_text, b->config_text);
  ck_assert(a->feat_dim == b->feat_dim && a->ctx_left == b->ctx_left &&
            a->ctx_right == b->ctx_right && a->num_classes == b->num_classes);
  for (int c = 0; c < a->num_comps; c++) {
    const ngt_comp *x = &a->comps[c], *y = &b->comps[c];
    ck_assert(x->max_change == y->max_change && x->lr_factor == y->lr_factor);
    ck_assert(memcmp(&x->ng, &y->ng, sizeof x->ng) == 0);
    ck_assert(x->param_stddev == y->param_stddev && x->bias_stddev == y->bias_stddev);
    ck_assert(x->group == y->group && x->layer == y->layer);
  }
  ck_assert(b->comps[3].ng.rank_in == 5 && b->comps[3].ng.alpha == 3.5);
  ngt_nnet_free(b);

  /* without transform and priors: loads without them */
  ngt_nnet_set_transform(a, NGT_TRANSFORM_NONE, NULL);
  ngt_nnet_set_priors(a, NULL);
  save_ok(a, p, NULL, 0); /* overwrite */
  ck_assert_msg(ngt_nnet_load(p, &b, &err) == 0, "%s", err.msg);
  ck_assert_ptr_null(b->transform);
  ck_assert_ptr_null(b->priors);
  ck_assert_int_eq(b->transform_type, NGT_TRANSFORM_NONE);
  ck_assert(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ngt_nnet_free(b);
  ngt_nnet_free(a);
  /* exactly one file: no temp file left */
  ck_assert_int_eq(count_dir_entries(), 1);
}
END_TEST

/* The file is readable with plain HDF5 at the documented paths. */
START_TEST(test_layout) {
  ngt_nnet *a = make_model(3);
  const char *p = tpath("layout.h5");
  save_ok(a, p, NULL, 0);
  hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
  ck_assert(f >= 0);
  int v = 0;
  hid_t at = H5Aopen(f, "version", H5P_DEFAULT);
  H5Aread(at, H5T_NATIVE_INT, &v);
  H5Aclose(at);
  ck_assert_int_eq(v, 1);
  hid_t ds = H5Dopen2(f, "/components/003/W", H5P_DEFAULT); /* second affine: 10 -> 12 */
  ck_assert(ds >= 0);
  hid_t sp = H5Dget_space(ds);
  hsize_t d[2];
  ck_assert_int_eq(H5Sget_simple_extent_ndims(sp), 2);
  H5Sget_simple_extent_dims(sp, d, NULL);
  ck_assert(d[0] == 12 && d[1] == 10);
  float *W = malloc(sizeof(float) * 120);
  H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, W);
  ck_assert(memcmp(W, a->params + a->comps[3].w_off, 120 * sizeof(float)) == 0);
  free(W);
  H5Sclose(sp);
  H5Dclose(ds);
  hid_t g = H5Gopen2(f, "/components/004", H5P_DEFAULT);
  int grp = 0, type = 0;
  at = H5Aopen(g, "group", H5P_DEFAULT);
  H5Aread(at, H5T_NATIVE_INT, &grp);
  H5Aclose(at);
  at = H5Aopen(g, "type", H5P_DEFAULT);
  H5Aread(at, H5T_NATIVE_INT, &type);
  H5Aclose(at);
  ck_assert(grp == 3 && type == NGT_COMP_PNORM);
  H5Gclose(g);
  ck_assert(H5Lexists(f, "input_transform", H5P_DEFAULT) > 0);
  ck_assert(H5Lexists(f, "priors", H5P_DEFAULT) > 0);
  ck_assert(H5Lexists(f, "train_state", H5P_DEFAULT) == 0);
  H5Fclose(f);
  ngt_nnet_free(a);
}
END_TEST

START_TEST(test_blobs) {
  ngt_nnet *a = make_model(11);
  float f32[5] = {1.5f, -2, 3, NAN, 1e30f};
  double f64[3] = {0.1, 1e-300, -7};
  int64_t i64[4] = {1, -2, (int64_t)1 << 40, INT64_MIN};
  ngt_blob blobs[4] = {{"lr_state", NGT_BLOB_F32, 5, f32},
                       {"sched", NGT_BLOB_F64, 3, f64},
                       {"rng_counters", NGT_BLOB_I64, 4, i64},
                       {"empty_1", NGT_BLOB_F64, 0, NULL}};
  const char *p = tpath("ckpt.h5");
  save_ok(a, p, blobs, 4);
  ngt_err err = {0};
  void *data = NULL;
  size_t n = 99;
  ck_assert_msg(ngt_nnet_load_blob(p, "lr_state", NGT_BLOB_F32, &data, &n, &err) == 0, "%s",
                err.msg);
  ck_assert_uint_eq(n, 5);
  ck_assert(memcmp(data, f32, sizeof f32) == 0); /* bit-identical, NaN included */
  free(data);
  ck_assert(ngt_nnet_load_blob(p, "sched", NGT_BLOB_F64, &data, &n, &err) == 0);
  ck_assert(n == 3 && memcmp(data, f64, sizeof f64) == 0);
  free(data);
  ck_assert(ngt_nnet_load_blob(p, "rng_counters", NGT_BLOB_I64, &data, &n, &err) == 0);
  ck_assert(n == 4 && memcmp(data, i64, sizeof i64) == 0);
  free(data);
  ck_assert(ngt_nnet_load_blob(p, "empty_1", NGT_BLOB_F64, &data, &n, &err) == 0);
  ck_assert_uint_eq(n, 0);
  ck_assert_ptr_nonnull(data);
  free(data);
  /* wrong type and absent names: NGT_EFORMAT naming the file and the blob */
  data = (void *)0x1;
  ck_assert_int_eq(ngt_nnet_load_blob(p, "sched", NGT_BLOB_I64, &data, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_null(data);
  ck_assert(strstr(err.msg, p) && strstr(err.msg, "/train_state/sched") &&
            strstr(err.msg, "float64") && strstr(err.msg, "int64"));
  ck_assert_int_eq(ngt_nnet_load_blob(p, "lr_state", NGT_BLOB_F64, &data, &n, &err), NGT_EFORMAT);
  ck_assert(strstr(err.msg, "float32"));
  ck_assert_int_eq(ngt_nnet_load_blob(p, "nope", NGT_BLOB_F32, &data, &n, &err), NGT_EFORMAT);
  ck_assert(strstr(err.msg, p) && strstr(err.msg, "/train_state/nope"));
  /* the model itself still loads */
  ngt_nnet *b = NULL;
  ck_assert_msg(ngt_nnet_load(p, &b, &err) == 0, "%s", err.msg);
  ck_assert(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ngt_nnet_free(b);
  /* a model without train_state */
  const char *q = tpath("final.h5");
  save_ok(a, q, NULL, 0);
  ck_assert_int_eq(ngt_nnet_load_blob(q, "sched", NGT_BLOB_F64, &data, &n, &err), NGT_EFORMAT);
  ck_assert(strstr(err.msg, "/train_state/sched") != NULL);
  /* bad blob names / types / duplicates are refused before writing anything */
  const char *r = tpath("bad.h5");
  ngt_blob bad1[1] = {{"has space", NGT_BLOB_F32, 1, f32}};
  ck_assert_int_eq(ngt_nnet_save(a, r, bad1, 1, &err), NGT_EINVAL);
  ck_assert(strstr(err.msg, "has space") != NULL);
  ngt_blob bad2[1] = {{"x", 42, 1, f32}};
  ck_assert_int_eq(ngt_nnet_save(a, r, bad2, 1, &err), NGT_EINVAL);
  ngt_blob bad3[2] = {{"x", NGT_BLOB_F32, 1, f32}, {"x", NGT_BLOB_F32, 1, f32}};
  ck_assert_int_eq(ngt_nnet_save(a, r, bad3, 2, &err), NGT_EINVAL);
  ck_assert(strstr(err.msg, "twice") != NULL);
  ck_assert(access(r, F_OK) != 0);
  ck_assert_int_eq(count_dir_entries(), 2);
  ngt_nnet_free(a);
}
END_TEST

START_TEST(test_byte_identical) {
  ngt_nnet *a = make_model(5), *b = make_model(5);
  double f64[2] = {1, 2};
  ngt_blob blobs[1] = {{"iter", NGT_BLOB_F64, 2, f64}};
  const char *p = tpath("a.h5"), *q = tpath("b.h5");
  save_ok(a, p, blobs, 1);
  sleep(1); /* object timestamps would now differ, if they were stored */
  save_ok(b, q, blobs, 1);
  size_t n1, n2;
  unsigned char *x = read_all(p, &n1), *y = read_all(q, &n2);
  ck_assert_uint_eq(n1, n2);
  ck_assert_msg(memcmp(x, y, n1) == 0, "two saves of the same model differ byte-wise");
  free(x);
  free(y);
  /* and a different model gives a different file */
  ngt_nnet *c = make_model(6);
  save_ok(c, q, blobs, 1);
  x = read_all(p, &n1);
  y = read_all(q, &n2);
  ck_assert(n1 != n2 || memcmp(x, y, n1) != 0);
  free(x);
  free(y);
  ngt_nnet_free(a);
  ngt_nnet_free(b);
  ngt_nnet_free(c);
}
END_TEST

START_TEST(test_save_errors) {
  ngt_nnet *a = make_model(1);
  ngt_err err = {0};
  char p[8192];
  snprintf(p, sizeof p, "%s/no/such/dir/m.h5", g_dir);
  int rc = ngt_nnet_save(a, p, NULL, 0, &err);
  ck_assert_int_eq(rc, NGT_EIO);
  ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "does not exist"), "%s", err.msg);
  /* a directory where the file should go */
  snprintf(p, sizeof p, "%s/adir", g_dir);
  ck_assert(mkdir(p, 0777) == 0);
  rc = ngt_nnet_save(a, p, NULL, 0, &err);
  ck_assert_msg(rc == NGT_EIO && strstr(err.msg, p), "%s", err.msg);
  rmdir(p);
  ck_assert_int_eq(count_dir_entries(), 0); /* no temp file left behind */
  ngt_nnet_free(a);
}
END_TEST

START_TEST(test_bad_files) {
  ngt_nnet *a = make_model(2);
  const char *good = tpath("good.h5");
  save_ok(a, good, NULL, 0);
  size_t n;
  unsigned char *bytes = read_all(good, &n);

  /* missing */
  expect_load_error(tpath("missing.h5"), NGT_EIO, "No such file", NULL);
  /* empty */
  const char *empty = tpath("empty.h5");
  write_all(empty, "", 0);
  expect_load_error(empty, NGT_EFORMAT, "empty", NULL);
  /* random bytes */
  const char *rnd = tpath("random.h5");
  unsigned char junk[4096];
  ngt_rng r = ngt_rng_make(1, NGT_RNG_STREAM_TEST);
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)ngt_rng_u64(&r);
  write_all(rnd, junk, sizeof junk);
  expect_load_error(rnd, NGT_EFORMAT, "not an HDF5 file", NULL);
  /* a text file (e.g. a config passed by mistake) */
  const char *txt = tpath("config.h5");
  write_all(txt, kCfg, strlen(kCfg));
  expect_load_error(txt, NGT_EFORMAT, "not an HDF5 file", NULL);
  /* truncated at several points: always a clear error, never a crash */
  const char *tr = tpath("trunc.h5");
  size_t cuts[] = {n / 2, n - 1, 100, 2000};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    write_all(tr, bytes, cuts[i]);
    ngt_nnet *m = (ngt_nnet *)0x1;
    ngt_err err = {0};
    ck_assert_msg(ngt_nnet_load(tr, &m, &err) != 0, "truncated at %zu should fail", cuts[i]);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, tr) != NULL, "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "truncated") != NULL, "cut %zu: %s", cuts[i], err.msg);
  }
  free(bytes);
  /* a directory */
  expect_load_error(g_dir, NGT_EIO, "directory", NULL);

  /* an HDF5 file that is not a model */
  const char *foreign = tpath("foreign.h5");
  hid_t f = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t d1 = 3;
  hid_t sp = H5Screate_simple(1, &d1, NULL);
  hid_t ds = H5Dcreate2(f, "data", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(ds);
  H5Sclose(sp);
  H5Fclose(f);
  expect_load_error(foreign, NGT_EFORMAT, "not an ngtrain model (attribute 'format' missing)",
                    "written by ngtrain");
  ngt_nnet_free(a);
}
END_TEST

/* Modify a saved model with the HDF5 API. */
static hid_t open_rw(const char *p) {
  hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert(f >= 0);
  return f;
}

static void replace_attr_int(hid_t obj, const char *name, int v) {
  H5Adelete(obj, name);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_NATIVE_INT, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

static void replace_attr_str(hid_t obj, const char *name, const char *s) {
  H5Adelete(obj, name);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(s) + 1);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, s);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

static void replace_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                            hid_t type) {
  ck_assert(H5Ldelete(loc, name, H5P_DEFAULT) >= 0);
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(ds >= 0);
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  float *z = calloc(n, sizeof(float));
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
  free(z);
  H5Dclose(ds);
  H5Sclose(sp);
}

/* Recompute every object's checksum, as if ngtrain had written the tampered file: the
 * structural checks behind the checksums are tested this way. */
static void reseal_obj(hid_t obj);
static herr_t reseal_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  (void)data;
  hid_t o = H5Oopen(g, name, H5P_DEFAULT);
  ck_assert(o >= 0);
  reseal_obj(o);
  H5Oclose(o);
  return 0;
}
static void reseal_obj(hid_t obj) {
  ngt_err err = {0};
  if (H5Iget_type(obj) == H5I_DATASET) {
    hid_t t = H5Dget_type(obj), sp = H5Dget_space(obj);
    size_t n = (size_t)H5Sget_simple_extent_npoints(sp);
    hid_t mt = H5Tget_class(t) == H5T_FLOAT
                   ? (H5Tget_size(t) == 4 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE)
                   : H5T_NATIVE_INT64;
    size_t es = mt == H5T_NATIVE_FLOAT ? 4 : 8;
    void *buf = malloc(n * es + 1);
    ck_assert(n == 0 || H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    ck_assert_msg(ngt_h5_seal(obj, buf, n, es, "resealed", &err) == 0, "%s", err.msg);
    free(buf);
    H5Tclose(t);
    H5Sclose(sp);
  } else {
    hsize_t idx = 0;
    H5Literate(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, reseal_link, NULL);
    ck_assert_msg(ngt_h5_seal(obj, NULL, 0, 0, "resealed", &err) == 0, "%s", err.msg);
  }
}
/* Close f (opened with open_rw and tampered with) after resealing it. */
static void close_resealed(hid_t f) {
  reseal_obj(f);
  ck_assert(H5Fclose(f) >= 0);
}

START_TEST(test_tampered_models) {
  ngt_nnet *a = make_model(4);
  const char *p = tpath("t.h5");
  hid_t f;

  /* wrong W shape: the message names the dataset and both shapes */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  hsize_t wd[2] = {10, 7};
  replace_dataset(f, "/components/000/W", 2, wd, H5T_NATIVE_FLOAT);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/components/000/W has shape [10, 7]",
                    "the config says [10, 16]");

  /* wrong b rank */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  hsize_t bd[2] = {12, 1};
  replace_dataset(f, "/components/003/b", 2, bd, H5T_NATIVE_FLOAT);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/components/003/b has shape [12, 1]", "[12]");

  /* integer W */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  hsize_t wd2[2] = {10, 16};
  replace_dataset(f, "/components/000/W", 2, wd2, H5T_NATIVE_INT);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/components/000/W", "float");

  /* missing b */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  H5Ldelete(f, "/components/006/b", H5P_DEFAULT);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/components/006/b", "missing");

  /* transform shape */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  hsize_t td[2] = {16, 16};
  replace_dataset(f, "input_transform", 2, td, H5T_NATIVE_FLOAT);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/input_transform has shape [16, 16]", "[16, 17]");

  /* priors length, then priors that do not sum to 1 */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  hsize_t pd = 6;
  replace_dataset(f, "priors", 1, &pd, H5T_NATIVE_FLOAT);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/priors has shape [6]", "[7]");
  float pri[7] = {0.5f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f};
  ngt_nnet_set_priors(a, pri);
  save_ok(a, p, NULL, 0);
  expect_load_error(p, NGT_EFORMAT, "/priors sum to 1.1", NULL);
  pri[0] = -0.1f;
  pri[1] = 0.5f;
  ngt_nnet_set_priors(a, pri);
  save_ok(a, p, NULL, 0);
  expect_load_error(p, NGT_EFORMAT, "/priors[0]", "negative");
  pri[0] = 0.4f;
  pri[1] = 0.1f; /* sums to 1 again */
  ngt_nnet_set_priors(a, pri);

  /* NaN and Inf in parameters, in W and b, and in the transform */
  size_t k = a->comps[3].w_off + 2 * 10 + 5; /* W of component 3 at [2, 5] */
  float save = a->params[k];
  a->params[k] = NAN;
  save_ok(a, p, NULL, 0);
  expect_load_error(p, NGT_ENUM, "/components/003/W[2, 5] is NaN", NULL);
  a->params[k] = save;
  size_t kb = a->comps[0].b_off + 4;
  a->params[kb] = INFINITY;
  save_ok(a, p, NULL, 0);
  expect_load_error(p, NGT_ENUM, "/components/000/b[4] is infinite", NULL);
  a->params[kb] = 0;
  a->transform[3] = NAN;
  save_ok(a, p, NULL, 0);
  expect_load_error(p, NGT_ENUM, "/input_transform[0, 3] is NaN", NULL);
  a->transform[3] = 1;

  /* without resealing, the checksums catch every one of these first */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  replace_attr_int(f, "num_classes", 8);
  H5Fclose(f);
  expect_load_error(p, NGT_EFORMAT, "group / fails its checksum", "the file is damaged");

  /* root attributes that disagree with the stored config */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  replace_attr_int(f, "num_classes", 8);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "'num_classes' is 8", "7");

  /* a component group whose type/dims disagree with the config */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  hid_t g = H5Gopen2(f, "/components/004", H5P_DEFAULT);
  replace_attr_int(g, "group", 4);
  H5Gclose(g);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/components/004", "'group' is 4");
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  g = H5Gopen2(f, "/components/001", H5P_DEFAULT);
  replace_attr_int(g, "type", NGT_COMP_PNORM);
  H5Gclose(g);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/components/001",
                    "'type' is 3 (pnorm) but the stored config says 2 (relu)");

  /* an extra component group */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  g = H5Gcreate2(f, "/components/099", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "/components has 12 entries", "11 components");

  /* a stored config that does not parse */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  replace_attr_str(f, "config", "input dim=4\nlayer type=bogus dim=3\noutput dim=7\n");
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, ":2: unknown layer type 'bogus'", NULL);

  /* format and version */
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  replace_attr_int(f, "version", 2);
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "version 2", "version 1");
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  replace_attr_str(f, "format", "ngtrain-shard");
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "'ngtrain-shard'", "shard");
  save_ok(a, p, NULL, 0);
  f = open_rw(p);
  H5Adelete(f, "format");
  close_resealed(f);
  expect_load_error(p, NGT_EFORMAT, "attribute 'format' missing", NULL);

  /* the last good save still loads bit-identically (sanity of the fixture) */
  save_ok(a, p, NULL, 0);
  ngt_nnet *b = NULL;
  ngt_err err = {0};
  ck_assert_msg(ngt_nnet_load(p, &b, &err) == 0, "%s", err.msg);
  ck_assert(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ngt_nnet_free(b);
  ngt_nnet_free(a);
}
END_TEST

/* A model whose config attribute was rewritten by h5py as a variable-length string. */
START_TEST(test_vlen_config_string) {
  ngt_nnet *a = make_model(9);
  const char *p = tpath("v.h5");
  save_ok(a, p, NULL, 0);
  hid_t f = open_rw(p);
  H5Adelete(f, "config");
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t at = H5Acreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  const char *s = a->config_text;
  H5Awrite(at, t, &s);
  H5Aclose(at);
  H5Sclose(sp);
  H5Tclose(t);
  H5Fclose(f);
  ngt_nnet *b = NULL;
  ngt_err err = {0};
  ck_assert_msg(ngt_nnet_load(p, &b, &err) == 0, "%s", err.msg);
  ck_assert_str_eq(b->config_text, a->config_text);
  ngt_nnet_free(b);
  ngt_nnet_free(a);
}
END_TEST

/* XXH64 against the reference implementation's published values. */
START_TEST(test_xxh64) {
  const char *q = "Nobody inspects the spammish repetition"; /* 39 bytes: the 32-byte loop */
  ck_assert_uint_eq(ngt_xxh64("", 0, 0), 0xEF46DB3751D8E999ULL);
  ck_assert_uint_eq(ngt_xxh64("abc", 3, 0), 0x44BC2CF5AD770999ULL);
  ck_assert_uint_eq(ngt_xxh64(q, strlen(q), 0), 0xFBCEA83C8A378BF1ULL);
}
END_TEST

/* Changes made with the HDF5 API (valid HDF5, wrong contents) fail their checksum, named. */
START_TEST(test_checksums) {
  ngt_nnet *a = make_model(12);
  double f64[3] = {0.5, 1, 2};
  ngt_blob blobs[1] = {{"ngstate", NGT_BLOB_F64, 3, f64}};
  const char *p = tpath("c.h5");
  /* one weight changed in place */
  save_ok(a, p, blobs, 1);
  hid_t f = open_rw(p);
  hid_t ds = H5Dopen2(f, "/components/003/W", H5P_DEFAULT);
  float w[12 * 10];
  ck_assert(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0);
  w[17] += 1.0f;
  ck_assert(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0);
  H5Dclose(ds);
  H5Fclose(f);
  expect_load_error(p, NGT_EFORMAT, "dataset /components/003/W fails its checksum (stored 0x",
                    "the file is damaged; restore it from a copy or delete it");
  /* the optimizer state of a checkpoint: the model load and the blob load both refuse */
  save_ok(a, p, blobs, 1);
  f = open_rw(p);
  ds = H5Dopen2(f, "/train_state/ngstate", H5P_DEFAULT);
  double z[3] = {0.5, 1, 2.0000000001};
  ck_assert(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) >= 0);
  H5Dclose(ds);
  H5Fclose(f);
  expect_load_error(p, NGT_EFORMAT, "dataset /train_state/ngstate fails its checksum", NULL);
  ngt_err err = {0};
  void *data = (void *)0x1;
  size_t n = 0;
  ck_assert_int_eq(ngt_nnet_load_blob(p, "ngstate", NGT_BLOB_F64, &data, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_null(data);
  ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "/train_state/ngstate fails its checksum"),
                "%s", err.msg);
  /* a checksum attribute removed from a file in the checksummed format */
  save_ok(a, p, blobs, 1);
  f = open_rw(p);
  H5Adelete(f, NGT_H5_CHECKSUM_ATTR);
  H5Fclose(f);
  expect_load_error(p, NGT_EFORMAT, "/ has no checksum", "damaged");
  save_ok(a, p, blobs, 1);
  f = open_rw(p);
  hid_t g = H5Gopen2(f, "/components/002", H5P_DEFAULT);
  H5Adelete(g, NGT_H5_CHECKSUM_ATTR);
  H5Gclose(g);
  H5Fclose(f);
  expect_load_error(p, NGT_EFORMAT, "/components/002 has no checksum", "damaged");

  /* A file as ngtrain wrote it before checksums (HDF5 superblock 0, no ngt_checksum):
   * read, unchecked, with a warning. Built by copying a model into a default-format file. */
  save_ok(a, p, blobs, 1);
  const char *old = tpath("old.h5");
  hid_t src = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  H5Pset_obj_track_times(fcpl, 0);
  hid_t dst = H5Fcreate(old, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  H5Pclose(fcpl);
  const char *objs[] = {"components", "input_transform", "priors", "train_state"};
  for (int i = 0; i < 4; i++)
    ck_assert(H5Ocopy(src, objs[i], dst, objs[i], H5P_DEFAULT, H5P_DEFAULT) >= 0);
  ck_assert(ngt_h5_attr_write_str(dst, "format", "ngtrain-model", old, &err) == 0);
  ck_assert(ngt_h5_attr_write_int(dst, "version", 1, old, &err) == 0);
  ck_assert(ngt_h5_attr_write_str(dst, "config", a->config_text, old, &err) == 0);
  const char *ints[] = {"feat_dim", "ctx_left", "ctx_right", "num_classes", "num_params"};
  for (int i = 0; i < 5; i++) {
    long long v;
    ck_assert(ngt_h5_attr_read_i64(src, ints[i], &v, p, &err) == 0);
    ck_assert(ngt_h5_attr_write_i64(dst, ints[i], v, old, &err) == 0);
  }
  H5Fclose(src);
  const char *strip[] = {"/components",       "/components/000",  "/components/003",
                         "/components/003/W", "/input_transform", "/train_state/ngstate"};
  for (int i = 0; i < 6; i++) H5Adelete_by_name(dst, strip[i], NGT_H5_CHECKSUM_ATTR, H5P_DEFAULT);
  H5Fclose(dst);
  ngt_nnet *b = NULL;
  ck_assert_msg(ngt_nnet_load(old, &b, &err) == 0, "%s", err.msg);
  ck_assert(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  ngt_nnet_free(b);
  ck_assert_msg(ngt_nnet_load_blob(old, "ngstate", NGT_BLOB_F64, &data, &n, &err) == 0, "%s",
                err.msg);
  ck_assert(n == 3 && memcmp(data, f64, sizeof f64) == 0);
  free(data);
  ngt_nnet_free(a);
}
END_TEST

/* Load path (model, and for a checkpoint every blob) and compare with the original:
 * returns 0 if identical, 1 if refused (err filled), and fails the test on a silent
 * difference. */
static int load_compare(const char *path, const ngt_nnet *a, const ngt_blob *blobs, int nb,
                        ngt_err *err, size_t off) {
  ngt_nnet *m = NULL;
  if (ngt_nnet_load(path, &m, err) != 0) return 1;
  int same = m->num_params == a->num_params &&
             memcmp(m->params, a->params, a->num_params * sizeof(float)) == 0 &&
             strcmp(m->config_text, a->config_text) == 0 &&
             m->transform_type == a->transform_type &&
             memcmp(m->transform, a->transform,
                    sizeof(float) * (size_t)a->input_dim * (size_t)(a->input_dim + 1)) == 0 &&
             m->priors &&
             memcmp(m->priors, a->priors, sizeof(float) * (size_t)a->num_classes) == 0;
  ngt_nnet_free(m);
  ck_assert_msg(same, "byte flip at offset %zu: the model loaded but differs from the saved one",
                off);
  for (int i = 0; i < nb; i++) {
    static const size_t es[] = {0, 4, 8, 8};
    void *d = NULL;
    size_t n = 0;
    if (ngt_nnet_load_blob(path, blobs[i].name, blobs[i].type, &d, &n, err) != 0) {
      ck_assert_msg(0, "byte flip at offset %zu: the model loaded but blob %s did not: %s", off,
                    blobs[i].name, err->msg);
    }
    ck_assert_msg(n == blobs[i].n && memcmp(d, blobs[i].data, n * es[blobs[i].type]) == 0,
                  "byte flip at offset %zu: /train_state/%s loaded but differs", off,
                  blobs[i].name);
    free(d);
  }
  return 0;
}

typedef struct flip_counts {
  int offsets, harmless, ngt_sum, h5_sum, other, stride;
} flip_counts;

/* Flip (xor 0xff) one byte at every stride-th offset of file src (stride 7, or
 * NGT_FLIP_STRIDE=1 for every offset: ~50000 loads, minutes), and 256 runs of 64 bytes at
 * offsets from a fixed seed: every load must fail naming the file, or give the original
 * exactly. */
static flip_counts flip_all(const char *src, const ngt_nnet *a, const ngt_blob *blobs, int nb,
                            uint64_t seed) {
  flip_counts c = {0};
  size_t n;
  unsigned char *orig = read_all(src, &n), *buf = malloc(n);
  const char *p = tpath("flipped.h5");
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_TEST);
  const char *st = getenv("NGT_FLIP_STRIDE");
  size_t stride = st && atoi(st) > 0 ? (size_t)atoi(st) : 7;
  c.stride = (int)stride;
  size_t nsingle = (n + stride - 1) / stride;
  for (size_t k = 0; k < nsingle + 256; k++) {
    memcpy(buf, orig, n);
    size_t off = k * stride, len = 1;
    if (k >= nsingle) { /* a 64-byte run, as in the damaged-checkpoint report */
      len = 64;
      off = (size_t)(ngt_rng_u64(&r) % (n - len));
    }
    for (size_t i = 0; i < len; i++) buf[off + i] ^= 0xff;
    write_all(p, buf, n);
    ngt_err err = {0};
    c.offsets++;
    if (load_compare(p, a, blobs, nb, &err, off) == 0) {
      if (getenv("NGT_FLIP_VERBOSE")) fprintf(stderr, "flip %zu+%zu: harmless\n", off, len);
      c.harmless++;
      continue;
    }
    ck_assert_msg(strstr(err.msg, p) != NULL, "flip at %zu: message must name the file: %s", off,
                  err.msg);
    if (strstr(err.msg, "fails its checksum") || strstr(err.msg, "has no checksum")) c.ngt_sum++;
    else if (strstr(err.msg, "checksum"))
      c.h5_sum++;
    else
      c.other++;
    if (getenv("NGT_FLIP_VERBOSE")) fprintf(stderr, "flip %zu+%zu: %s\n", off, len, err.msg);
  }
  free(orig);
  free(buf);
  return c;
}

START_TEST(test_byte_flips) {
  ngt_nnet *a = make_model(13);
  double f64[40];
  int64_t i64[3] = {5, 77, -1};
  for (int i = 0; i < 40; i++) f64[i] = 1.0 / (i + 1);
  ngt_blob blobs[2] = {{"iter", NGT_BLOB_I64, 3, i64}, {"ngstate", NGT_BLOB_F64, 40, f64}};
  const char *model = tpath("final.h5"), *ckpt = tpath("5.h5");
  save_ok(a, model, NULL, 0);
  save_ok(a, ckpt, blobs, 2);
  flip_counts m = flip_all(model, a, NULL, 0, 1);
  flip_counts k = flip_all(ckpt, a, blobs, 2, 2);
  fprintf(stderr,
          "byte flips, final model: %d loads, %d refused by an ngtrain checksum, %d by an HDF5 "
          "metadata checksum, %d by another HDF5 or format error, %d harmless (identical "
          "model)\n"
          "byte flips, checkpoint:  %d loads, %d refused by an ngtrain checksum, %d by an HDF5 "
          "metadata checksum, %d by another HDF5 or format error, %d harmless (identical "
          "model and state)\n",
          m.offsets, m.ngt_sum, m.h5_sum, m.other, m.harmless, k.offsets, k.ngt_sum, k.h5_sum,
          k.other, k.harmless);
  /* the flips in the parameter bytes are caught by ngtrain's checksums */
  ck_assert_int_ge(m.ngt_sum * m.stride, (int)a->num_params * 4);
  ck_assert_int_gt(m.h5_sum, 0);
  ngt_nnet_free(a);
}
END_TEST

static Suite *nnet_io_suite(void) {
  Suite *s = suite_create("nnet_io");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 600);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_round_trip);
  tcase_add_test(tc, test_layout);
  tcase_add_test(tc, test_blobs);
  tcase_add_test(tc, test_byte_identical);
  tcase_add_test(tc, test_save_errors);
  tcase_add_test(tc, test_bad_files);
  tcase_add_test(tc, test_tampered_models);
  tcase_add_test(tc, test_vlen_config_string);
  tcase_add_test(tc, test_xxh64);
  tcase_add_test(tc, test_checksums);
  tcase_add_test(tc, test_byte_flips);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the tampering above provokes HDF5 errors */
  SRunner *sr = srunner_create(nnet_io_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}

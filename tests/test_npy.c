/* test_npy.c — .npy headers (v1, v2, v3) of every supported dtype built byte by byte,
 * conversion and range checks, streaming across conversion blocks, and every refused
 * input (Fortran order, unsupported/big-endian dtypes, malformed headers, truncation). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/npy.h"

static char g_dir[256];

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ngt_npy_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}
static void teardown(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}
static const char *tpath(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
  return buf;
}

/* Write an .npy with the given dict text, padded as numpy does (total % 64 == 0, '\n'). */
static void write_npy(const char *path, int major, const char *dict, const void *data,
                      size_t nbytes) {
  char hdr[4096];
  size_t pre = major == 1 ? 10 : 12;
  size_t len = strlen(dict);
  size_t total = pre + len + 1;
  size_t pad = (64 - total % 64) % 64;
  memcpy(hdr, dict, len);
  memset(hdr + len, ' ', pad);
  hdr[len + pad] = '\n';
  size_t hlen = len + pad + 1;
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  unsigned char p[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0};
  if (major == 1) {
    p[8] = (unsigned char)(hlen & 255);
    p[9] = (unsigned char)(hlen >> 8);
  } else {
    for (int i = 0; i < 4; i++) p[8 + i] = (unsigned char)(hlen >> (8 * i));
  }
  fwrite(p, 1, pre, f);
  fwrite(hdr, 1, hlen, f);
  if (nbytes) fwrite(data, 1, nbytes, f);
  fclose(f);
}

static int open_err(const char *path, ngt_err *err) {
  ngt_npy *a = NULL;
  int rc = ngt_npy_open(path, &a, err);
  ngt_npy_close(a);
  return rc;
}

START_TEST(test_every_dtype) {
  ngt_err err = {0};
  /* values -3..4 in every dtype that can hold them (unsigned: 0..7) */
  struct {
    const char *descr;
    int size;
    int is_signed;
    int is_float;
  } dt[] = {{"<f4", 4, 1, 1}, {"<f8", 8, 1, 1}, {"|i1", 1, 1, 0}, {"<i2", 2, 1, 0},
            {"<i4", 4, 1, 0}, {"<i8", 8, 1, 0}, {"|u1", 1, 0, 0}, {"<u2", 2, 0, 0},
            {"<u4", 4, 0, 0}, {"<u8", 8, 0, 0}, {"|b1", 1, 0, 0}, {"=f4", 4, 1, 1}};
  for (size_t d = 0; d < sizeof dt / sizeof dt[0]; d++) {
    unsigned char buf[64];
    double vals[8];
    for (int i = 0; i < 8; i++) {
      double v = dt[d].is_signed ? i - 3 : i;
      if (!strcmp(dt[d].descr, "|b1")) v = i % 2;
      if (dt[d].is_float) v += 0.5;
      vals[i] = v;
      unsigned char *p = buf + i * dt[d].size;
      if (dt[d].is_float && dt[d].size == 4) {
        float f = (float)v;
        memcpy(p, &f, 4);
      } else if (dt[d].is_float)
        memcpy(p, &v, 8);
      else {
        int64_t iv = (int64_t)v;
        for (int k = 0; k < dt[d].size; k++) p[k] = (unsigned char)((uint64_t)iv >> (8 * k));
      }
    }
    char dict[200];
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (2, 4), }",
             dt[d].descr);
    int major = 1 + (int)(d % 3); /* v1, v2, v3 in turn */
    write_npy(tpath("a.npy"), major, dict, buf, (size_t)(8 * dt[d].size));
    ngt_npy *a;
    ck_assert_msg(ngt_npy_open(tpath("a.npy"), &a, &err) == 0, "%s: %s", dt[d].descr, err.msg);
    ck_assert_int_eq(a->major, major);
    ck_assert_int_eq(a->ndim, 2);
    ck_assert_int_eq(a->shape[0], 2);
    ck_assert_int_eq(a->shape[1], 4);
    ck_assert_int_eq(a->numel, 8);
    ck_assert_int_eq(a->itemsize, dt[d].size);
    ck_assert_int_eq(a->data_offset % 64, 0);
    float f[8];
    ck_assert_int_eq(ngt_npy_read_f32(a, 0, 8, f, &err), 0);
    for (int i = 0; i < 8; i++) ck_assert_float_eq(f[i], (float)vals[i]);
    ck_assert_int_eq(ngt_npy_read_f32(a, 5, 2, f, &err), 0); /* partial read */
    ck_assert_float_eq(f[0], (float)vals[5]);
    ck_assert_float_eq(f[1], (float)vals[6]);
    int32_t i32[8];
    int64_t i64[8];
    if (dt[d].is_float) {
      ck_assert_int_eq(ngt_npy_read_i32(a, 0, 8, i32, &err), NGT_EFORMAT);
      ck_assert_ptr_nonnull(strstr(err.msg, "floating point"));
      ck_assert_int_eq(ngt_npy_read_i64(a, 0, 8, i64, &err), NGT_EFORMAT);
    } else {
      ck_assert_int_eq(ngt_npy_read_i32(a, 0, 8, i32, &err), 0);
      ck_assert_int_eq(ngt_npy_read_i64(a, 0, 8, i64, &err), 0);
      for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(i32[i], (int32_t)vals[i]);
        ck_assert_int_eq(i64[i], (int64_t)vals[i]);
      }
    }
    /* out of range request */
    ck_assert_int_eq(ngt_npy_read_f32(a, 4, 5, f, &err), NGT_EINVAL);
    ngt_npy_close(a);
  }
}
END_TEST

START_TEST(test_shapes_and_streaming) {
  ngt_err err = {0};
  /* 1-D, scalar, zero-length, a 3-D array, double quotes and key order */
  int32_t v[3] = {7, -8, 9};
  write_npy(tpath("v.npy"), 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", v, 12);
  ngt_npy *a;
  ck_assert_int_eq(ngt_npy_open(tpath("v.npy"), &a, &err), 0);
  ck_assert_int_eq(a->ndim, 1);
  ck_assert_int_eq(a->numel, 3);
  char sh[64];
  ngt_npy_shape_str(a, sh, sizeof sh);
  ck_assert_str_eq(sh, "(3,)");
  int32_t o[3];
  ck_assert_int_eq(ngt_npy_read_i32(a, 0, 3, o, &err), 0);
  ck_assert_int_eq(o[1], -8);
  ngt_npy_close(a);

  double s = 2.5;
  write_npy(tpath("s.npy"), 1, "{\"shape\": (), \"fortran_order\": False, \"descr\": \"<f8\"}", &s,
            8);
  ck_assert_int_eq(ngt_npy_open(tpath("s.npy"), &a, &err), 0);
  ck_assert_int_eq(a->ndim, 0);
  ck_assert_int_eq(a->numel, 1);
  float f;
  ck_assert_int_eq(ngt_npy_read_f32(a, 0, 1, &f, &err), 0);
  ck_assert_float_eq(f, 2.5f);
  ngt_npy_close(a);

  write_npy(tpath("z.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 40), }",
            NULL, 0);
  ck_assert_int_eq(ngt_npy_open(tpath("z.npy"), &a, &err), 0);
  ck_assert_int_eq(a->numel, 0);
  ck_assert_int_eq(a->shape[1], 40);
  ngt_npy_close(a);

  /* more elements than one conversion block, f8 -> f32 */
  const int n = 150001;
  double *big = malloc(sizeof(double) * n);
  for (int i = 0; i < n; i++) big[i] = i * 0.5;
  write_npy(tpath("big.npy"), 2,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (150001, 1, 1), }", big,
            sizeof(double) * n);
  free(big);
  ck_assert_int_eq(ngt_npy_open(tpath("big.npy"), &a, &err), 0);
  ck_assert_int_eq(a->ndim, 3);
  float *out = malloc(sizeof(float) * n);
  ck_assert_int_eq(ngt_npy_read_f32(a, 0, n, out, &err), 0);
  for (int i = 0; i < n; i += 997) ck_assert_float_eq(out[i], (float)(i * 0.5));
  ck_assert_float_eq(out[n - 1], (float)((n - 1) * 0.5));
  ck_assert_int_eq(ngt_npy_read_f32(a, 70000, 3, out, &err), 0);
  ck_assert_float_eq(out[2], 35001.0f);
  free(out);
  ngt_npy_close(a);
}
END_TEST

START_TEST(test_integer_ranges) {
  ngt_err err = {0};
  int64_t v[4] = {0, 5, (int64_t)1 << 31, -((int64_t)1 << 31) - 1};
  write_npy(tpath("l.npy"), 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", v, 32);
  ngt_npy *a;
  ck_assert_int_eq(ngt_npy_open(tpath("l.npy"), &a, &err), 0);
  int32_t o[4];
  ck_assert_int_eq(ngt_npy_read_i32(a, 0, 2, o, &err), 0);
  ck_assert_int_eq(o[1], 5);
  ck_assert_int_eq(ngt_npy_read_i32(a, 0, 4, o, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "element 2 = 2147483648 does not fit int32"));
  ck_assert_ptr_nonnull(strstr(err.msg, "l.npy"));
  ck_assert_int_eq(ngt_npy_read_i32(a, 3, 1, o, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "-2147483649"));
  int64_t o64[4];
  ck_assert_int_eq(ngt_npy_read_i64(a, 0, 4, o64, &err), 0);
  ck_assert_int_eq(o64[3], v[3]);
  ngt_npy_close(a);

  uint64_t u[2] = {1, UINT64_MAX};
  write_npy(tpath("u.npy"), 1, "{'descr': '<u8', 'fortran_order': False, 'shape': (2,), }", u, 16);
  ck_assert_int_eq(ngt_npy_open(tpath("u.npy"), &a, &err), 0);
  ck_assert_int_eq(ngt_npy_read_i64(a, 0, 2, o64, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "does not fit int64"));
  uint32_t u4[1] = {4000000000u};
  ngt_npy_close(a);
  write_npy(tpath("u4.npy"), 1, "{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }", u4,
            4);
  ck_assert_int_eq(ngt_npy_open(tpath("u4.npy"), &a, &err), 0);
  ck_assert_int_eq(ngt_npy_read_i32(a, 0, 1, o, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "4000000000"));
  ngt_npy_close(a);
}
END_TEST

START_TEST(test_refused) {
  ngt_err err = {0};
  float d[4] = {1, 2, 3, 4};
  write_npy(tpath("f.npy"), 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", d,
            16);
  ck_assert_int_eq(open_err(tpath("f.npy"), &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "Fortran"));
  ck_assert_ptr_nonnull(strstr(err.msg, "ascontiguousarray"));
  ck_assert_ptr_nonnull(strstr(err.msg, "f.npy"));

  const char *bad_dtypes[] = {"<c8", "<U10", "<f2", "|O", "<M8[ns]", "<V4", "S3"};
  for (size_t i = 0; i < sizeof bad_dtypes / sizeof bad_dtypes[0]; i++) {
    char dict[200];
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (2,), }",
             bad_dtypes[i]);
    write_npy(tpath("d.npy"), 1, dict, d, 16);
    ck_assert_int_eq(open_err(tpath("d.npy"), &err), NGT_EFORMAT);
    ck_assert_msg(strstr(err.msg, "unsupported dtype") != NULL, "%s: %s", bad_dtypes[i], err.msg);
  }
  write_npy(tpath("be.npy"), 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", d, 8);
  ck_assert_int_eq(open_err(tpath("be.npy"), &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "big-endian"));
  write_npy(tpath("st.npy"), 1,
            "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, "
            "'shape': (2,), }",
            d, 16);
  ck_assert_int_eq(open_err(tpath("st.npy"), &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "structured"));

  const char *malformed[] = {"{'descr': '<f4', 'fortran_order': False}", /* no shape */
                             "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}",
                             "not a dict at all",
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
                             "{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}"};
  for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
    write_npy(tpath("m.npy"), 1, malformed[i], d, 16);
    ck_assert_int_eq(open_err(tpath("m.npy"), &err), NGT_EFORMAT);
    ck_assert_msg(strstr(err.msg, "malformed header") != NULL, "%s: %s", malformed[i], err.msg);
  }
  /* truncated data: shape says 4 floats, only 3 present */
  write_npy(tpath("t.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", d, 12);
  ck_assert_int_eq(open_err(tpath("t.npy"), &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
  ck_assert_ptr_nonnull(strstr(err.msg, "(4,)"));
  /* wrong magic, unknown version, header longer than the file */
  FILE *f = fopen(tpath("x.npy"), "wb");
  fputs("PK\x03\x04 this is a zip", f);
  fclose(f);
  ck_assert_int_eq(open_err(tpath("x.npy"), &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "wrong magic"));
  unsigned char v9[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 9, 0, 4, 0, '{', '}', ' ', '\n'};
  f = fopen(tpath("v9.npy"), "wb");
  fwrite(v9, 1, 14, f);
  fclose(f);
  ck_assert_int_eq(open_err(tpath("v9.npy"), &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "version 9.0"));
  unsigned char lh[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f, '{', '}'};
  f = fopen(tpath("lh.npy"), "wb");
  fwrite(lh, 1, 12, f);
  fclose(f);
  ck_assert_int_eq(open_err(tpath("lh.npy"), &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "header length"));
  ck_assert_int_eq(open_err(tpath("missing.npy"), &err), NGT_EIO);
  ck_assert_ptr_nonnull(strstr(err.msg, "missing.npy"));
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("npy");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_every_dtype);
  tcase_add_test(tc, test_shapes_and_streaming);
  tcase_add_test(tc, test_integer_ranges);
  tcase_add_test(tc, test_refused);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}

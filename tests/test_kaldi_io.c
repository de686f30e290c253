/* test_kaldi_io.c — Kaldi tables: archives built byte by byte from the binary format
 * ("\0B", FM/DM/CM/CM2/CM3 tokens, size byte 4 + little-endian int32), text archives,
 * scp offsets and ranges, compressed matrices decoded against the documented formulas,
 * the writer (round trip and exact bytes), alignments, and every bad-input message. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ngtrain/fileio.h"
#include "ngtrain/kaldi_io.h"

static char g_dir[256];

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ngt_kaldi_io_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}
static void teardown(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}
static const char *tpath(const char *name) {
  static char buf[4][512];
  static int k = 0;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

/* ---- a tiny byte builder ---- */
typedef struct bytes {
  unsigned char d[1 << 16];
  size_t n;
} bytes;
static void put(bytes *b, const void *p, size_t n) {
  ck_assert_uint_le(b->n + n, sizeof b->d);
  memcpy(b->d + b->n, p, n);
  b->n += n;
}
static void put_s(bytes *b, const char *s) { put(b, s, strlen(s)); }
static void put_u8(bytes *b, unsigned v) {
  unsigned char c = (unsigned char)v;
  put(b, &c, 1);
}
static void put_u16(bytes *b, unsigned v) {
  put_u8(b, v & 255);
  put_u8(b, (v >> 8) & 255);
}
static void put_i32(bytes *b, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int i = 0; i < 4; i++) put_u8(b, (u >> (8 * i)) & 255);
}
static void put_f32(bytes *b, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  put_i32(b, (int32_t)u);
}
static void put_f64(bytes *b, double f) {
  uint64_t u;
  memcpy(&u, &f, 8);
  put_i32(b, (int32_t)(uint32_t)u);
  put_i32(b, (int32_t)(uint32_t)(u >> 32));
}
static void put_sized_i32(bytes *b, int32_t v) {
  put_u8(b, 4);
  put_i32(b, v);
}
/* "key \0BFM " rows cols data; returns the offset of the "\0B" */
static size_t put_fm(bytes *b, const char *key, int rows, int cols, const float *data) {
  put_s(b, key);
  put_s(b, " ");
  size_t off = b->n;
  put(b, "\0B", 2);
  put_s(b, "FM ");
  put_sized_i32(b, rows);
  put_sized_i32(b, cols);
  for (int i = 0; i < rows * cols; i++) put_f32(b, data[i]);
  return off;
}
static void write_file(const char *path, const void *d, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(d, 1, n, f), n);
  fclose(f);
}
static void write_text(const char *path, const char *s) { write_file(path, s, strlen(s)); }

/* Read the whole table into counts; returns rc of the failing call or 0. */
static int read_all(const char *rspec, int with_data, int *n, ngt_err *err) {
  ngt_kaldi_reader *r;
  *n = 0;
  int rc = ngt_kaldi_reader_open(rspec, &r, err);
  if (rc) return rc;
  ngt_kaldi_entry e;
  while ((rc = ngt_kaldi_reader_next(r, with_data, &e, err)) == 1) (*n)++;
  ngt_kaldi_reader_close(r);
  return rc;
}

/* ---------------------------------------------------------------------------------- */

START_TEST(test_binary_fm_dm) {
  bytes b = {.n = 0};
  float a[6] = {1, 2, 3, 4, 5, 6.5f};
  size_t off1 = put_fm(&b, "utt1", 2, 3, a);
  put_s(&b, "utt2 ");
  size_t off2 = b.n;
  put(&b, "\0B", 2);
  put_s(&b, "DM ");
  put_sized_i32(&b, 1);
  put_sized_i32(&b, 2);
  put_f64(&b, -0.25);
  put_f64(&b, 1e10);
  put_s(&b, "empty ");
  put(&b, "\0B", 2);
  put_s(&b, "FM ");
  put_sized_i32(&b, 0);
  put_sized_i32(&b, 0);
  write_file(tpath("a.ark"), b.d, b.n);

  ngt_err err = {0};
  ngt_kaldi_reader *r;
  char spec[600];
  snprintf(spec, sizeof spec, "ark:%s", tpath("a.ark"));
  ck_assert_int_eq(ngt_kaldi_reader_open(spec, &r, &err), 0);
  ngt_kaldi_entry e;
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "utt1");
  ck_assert_int_eq(e.format, NGT_KALDI_FM);
  ck_assert_int_eq(e.mat.rows, 2);
  ck_assert_int_eq(e.mat.cols, 3);
  ck_assert_int_eq(e.offset, (int64_t)off1);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(e.mat.data[i], a[i]);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "utt2");
  ck_assert_int_eq(e.format, NGT_KALDI_DM);
  ck_assert_int_eq(e.offset, (int64_t)off2);
  ck_assert_int_eq(e.mat.rows, 1);
  ck_assert_int_eq(e.mat.cols, 2);
  ck_assert_float_eq(e.mat.data[0], -0.25f);
  ck_assert_float_eq(e.mat.data[1], 1e10f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "empty");
  ck_assert_int_eq(e.mat.rows, 0);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 0);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 0);
  ngt_kaldi_reader_close(r);

  /* plain path = ark; shape-only pass */
  ck_assert_int_eq(ngt_kaldi_reader_open(tpath("a.ark"), &r, &err), 0);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 0, &e, &err), 1);
  ck_assert_ptr_null(e.mat.data);
  ck_assert_int_eq(e.mat.rows, 2);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 0, &e, &err), 1);
  ck_assert_int_eq(e.mat.cols, 2);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "empty");
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 0, &e, &err), 0);
  ngt_kaldi_reader_close(r);
}
END_TEST

/* Reference decoders written from the documented formulas (in double). */
static double ref_p(double mn, double range, unsigned v) { return mn + range * v / 65535.0; }
static double ref_cm(double p0, double p25, double p75, double p100, unsigned c) {
  if (c <= 64) return p0 + (p25 - p0) * c / 64.0;
  if (c <= 192) return p25 + (p75 - p25) * (c - 64) / 128.0;
  return p75 + (p100 - p75) * (c - 192) / 63.0;
}

START_TEST(test_compressed) {
  /* CM: 4 rows x 2 cols. Column 0 percentiles chosen so that P(v) = v (min 0, range
   * 65535) and a byte c decodes to c itself: p0=0, p25=64, p75=192, p100=255. */
  bytes b = {.n = 0};
  put_s(&b, "cm ");
  put(&b, "\0B", 2);
  put_s(&b, "CM ");
  put_f32(&b, 0.0f);
  put_f32(&b, 65535.0f);
  put_i32(&b, 4);
  put_i32(&b, 2);
  put_u16(&b, 0);
  put_u16(&b, 64);
  put_u16(&b, 192);
  put_u16(&b, 255); /* col 0 */
  put_u16(&b, 1000);
  put_u16(&b, 2000);
  put_u16(&b, 4000);
  put_u16(&b, 5000); /* col 1 */
  unsigned char col0[4] = {0, 32, 100, 200}, col1[4] = {255, 64, 192, 7};
  put(&b, col0, 4);
  put(&b, col1, 4); /* column-major */
  /* CM2: 2 x 3, min -1, range 2 */
  put_s(&b, "cm2 ");
  put(&b, "\0B", 2);
  put_s(&b, "CM2 ");
  put_f32(&b, -1.0f);
  put_f32(&b, 2.0f);
  put_i32(&b, 2);
  put_i32(&b, 3);
  unsigned v2[6] = {0, 65535, 32768, 1, 65534, 12345};
  for (int i = 0; i < 6; i++) put_u16(&b, v2[i]); /* row-major */
  /* CM3: 3 x 2, min 10, range 255 -> x = 10 + v */
  put_s(&b, "cm3 ");
  put(&b, "\0B", 2);
  put_s(&b, "CM3 ");
  put_f32(&b, 10.0f);
  put_f32(&b, 255.0f);
  put_i32(&b, 3);
  put_i32(&b, 2);
  unsigned char v3[6] = {0, 255, 1, 2, 128, 77};
  put(&b, v3, 6);
  /* an empty compressed matrix */
  put_s(&b, "cm_empty ");
  put(&b, "\0B", 2);
  put_s(&b, "CM ");
  put_f32(&b, 0.0f);
  put_f32(&b, 0.0f);
  put_i32(&b, 0);
  put_i32(&b, 0);
  write_file(tpath("c.ark"), b.d, b.n);

  ngt_err err = {0};
  ngt_kaldi_reader *r;
  ck_assert_int_eq(ngt_kaldi_reader_open(tpath("c.ark"), &r, &err), 0);
  ngt_kaldi_entry e;
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "cm");
  ck_assert_int_eq(e.format, NGT_KALDI_CM);
  ck_assert_int_eq(e.mat.rows, 4);
  ck_assert_int_eq(e.mat.cols, 2);
  /* column 0: known values, byte c -> c (to float precision of P) */
  for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(NGT_AT(e.mat, i, 0), col0[i], 2e-3);
  /* column 1: against the reference formula */
  double p0 = ref_p(0, 65535, 1000), p25 = ref_p(0, 65535, 2000), p75 = ref_p(0, 65535, 4000),
         p100 = ref_p(0, 65535, 5000);
  for (int i = 0; i < 4; i++)
    ck_assert_double_eq_tol(NGT_AT(e.mat, i, 1), ref_cm(p0, p25, p75, p100, col1[i]), 1e-3);
  /* the three pieces of the interpolation, by hand */
  ck_assert_double_eq_tol(NGT_AT(e.mat, 0, 1), 5000.0, 1e-3); /* 255 -> p100 */
  ck_assert_double_eq_tol(NGT_AT(e.mat, 1, 1), 2000.0, 1e-3); /* 64 -> p25 */
  ck_assert_double_eq_tol(NGT_AT(e.mat, 2, 1), 4000.0, 1e-3); /* 192 -> p75 */
  ck_assert_double_eq_tol(NGT_AT(e.mat, 3, 1), 1000.0 + 1000.0 * 7 / 64, 1e-3);

  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "cm2");
  ck_assert_int_eq(e.format, NGT_KALDI_CM2);
  ck_assert_int_eq(e.mat.rows, 2);
  ck_assert_int_eq(e.mat.cols, 3);
  ck_assert_float_eq(e.mat.data[0], -1.0f);
  ck_assert_double_eq_tol(e.mat.data[1], 1.0, 1e-6);
  for (int i = 0; i < 6; i++)
    ck_assert_double_eq_tol(e.mat.data[i], -1.0 + 2.0 * v2[i] / 65535.0, 1e-6);

  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "cm3");
  ck_assert_int_eq(e.format, NGT_KALDI_CM3);
  ck_assert_int_eq(e.mat.rows, 3);
  for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(e.mat.data[i], 10.0 + v3[i], 1e-4);

  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "cm_empty");
  ck_assert_int_eq(e.mat.rows, 0);
  ck_assert_int_eq(e.mat.cols, 0);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 0);
  ngt_kaldi_reader_close(r);

  /* direct decoder: a payload of the wrong size is refused */
  float out[8];
  ck_assert_int_eq(ngt_kaldi_decompress(NGT_KALDI_CM3, b.d + 0, 10, out, 1, 1, &err), NGT_EFORMAT);
}
END_TEST

START_TEST(test_text_and_mixed) {
  bytes b = {.n = 0};
  put_s(&b, "t1  [\n  1 2 3 \n  4 5 6e-1 ]\n");
  float a[2] = {7, 8};
  put_fm(&b, "b1", 1, 2, a);
  put_s(&b, "\nt_empty  [ ]\nt2 [ -1.5 2\n 3 4 ]\n");
  write_file(tpath("t.ark"), b.d, b.n);
  ngt_err err = {0};
  ngt_kaldi_reader *r;
  ck_assert_int_eq(ngt_kaldi_reader_open(tpath("t.ark"), &r, &err), 0);
  ngt_kaldi_entry e;
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "t1");
  ck_assert_int_eq(e.format, NGT_KALDI_TEXT);
  ck_assert_int_eq(e.mat.rows, 2);
  ck_assert_int_eq(e.mat.cols, 3);
  ck_assert_float_eq(NGT_AT(e.mat, 1, 2), 0.6f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "b1");
  ck_assert_float_eq(e.mat.data[1], 8.0f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "t_empty");
  ck_assert_int_eq(e.mat.rows, 0);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "t2");
  ck_assert_int_eq(e.mat.rows, 2);
  ck_assert_int_eq(e.mat.cols, 2);
  ck_assert_float_eq(NGT_AT(e.mat, 0, 0), -1.5f);
  ck_assert_float_eq(NGT_AT(e.mat, 1, 1), 4.0f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 0);
  ngt_kaldi_reader_close(r);

  /* ragged rows are an error naming the utterance */
  write_text(tpath("bad.ark"), "u1 [ 1 2\n 3 ]\n");
  int n;
  ck_assert_int_eq(read_all(tpath("bad.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "'u1'"));
  ck_assert_ptr_nonnull(strstr(err.msg, "row 1 has 1 values"));
  write_text(tpath("bad2.ark"), "u1 [ 1 x2 ]\n");
  ck_assert_int_eq(read_all(tpath("bad2.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "'x2' is not a number"));
  write_text(tpath("bad3.ark"), "u1 [ 1 2 \n");
  ck_assert_int_eq(read_all(tpath("bad3.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
}
END_TEST

START_TEST(test_scp_offsets_ranges) {
  bytes b = {.n = 0};
  float a[12], c[4] = {9, 8, 7, 6};
  for (int i = 0; i < 12; i++) a[i] = (float)i;
  size_t oa = put_fm(&b, "A", 4, 3, a);
  size_t oc = put_fm(&b, "C", 2, 2, c);
  write_file(tpath("s.ark"), b.d, b.n);
  /* a single-object file (no key), read without an offset */
  bytes s1 = {.n = 0};
  put(&s1, "\0B", 2);
  put_s(&s1, "FM ");
  put_sized_i32(&s1, 1);
  put_sized_i32(&s1, 1);
  put_f32(&s1, 42.0f);
  write_file(tpath("one.mat"), s1.d, s1.n);
  char scp[4096], ark[512], one[512];
  snprintf(ark, sizeof ark, "%s", tpath("s.ark"));
  snprintf(one, sizeof one, "%s", tpath("one.mat"));
  snprintf(scp, sizeof scp,
           "C %s:%zu\n\nA %s:%zu\nA_rows %s:%zu[1:2]\nA_cols %s:%zu[1:3,2:2]\nONE %s\n", ark, oc,
           ark, oa, ark, oa, ark, oa, one);
  write_text(tpath("f.scp"), scp);

  ngt_err err = {0};
  ngt_kaldi_reader *r;
  ck_assert_int_eq(ngt_kaldi_reader_open(tpath("f.scp"), &r, &err), 0); /* .scp => scp */
  ngt_kaldi_entry e;
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "C");
  ck_assert_int_eq(e.offset, (int64_t)oc);
  ck_assert_str_eq(e.file, tpath("s.ark"));
  ck_assert_float_eq(e.mat.data[3], 6.0f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "A");
  ck_assert_int_eq(e.mat.rows, 4);
  ck_assert_float_eq(NGT_AT(e.mat, 3, 2), 11.0f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "A_rows");
  ck_assert_int_eq(e.mat.rows, 2);
  ck_assert_int_eq(e.mat.cols, 3);
  ck_assert_float_eq(NGT_AT(e.mat, 0, 0), 3.0f);
  ck_assert_float_eq(NGT_AT(e.mat, 1, 2), 8.0f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 0, &e, &err), 1); /* shape-only with range */
  ck_assert_str_eq(e.key, "A_cols");
  ck_assert_int_eq(e.mat.rows, 3);
  ck_assert_int_eq(e.mat.cols, 1);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
  ck_assert_str_eq(e.key, "ONE");
  ck_assert_float_eq(e.mat.data[0], 42.0f);
  ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 0);

  /* random access through the same reader, and with data for the range */
  ck_assert_int_eq(ngt_kaldi_reader_read_at(r, tpath("s.ark"), (int64_t)oa, "A", 1, &e, &err), 0);
  ck_assert_float_eq(NGT_AT(e.mat, 2, 1), 7.0f);
  ck_assert_str_eq(e.key, "A");
  ngt_kaldi_reader_close(r);

  ngt_kaldi_reader *ra = ngt_kaldi_reader_new_random_access();
  ck_assert_ptr_nonnull(ra);
  ck_assert_int_eq(ngt_kaldi_reader_read_at(ra, tpath("s.ark"), (int64_t)oc, "C", 1, &e, &err), 0);
  ck_assert_float_eq(e.mat.data[0], 9.0f);
  /* a wrong offset lands in the middle of data: wrong magic */
  ck_assert_int_eq(ngt_kaldi_reader_read_at(ra, tpath("s.ark"), (int64_t)oa + 3, "A", 1, &e, &err),
                   NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "wrong magic"));
  ck_assert_ptr_nonnull(strstr(err.msg, "'A'"));
  ngt_kaldi_reader_close(ra);

  /* scp: offset past the end, a range outside the matrix, a pipe, a missing file */
  snprintf(scp, sizeof scp, "A %s:%zu\nZ %s:%zu\n", tpath("s.ark"), oa, tpath("s.ark"), b.n + 100);
  write_text(tpath("past.scp"), scp);
  char spec[600];
  snprintf(spec, sizeof spec, "scp:%s", tpath("past.scp"));
  int n;
  ck_assert_int_eq(read_all(spec, 1, &n, &err), NGT_EFORMAT);
  ck_assert_int_eq(n, 1);
  ck_assert_ptr_nonnull(strstr(err.msg, "past the end"));
  ck_assert_ptr_nonnull(strstr(err.msg, "'Z'"));
  ck_assert_ptr_nonnull(strstr(err.msg, "line 2"));
  ck_assert_ptr_nonnull(strstr(err.msg, "past.scp"));

  snprintf(scp, sizeof scp, "A %s:%zu[2:9]\n", tpath("s.ark"), oa);
  write_text(tpath("rng.scp"), scp);
  ck_assert_int_eq(read_all(tpath("rng.scp"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "does not fit"));

  write_text(tpath("pipe.scp"), "A copy-feats ark:x ark:- |\n");
  ck_assert_int_eq(read_all(tpath("pipe.scp"), 1, &n, &err), NGT_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "pipe"));

  snprintf(scp, sizeof scp, "A %s:0\n", tpath("nope.ark"));
  write_text(tpath("missing.scp"), scp);
  ck_assert_int_eq(read_all(tpath("missing.scp"), 1, &n, &err), NGT_EIO);
  ck_assert_ptr_nonnull(strstr(err.msg, "nope.ark"));
  ck_assert_ptr_nonnull(strstr(err.msg, "'A'"));

  write_text(tpath("nofile.scp"), "A\n");
  ck_assert_int_eq(read_all(tpath("nofile.scp"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "line 1"));
}
END_TEST

START_TEST(test_bad_archives) {
  float a[6] = {1, 2, 3, 4, 5, 6};
  ngt_err err = {0};
  int n;
  /* truncated data: the shape pass already sees it, naming utterance, file and sizes */
  bytes b = {.n = 0};
  put_fm(&b, "ok", 1, 2, a);
  put_fm(&b, "cut", 2, 3, a);
  write_file(tpath("trunc.ark"), b.d, b.n - 5);
  for (int wd = 0; wd <= 1; wd++) {
    ck_assert_int_eq(read_all(tpath("trunc.ark"), wd, &n, &err), NGT_EFORMAT);
    ck_assert_int_eq(n, 1);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    ck_assert_ptr_nonnull(strstr(err.msg, "'cut'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "trunc.ark"));
  }
  /* truncated inside the header */
  write_file(tpath("trunc2.ark"), b.d, 30);
  ck_assert_int_eq(read_all(tpath("trunc2.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
  /* a compressed matrix cut short */
  bytes c = {.n = 0};
  put_s(&c, "cmcut ");
  put(&c, "\0B", 2);
  put_s(&c, "CM3 ");
  put_f32(&c, 0.0f);
  put_f32(&c, 1.0f);
  put_i32(&c, 10);
  put_i32(&c, 10);
  for (int i = 0; i < 50; i++) put_u8(&c, 1);
  write_file(tpath("cmcut.ark"), c.d, c.n);
  ck_assert_int_eq(read_all(tpath("cmcut.ark"), 0, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
  ck_assert_ptr_nonnull(strstr(err.msg, "'cmcut'"));
  /* wrong magic: "\0X" instead of "\0B" */
  bytes w = {.n = 0};
  put_s(&w, "u1 ");
  put(&w, "\0X", 2);
  put_s(&w, "FM ");
  write_file(tpath("magic.ark"), w.d, w.n);
  ck_assert_int_eq(read_all(tpath("magic.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "wrong magic"));
  ck_assert_ptr_nonnull(strstr(err.msg, "'u1'"));
  /* not an archive at all (no key/space structure) */
  unsigned char junk[300];
  memset(junk, 'x', sizeof junk);
  junk[0] = 0x89;
  write_file(tpath("junk.ark"), junk, sizeof junk);
  ck_assert_int_eq(read_all(tpath("junk.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "junk.ark"));
  /* unknown token: a float vector */
  bytes v = {.n = 0};
  put_s(&v, "vec ");
  put(&v, "\0B", 2);
  put_s(&v, "FV ");
  put_sized_i32(&v, 2);
  put_f32(&v, 1);
  put_f32(&v, 2);
  write_file(tpath("vec.ark"), v.d, v.n);
  ck_assert_int_eq(read_all(tpath("vec.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "unknown matrix token 'FV'"));
  ck_assert_ptr_nonnull(strstr(err.msg, "'vec'"));
  /* a wrong size byte (e.g. a big-endian or non-Kaldi writer) */
  bytes z = {.n = 0};
  put_s(&z, "sz ");
  put(&z, "\0B", 2);
  put_s(&z, "FM ");
  put_u8(&z, 8);
  put_i32(&z, 1);
  put_sized_i32(&z, 1);
  put_f32(&z, 1);
  write_file(tpath("sz.ark"), z.d, z.n);
  ck_assert_int_eq(read_all(tpath("sz.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "size byte 4"));
  /* negative sizes */
  bytes g = {.n = 0};
  put_s(&g, "neg ");
  put(&g, "\0B", 2);
  put_s(&g, "FM ");
  put_sized_i32(&g, -3);
  put_sized_i32(&g, 2);
  write_file(tpath("neg.ark"), g.d, g.n);
  ck_assert_int_eq(read_all(tpath("neg.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "bad FM matrix size"));
  /* a key with nothing after it */
  write_text(tpath("keyonly.ark"), "lonely");
  ck_assert_int_eq(read_all(tpath("keyonly.ark"), 1, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "'lonely'"));
  /* missing archive */
  ck_assert_int_eq(read_all(tpath("none.ark"), 1, &n, &err), NGT_EIO);
  ck_assert_ptr_nonnull(strstr(err.msg, "none.ark"));
  /* pipes are refused up front */
  ck_assert_int_eq(read_all("ark:copy-feats scp:x ark:- |", 1, &n, &err), NGT_EINVAL);
}
END_TEST

START_TEST(test_writer_roundtrip) {
  ngt_err err = {0};
  float a[6] = {1.5f, -2, 3, 4, 5e-8f, 6};
  ngt_mat m = ngt_mat_view(a, 2, 3, 3);
  /* exact bytes of a binary archive */
  ngt_kaldi_writer *w;
  char spec[600];
  snprintf(spec, sizeof spec, "ark:%s", tpath("w.ark"));
  ck_assert_int_eq(ngt_kaldi_writer_open(spec, &w, &err), 0);
  ck_assert_int_eq(access(tpath("w.ark"), F_OK), -1); /* nothing until close */
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "u1", m, &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "u2", ngt_mat_cols(m, 1, 2), &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "bad key", m, &err), NGT_EINVAL);
  ck_assert_int_eq(ngt_kaldi_writer_close(w, &err), 0);
  bytes expect = {.n = 0};
  put_fm(&expect, "u1", 2, 3, a);
  float sub[4] = {-2, 3, 5e-8f, 6};
  put_fm(&expect, "u2", 2, 2, sub);
  FILE *f = fopen(tpath("w.ark"), "rb");
  ck_assert_ptr_nonnull(f);
  unsigned char got[512];
  size_t gn = fread(got, 1, sizeof got, f);
  fclose(f);
  ck_assert_uint_eq(gn, expect.n);
  ck_assert_int_eq(memcmp(got, expect.d, gn), 0);

  /* text and ark,scp, read back */
  snprintf(spec, sizeof spec, "ark,t:%s", tpath("w.txt"));
  ck_assert_int_eq(ngt_kaldi_writer_open(spec, &w, &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "u1", m, &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "e", ngt_mat_view(a, 0, 3, 3), &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_close(w, &err), 0);
  snprintf(spec, sizeof spec, "ark,scp:%s,%s", tpath("x.ark"), tpath("x.scp"));
  ck_assert_int_eq(ngt_kaldi_writer_open(spec, &w, &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "first", m, &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "second", ngt_mat_rows(m, 1, 1), &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_close(w, &err), 0);

  const char *specs[2] = {tpath("w.txt"), tpath("x.scp")};
  for (int s = 0; s < 2; s++) {
    ngt_kaldi_reader *r;
    ck_assert_int_eq(ngt_kaldi_reader_open(specs[s], &r, &err), 0);
    ngt_kaldi_entry e;
    ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
    ck_assert_int_eq(e.mat.rows, 2);
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(e.mat.data[i], a[i], 1e-6f * fabsf(a[i]));
    ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 1);
    if (s == 0) {
      ck_assert_int_eq(e.mat.rows, 0);
    } else {
      ck_assert_str_eq(e.key, "second");
      ck_assert_int_eq(e.mat.rows, 1);
      ck_assert_float_eq(e.mat.data[2], 6.0f);
    }
    ck_assert_int_eq(ngt_kaldi_reader_next(r, 1, &e, &err), 0);
    ngt_kaldi_reader_close(r);
  }

  /* abort leaves nothing; a bad directory is a clear error */
  snprintf(spec, sizeof spec, "ark:%s", tpath("gone.ark"));
  ck_assert_int_eq(ngt_kaldi_writer_open(spec, &w, &err), 0);
  ck_assert_int_eq(ngt_kaldi_writer_write(w, "u1", m, &err), 0);
  ngt_kaldi_writer_abort(w);
  ck_assert_int_eq(access(tpath("gone.ark"), F_OK), -1);
  char tmp[700];
  snprintf(tmp, sizeof tmp, "ls %s | grep -q tmp", g_dir);
  ck_assert_int_ne(system(tmp), 0);
  ck_assert_int_eq(ngt_kaldi_writer_open("ark:/nonexistent-dir/x.ark", &w, &err), NGT_EIO);
  ck_assert_ptr_nonnull(strstr(err.msg, "nonexistent-dir"));
  ck_assert_int_eq(ngt_kaldi_writer_open("scp:x.scp", &w, &err), NGT_EINVAL);

  /* text vector */
  double v[3] = {1, 20, 300};
  ck_assert_int_eq(ngt_kaldi_write_text_vector(tpath("v.txt"), v, 3, 1, &err), 0);
  char *txt = NULL;
  ck_assert_int_eq(ngt_read_text_file(tpath("v.txt"), &txt, &err), 0);
  ck_assert_str_eq(txt, "[ 1 20 300 ]\n");
  free(txt);
}
END_TEST

START_TEST(test_alignments) {
  ngt_err err = {0};
  write_text(tpath("ali.txt"), "u1 0 0 5 5 7\nu2 3\n\nu3 1 2\nempty\n");
  ngt_kaldi_ali *a;
  ck_assert_int_eq(ngt_kaldi_ali_open(tpath("ali.txt"), &a, &err), 0);
  ck_assert_int_eq(ngt_kaldi_ali_num_utts(a), 4);
  const int32_t *lab;
  int64_t n;
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u3", &lab, &n, &err), 1);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(lab[0], 1);
  ck_assert_int_eq(lab[1], 2);
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u1", &lab, &n, &err), 1);
  ck_assert_int_eq(n, 5);
  ck_assert_int_eq(lab[4], 7);
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u2", &lab, &n, &err), 1);
  ck_assert_int_eq(n, 1);
  ck_assert_int_eq(lab[0], 3);
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "empty", &lab, &n, &err), 1);
  ck_assert_int_eq(n, 0);
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u9", &lab, &n, &err), 0);
  ngt_kaldi_ali_free(a);

  /* many utterances (rehashing) */
  FILE *f = fopen(tpath("big.txt"), "w");
  for (int i = 0; i < 5000; i++) fprintf(f, "utt%05d %d %d\n", i, i, i + 1);
  fclose(f);
  char spec[600];
  snprintf(spec, sizeof spec, "ark,t:%s", tpath("big.txt"));
  ck_assert_int_eq(ngt_kaldi_ali_open(spec, &a, &err), 0);
  ck_assert_int_eq(ngt_kaldi_ali_num_utts(a), 5000);
  for (int i = 0; i < 5000; i += 37) {
    char k[32];
    snprintf(k, sizeof k, "utt%05d", i);
    ck_assert_int_eq(ngt_kaldi_ali_get(a, k, &lab, &n, &err), 1);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(lab[1], i + 1);
  }
  ngt_kaldi_ali_free(a);

  /* binary int32-vector archive (ali-to-pdf ark:) */
  bytes b = {.n = 0};
  put_s(&b, "b1 ");
  put(&b, "\0B", 2);
  put_sized_i32(&b, 3);
  put_sized_i32(&b, 10);
  put_sized_i32(&b, 0);
  put_sized_i32(&b, 2999);
  put_s(&b, "b2 ");
  put(&b, "\0B", 2);
  put_sized_i32(&b, 1);
  put_sized_i32(&b, 4);
  write_file(tpath("ali.ark"), b.d, b.n);
  ck_assert_int_eq(ngt_kaldi_ali_open(tpath("ali.ark"), &a, &err), 0);
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "b1", &lab, &n, &err), 1);
  ck_assert_int_eq(n, 3);
  ck_assert_int_eq(lab[2], 2999);
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "b2", &lab, &n, &err), 1);
  ck_assert_int_eq(lab[0], 4);
  ngt_kaldi_ali_free(a);
  write_file(tpath("alicut.ark"), b.d, 20);
  ck_assert_int_eq(ngt_kaldi_ali_open(tpath("alicut.ark"), &a, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "'b1'"));

  /* bad input */
  write_text(tpath("dup.txt"), "u1 1 2\nu2 3\nu1 4\n");
  ck_assert_int_eq(ngt_kaldi_ali_open(tpath("dup.txt"), &a, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "line 3"));
  ck_assert_ptr_nonnull(strstr(err.msg, "twice"));
  write_text(tpath("bad.txt"), "u1 1 2\nu2 3 x 4\nu3 1 99999999999\nu4 -1\n");
  ck_assert_int_eq(ngt_kaldi_ali_open(tpath("bad.txt"), &a, &err), 0);
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u2", &lab, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "'x' is not an integer"));
  ck_assert_ptr_nonnull(strstr(err.msg, "line 2"));
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u3", &lab, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "does not fit int32"));
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u4", &lab, &n, &err), NGT_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "negative"));
  ck_assert_int_eq(ngt_kaldi_ali_get(a, "u1", &lab, &n, &err), 1);
  ngt_kaldi_ali_free(a);
  ck_assert_int_eq(ngt_kaldi_ali_open(tpath("nothere.txt"), &a, &err), NGT_EIO);
  ck_assert_ptr_nonnull(strstr(err.msg, "nothere.txt"));
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("kaldi_io");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_binary_fm_dm);
  tcase_add_test(tc, test_compressed);
  tcase_add_test(tc, test_text_and_mixed);
  tcase_add_test(tc, test_scp_offsets_ranges);
  tcase_add_test(tc, test_bad_archives);
  tcase_add_test(tc, test_writer_roundtrip);
  tcase_add_test(tc, test_alignments);
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

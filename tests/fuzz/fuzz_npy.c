/* fuzz_npy.c — libFuzzer harness for the NumPy .npy reader (include/ngtrain/npy.h).
 *
 * Input: the bytes of a .npy file, written to a scratch file. An array that opens is
 * read in full (at most 2^20 elements) as float, and as int64 and int32 for integer
 * dtypes, in two uneven pieces so block boundaries inside the reader are crossed; a
 * read past numel must be refused.
 */
#include "fuzz_common.h"
#include "ngtrain/npy.h"

#define MAX_ELEMS ((int64_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init();
  char path[512];
  fz_write("in.npy", data, size, path, sizeof path);
  ngt_npy *a = NULL;
  ngt_err err = {0};
  int rc = ngt_npy_open(path, &a, &err);
  fz_check_err(&err);
  if (rc) {
    if (a || err.code == 0 || !strstr(err.msg, path)) abort();
    return 0;
  }
  if (a->ndim < 0 || a->ndim > NGT_NPY_MAX_DIMS || a->numel < 0) abort();
  if (a->itemsize != 1 && a->itemsize != 2 && a->itemsize != 4 && a->itemsize != 8) abort();
  int64_t prod = 1;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] < 0) abort();
    prod *= a->shape[i];
  }
  if (prod != a->numel) abort();
  char shp[256];
  ngt_npy_shape_str(a, shp, sizeof shp);
  if (strnlen(shp, sizeof shp) == sizeof shp) abort();

  int64_t n = a->numel < MAX_ELEMS ? a->numel : MAX_ELEMS;
  int64_t cut = n / 3;
  float *f = malloc(sizeof(float) * (size_t)(n + 1));
  int64_t *i64 = malloc(sizeof(int64_t) * (size_t)(n + 1));
  int32_t *i32 = malloc(sizeof(int32_t) * (size_t)(n + 1));
  if (!f || !i64 || !i32) abort();
  const int64_t pieces[2][2] = {{0, cut}, {cut, n - cut}};
  for (int p = 0; p < 2; p++) {
    err = (ngt_err){0};
    rc = ngt_npy_read_f32(a, pieces[p][0], pieces[p][1], f + pieces[p][0], &err);
    fz_check_err(&err);
    if (rc && err.code == 0) abort();
    if (a->kind == 'f') {
      if (ngt_npy_read_i64(a, 0, n, i64, &err) == 0 && n > 0) abort(); /* floats are not labels */
      fz_check_err(&err);
    } else {
      err = (ngt_err){0};
      rc = ngt_npy_read_i64(a, pieces[p][0], pieces[p][1], i64 + pieces[p][0], &err);
      fz_check_err(&err);
      if (rc && err.code == 0) abort();
      err = (ngt_err){0};
      rc = ngt_npy_read_i32(a, pieces[p][0], pieces[p][1], i32 + pieces[p][0], &err);
      fz_check_err(&err);
      if (rc && err.code == 0) abort();
    }
  }
  err = (ngt_err){0};
  if (ngt_npy_read_f32(a, a->numel, 1, f, &err) == 0) abort();
  fz_check_err(&err);
  free(f);
  free(i64);
  free(i32);
  ngt_npy_close(a);
  return 0;
}

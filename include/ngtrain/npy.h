/* npy.h — NumPy .npy reader (format versions 1.0, 2.0, 3.0), streaming by element range.
 *
 * File layout (numpy/lib/format.py): "\x93NUMPY", major, minor, header length (uint16 LE
 * for v1, uint32 LE for v2/v3), then a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (T, D), }
 * padded with spaces and a '\n' so the data starts 16- (v1) or 64-byte aligned, then the
 * raw array in C order.
 *
 * Supported: little-endian ('<', '|', or '=' on a little-endian host) numeric dtypes
 * f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1, C order, any number of dimensions (<= 8).
 * Refused with a message naming the file and the fix: big-endian data, fortran_order True
 * (np.ascontiguousarray), structured/object/string/half/complex dtypes, a header that does
 * not parse, a file shorter than the shape says.
 *
 * Reading converts on the fly, a block at a time, so arrays larger than memory stream:
 *   ngt_npy *a;
 *   if (ngt_npy_open("feats.npy", &a, &err)) ngt_die("%s", err.msg);
 *   int64_t T = a->shape[0], D = a->ndim > 1 ? a->numel / T : 1;
 *   ngt_npy_read_f32(a, t0 * D, n * D, buf, &err);     // rows [t0, t0+n) as float
 *   ngt_npy_close(a);
 */
#ifndef NGTRAIN_NPY_H
#define NGTRAIN_NPY_H

#include <stdint.h>
#include <stdio.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NGT_NPY_MAX_DIMS 8

typedef struct ngt_npy {
  char *path;       /* owned copy, for messages */
  int major, minor; /* format version, e.g. 1.0 */
  char descr[32];   /* dtype string as stored, e.g. "<f4" */
  char kind;        /* 'f' float, 'i' signed int, 'u' unsigned int, 'b' bool */
  int itemsize;     /* bytes per element: 1, 2, 4 or 8 */
  int ndim;         /* 0 for a scalar */
  int64_t shape[NGT_NPY_MAX_DIMS];
  int64_t numel;          /* product of shape (1 for a scalar) */
  int64_t data_offset;    /* byte offset of element 0 */
  FILE *f;                /* private */
  unsigned char *scratch; /* private: conversion block */
} ngt_npy;

/* Open and validate (header, dtype, order, file size). Caller closes with ngt_npy_close. */
int ngt_npy_open(const char *path, ngt_npy **out, ngt_err *err);
void ngt_npy_close(ngt_npy *a); /* NULL-tolerant */

/* Elements [first, first+n) in C order, converted to float (any supported dtype; int64
 * values beyond 2^24 lose precision as float does). */
int ngt_npy_read_f32(ngt_npy *a, int64_t first, int64_t n, float *out, ngt_err *err);
/* Integer dtypes only (float data is refused: labels must be integers); uint64 values
 * above INT64_MAX are an error naming the element. */
int ngt_npy_read_i64(ngt_npy *a, int64_t first, int64_t n, int64_t *out, ngt_err *err);
/* Integer dtypes only; any value outside int32 is an error naming the element and value. */
int ngt_npy_read_i32(ngt_npy *a, int64_t first, int64_t n, int32_t *out, ngt_err *err);

/* "(3, 4)"-style text of the shape, for messages. */
void ngt_npy_shape_str(const ngt_npy *a, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif

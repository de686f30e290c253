/* h5util.h — the project's one set of HDF5 attribute readers/writers, and the content
 * checksums that models and checkpoints carry (docs/design.md §5.2).
 *
 * Attributes: scalar only. Every function names the file (`file`, as the user gave it),
 * the object (its HDF5 path, from H5Iget_name) and the attribute in its error message:
 *   "'exp/3.h5': attribute 'version' of / is not one integer (the file is damaged, or was
 *    not written by ngtrain)".
 * Readers return 0 (read), 1 (absent; err untouched) or a negative NGT_E* with err set.
 * Writers return 0 or NGT_EIO with err set (HDF5's own reason included).
 *
 * Checksums: an object's checksum is a 64-bit value over
 *   - its attributes except "ngt_checksum", in name order, each as name, a class letter
 *     and the value in canonical form (integers as int64, floats as float64, strings as
 *     their text up to the first NUL, all little-endian): a string rewritten as a
 *     variable-length string by h5py, or an int32 rewritten as int64, keeps its checksum;
 *   - for a group, the names of its links in name order (a lost or added member fails);
 *   - for a dataset, its dims and its elements in the type ngtrain reads them in
 *     (float32, float64 or int64), hashed with XXH64 (ngt_xxh64; ~10x faster than the
 *     byte-wise FNV-1a of hash.h, which hashes the small rest).
 * ngt_h5_seal stores it as the uint64 attribute "ngt_checksum"; ngt_h5_verify recomputes
 * it from what the reader got and compares. Hosts must be little-endian (checked at
 * compile time).
 *
 *   if (ngt_h5_attr_write_int(g, "in_dim", 10, path, &err)) ...
 *   long long v; int r = ngt_h5_attr_read_i64(f, "version", &v, path, &err);  // 0/1/<0
 *   ngt_h5_seal(ds, data, n, sizeof(float), path, &err);                       // writer
 *   ngt_h5_verify(ds, data, n, sizeof(float), path, &err);                     // reader
 */
#ifndef NGTRAIN_H5UTIL_H
#define NGTRAIN_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NGT_H5_CHECKSUM_ATTR "ngt_checksum"

/* The most specific message on HDF5's error stack, or "unknown HDF5 error"; clears it. */
const char *ngt_h5_last_error(char *buf, size_t n);

/* Scalar attribute writers. int: int32 LE; i64: int64 LE; u64: uint64 LE; double:
 * float64 LE; str: fixed-length NUL-terminated ASCII (h5py reads bytes); vstr:
 * variable-length UTF-8 (h5py reads str). */
int ngt_h5_attr_write_int(hid_t obj, const char *name, int v, const char *file, ngt_err *err);
int ngt_h5_attr_write_i64(hid_t obj, const char *name, int64_t v, const char *file, ngt_err *err);
int ngt_h5_attr_write_u64(hid_t obj, const char *name, uint64_t v, const char *file, ngt_err *err);
int ngt_h5_attr_write_double(hid_t obj, const char *name, double v, const char *file,
                             ngt_err *err);
int ngt_h5_attr_write_str(hid_t obj, const char *name, const char *v, const char *file,
                          ngt_err *err);
int ngt_h5_attr_write_vstr(hid_t obj, const char *name, const char *v, const char *file,
                           ngt_err *err);

/* Scalar attribute readers: 0 read, 1 absent, < 0 error (wrong class, not one value,
 * unreadable). i64 takes any integer attribute, double any integer or float one, str any
 * fixed or variable-length string in either character set (*out malloc'd, caller frees). */
int ngt_h5_attr_read_i64(hid_t obj, const char *name, long long *v, const char *file,
                         ngt_err *err);
int ngt_h5_attr_read_u64(hid_t obj, const char *name, uint64_t *v, const char *file, ngt_err *err);
int ngt_h5_attr_read_double(hid_t obj, const char *name, double *v, const char *file,
                            ngt_err *err);
int ngt_h5_attr_read_str(hid_t obj, const char *name, char **out, const char *file, ngt_err *err);

/* XXH64 (Collet's xxHash, 64-bit) of n bytes with a seed. */
uint64_t ngt_xxh64(const void *p, size_t n, uint64_t seed);

/* The checksum of obj (group or dataset) as described above. For a dataset, data holds
 * its n elements of es bytes (4 or 8) as read; for a group pass NULL, 0, 0. */
int ngt_h5_checksum(hid_t obj, const void *data, size_t n, size_t es, uint64_t *out,
                    const char *file, ngt_err *err);
/* Compute the checksum and store it as attribute "ngt_checksum" (call after every other
 * attribute, member or element of obj is written). */
int ngt_h5_seal(hid_t obj, const void *data, size_t n, size_t es, const char *file, ngt_err *err);
/* Recompute and compare: 0 if equal, 1 if obj has no "ngt_checksum" (the caller decides:
 * a file from before checksums, or damage), NGT_EFORMAT with
 *   "'<file>': <obj> fails its checksum (stored 0x…, computed 0x…): the file is damaged"
 * otherwise (callers append what to do). */
int ngt_h5_verify(hid_t obj, const void *data, size_t n, size_t es, const char *file,
                  ngt_err *err);

#ifdef __cplusplus
}
#endif
#endif

/* fileio.h — file housekeeping shared by every module that writes files.
 *
 * Atomic writes (redis rdbSave): write to ngt_tmp_path(path), close it, then
 * ngt_commit_tmp() fsyncs it, renames it over path and fsyncs the directory, so a
 * reader sees the old file or the new one, never half of one.
 *
 *   char tmp[4096]; ngt_tmp_path(path, tmp, sizeof tmp);
 *   ... write and close tmp ...
 *   if (ngt_commit_tmp(tmp, path, &err)) { unlink(tmp); return err.code; }
 */
#ifndef NGTRAIN_FILEIO_H
#define NGTRAIN_FILEIO_H

#include <stddef.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "<path>.tmp.<pid>" */
void ngt_tmp_path(const char *path, char *tmp, size_t tmplen);
/* fsync(tmp), rename(tmp, path), fsync(dirname(path)). On failure tmp is removed and
 * err names path and the reason (e.g. "No space left on device"). */
int ngt_commit_tmp(const char *tmp, const char *path, ngt_err *err);
/* Turn off HDF5's automatic error printing (we print our own). Idempotent. */
void ngt_hdf5_quiet(void);
/* Whether HDF5 file locking is on for this process ("true"/"false"/"best-effort"),
 * from HDF5_USE_FILE_LOCKING; printed at start-up for NFS/Lustre users. */
const char *ngt_hdf5_locking(void);
/* Read a whole text file into a NUL-terminated malloc'd buffer (caller frees). */
int ngt_read_text_file(const char *path, char **out, ngt_err *err);
/* mkdir -p */
int ngt_mkdir_p(const char *path, ngt_err *err);

#ifdef __cplusplus
}
#endif
#endif

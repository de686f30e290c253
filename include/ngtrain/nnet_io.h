/* nnet_io.h — models and checkpoints to and from HDF5, written atomically.
 *
 * File layout (readable with h5py / h5dump, no ngtrain needed):
 *   /                 attrs: format = "ngtrain-model", version = 1, config (string),
 *                            feat_dim, ctx_left, ctx_right, num_classes, num_params
 *   /components/NNN   group per component (NNN = 000, 001, ...), attrs: type (int),
 *                     type_name (string), in_dim, out_dim, layer; affine: datasets
 *                     W [O, I] float32 and b [O] float32 (+ attrs max_change, lr_factor,
 *                     the per-layer NG settings); pnorm: attr group
 *   /input_transform  float32 [input_dim, input_dim+1], attr type (int), type_name
 *   /priors           float32 [C]
 *   /train_state/NAME optional extra arrays of a checkpoint (ngt_blob below)
 * Every group and dataset (the root too) has a uint64 attribute ngt_checksum
 * (include/ngtrain/h5util.h), and files are written in the HDF5 1.10 format, whose
 * metadata HDF5 checksums itself. Every load checks what it reads; ngt_nnet_load also
 * checks a checkpoint's whole /train_state. A damaged file is refused (NGT_EFORMAT,
 * "model 'x.h5': dataset /components/003/W fails its checksum (stored 0x…, computed
 * 0x…): the file is damaged; …"). Files from before checksums (HDF5 superblock 0, no
 * root ngt_checksum) load unchecked with a one-line warning.
 * Writes go to "<path>.tmp.<pid>", are fsynced, renamed over path, and the directory
 * is fsynced (redis rdbSave), so a file is complete or absent. Datasets are created
 * without object timestamps, so equal models give byte-identical files.
 *
 *   if (ngt_nnet_save(net, "exp/final.h5", NULL, 0, &err)) ...
 *   ngt_nnet *m; if (ngt_nnet_load("exp/final.h5", &m, &err)) ...
 */
#ifndef NGTRAIN_NNET_IO_H
#define NGTRAIN_NNET_IO_H

#include <stddef.h>

#include "ngtrain/fileio.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { NGT_BLOB_F32 = 1, NGT_BLOB_F64 = 2, NGT_BLOB_I64 = 3 } ngt_blob_type;

/* One named 1-D array stored under /train_state (checkpoint extras). */
typedef struct ngt_blob {
  const char *name; /* dataset name, [A-Za-z0-9_]+ */
  int type;         /* ngt_blob_type */
  size_t n;         /* elements */
  const void *data; /* not owned */
} ngt_blob;

/* Atomically write net (+ extras) to path. */
int ngt_nnet_save(const ngt_nnet *net, const char *path, const ngt_blob *extra, int n_extra,
                  ngt_err *err);
/* Read a model; validates format/version, structure against the stored config,
 * checksums, dataset shapes, finiteness of parameters. Errors name the file and what is wrong
 * ("model 'x.h5': /components/002/W has shape [10, 7] but the config says [10, 8]").
 * Caller frees *out with ngt_nnet_free. */
int ngt_nnet_load(const char *path, ngt_nnet **out, ngt_err *err);
/* Read /train_state/<name> of a checkpoint: allocates *data (caller frees) with *n
 * elements of the given type; NGT_EFORMAT if absent or of another type. */
int ngt_nnet_load_blob(const char *path, const char *name, int type, void **data, size_t *n,
                       ngt_err *err);

#ifdef __cplusplus
}
#endif
#endif

/* shard.h — HDF5 shard files in and out (docs/design.md §5.1).
 *
 *   /feats        float32 [T, D]  chunked (and optionally gzip-compressed)
 *   /labels       int32   [T]     0 <= label < num_classes
 *   /utt_offsets  int64   [U+1]   first frame of each utterance; first 0, last T,
 *                                 strictly increasing (no empty utterances)
 *   /utt_ids      string  [U]     optional utterance names
 *   attrs on /:   format = "ngtrain-shard", version = 1, feat_dim, num_classes
 *
 * Opening validates the attributes, shapes and utt_offsets; reading a range validates
 * its labels (range) and features (finite). Every error names the file, the dataset
 * or frame, the value, and what to do. Files are opened read-only.
 *
 *   ngt_shard *sh;
 *   if (ngt_shard_open("train-001.h5", &sh, &err)) ngt_die("%s", err.msg);
 *   ngt_shard_read(sh, 0, n, feats, labels, &err);     // frames [0, n)
 *   ngt_shard_close(sh);
 */
#ifndef NGTRAIN_SHARD_H
#define NGTRAIN_SHARD_H

#include <stddef.h> /* size_t, for log.h */
#include <stdint.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NGT_SHARD_FORMAT "ngtrain-shard"
#define NGT_SHARD_VERSION 1

typedef struct ngt_shard {
  char *path;                /* owned copy */
  int64_t num_frames;        /* T */
  int feat_dim;              /* D */
  int num_classes;           /* C */
  int64_t num_utts;          /* U */
  int64_t *utt_offsets;      /* owned, U+1 entries, validated */
  int64_t h5file;            /* hid_t of the open file (private) */
  int64_t h5feats, h5labels; /* hid_t of the datasets (private) */
} ngt_shard;

int ngt_shard_open(const char *path, ngt_shard **out, ngt_err *err);
void ngt_shard_close(ngt_shard *sh); /* NULL-tolerant */
/* Read frames [frame0, frame0+n): feats n x D row-major, labels n. Either output may be
 * NULL to skip it. Validates labels and finiteness of what it read. */
int ngt_shard_read(ngt_shard *sh, int64_t frame0, int64_t n, float *feats, int32_t *labels,
                   ngt_err *err);
/* Utterance names (if /utt_ids exists): allocates *ids (U strings + array; free with
 * ngt_shard_free_ids). *ids = NULL if absent. */
int ngt_shard_read_ids(ngt_shard *sh, char ***ids, ngt_err *err);
void ngt_shard_free_ids(char **ids, int64_t n);

typedef struct ngt_shard_write_opts {
  int compress;         /* gzip level 0..9, 0 = none (default) */
  int64_t chunk_frames; /* rows per HDF5 chunk, default 4096 */
} ngt_shard_write_opts;

/* Write a whole shard atomically (temp + fsync + rename). utt_ids may be NULL. */
int ngt_shard_write(const char *path, const float *feats, int64_t T, int D, const int32_t *labels,
                    const int64_t *utt_offsets, int64_t U, const char *const *utt_ids,
                    int num_classes, const ngt_shard_write_opts *opts, ngt_err *err);

/* Streaming writer, for shards built utterance by utterance (mkshards): memory does
 * not grow with the shard. Nothing appears at path until ngt_shard_writer_commit. */
typedef struct ngt_shard_writer ngt_shard_writer;
int ngt_shard_writer_open(const char *path, int D, int num_classes,
                          const ngt_shard_write_opts *opts, ngt_shard_writer **out, ngt_err *err);
int ngt_shard_writer_add(ngt_shard_writer *w, const char *utt_id, const float *feats, int64_t T,
                         const int32_t *labels, ngt_err *err);
int ngt_shard_writer_commit(ngt_shard_writer *w, ngt_err *err); /* closes + renames; frees w */
void ngt_shard_writer_abort(ngt_shard_writer *w);               /* removes the temp; frees w */

/* Expand a glob pattern (or a single existing path) into a sorted list of paths.
 * Allocates *paths (free with ngt_paths_free). No match is NGT_EIO naming the pattern. */
int ngt_glob_paths(const char *pattern, char ***paths, int *n, ngt_err *err);
void ngt_paths_free(char **paths, int n);

#ifdef __cplusplus
}
#endif
#endif

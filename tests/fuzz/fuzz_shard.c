/* fuzz_shard.c — libFuzzer harness for the shard reader (ngt_shard_open, ngt_shard_read,
 * ngt_shard_read_ids; include/ngtrain/shard.h).
 *
 * Input: the bytes of a shard file (HDF5), written to a scratch file. A shard that opens
 * is read completely in blocks, as the batcher does (at most 2^20 frames, 16 MB a
 * block), then its utterance ids. What the reader promises is checked: labels in
 * [0, num_classes), finite features, utt_offsets strictly increasing from 0 to T.
 */
#include <math.h>

#include "fuzz_common.h"
#include "ngtrain/shard.h"

#define MAX_FRAMES ((int64_t)1 << 20)
#define BLOCK_FLOATS ((int64_t)1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init();
  char path[512];
  fz_write("shard.h5", data, size, path, sizeof path);
  ngt_shard *sh = NULL;
  ngt_err err = {0};
  int rc = ngt_shard_open(path, &sh, &err);
  fz_check_err(&err);
  if (rc) {
    if (sh || err.code == 0 || !strstr(err.msg, path)) abort();
    return 0;
  }
  const int64_t T = sh->num_frames, U = sh->num_utts, D = sh->feat_dim;
  if (!sh->utt_offsets || U < 0 || D <= 0 || sh->num_classes <= 0) abort();
  if (sh->utt_offsets[0] != 0 || sh->utt_offsets[U] != T) abort();
  for (int64_t u = 0; u < U; u++)
    if (sh->utt_offsets[u + 1] <= sh->utt_offsets[u]) abort();

  int64_t block = BLOCK_FLOATS / D;
  if (block < 1) block = 1;
  if (block > 4096) block = 4096;
  if (D <= BLOCK_FLOATS) {
    float *feats = malloc(sizeof(float) * (size_t)(block * D));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)block);
    if (!feats || !labels) abort();
    int64_t end = T < MAX_FRAMES ? T : MAX_FRAMES;
    for (int64_t t = 0; t < end; t += block) {
      int64_t n = end - t < block ? end - t : block;
      err = (ngt_err){0};
      rc = ngt_shard_read(sh, t, n, feats, labels, &err);
      fz_check_err(&err);
      if (rc) {
        if (err.code == 0 || !strstr(err.msg, path)) abort();
        break;
      }
      for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= sh->num_classes) abort();
      for (int64_t i = 0; i < n * D; i++)
        if (!isfinite(feats[i])) abort();
    }
    /* a range past the end must be refused, not read */
    err = (ngt_err){0};
    if (ngt_shard_read(sh, T, 1, feats, labels, &err) == 0) abort();
    fz_check_err(&err);
    free(feats);
    free(labels);
  }
  char **ids = NULL;
  err = (ngt_err){0};
  rc = ngt_shard_read_ids(sh, &ids, &err);
  fz_check_err(&err);
  if (rc == 0 && ids) {
    size_t total = 0;
    for (int64_t u = 0; u < U; u++) {
      if (!ids[u]) abort();
      total += strlen(ids[u]);
    }
    (void)total;
    ngt_shard_free_ids(ids, U);
  } else if (rc != 0 && ids) {
    abort();
  }
  ngt_shard_close(sh);
  return 0;
}

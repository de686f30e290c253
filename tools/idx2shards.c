/* idx2shards — convert an IDX image/label pair (MNIST, Fashion-MNIST) into ngtrain
 * shards: each image is one utterance of one frame of raw pixel values (0..255, as
 * float), so a network reads it with context 0..0.
 *
 *   gunzip -c /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz > /tmp/ti
 *   gunzip -c /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz > /tmp/tl
 *   idx2shards --images=/tmp/ti --labels=/tmp/tl --num-shards=8 --out=exp/fmnist/train
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/log.h"
#include "ngtrain/opts.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

static int read_u32be(FILE *f, uint32_t *v) {
  unsigned char b[4];
  if (fread(b, 1, 4, f) != 4) return -1;
  *v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
  return 0;
}

static const ngt_tool tool = {
    "idx2shards",
    "IDX images + labels (MNIST format) -> ngtrain shards, one frame per image.",
    "idx2shards --images=FILE --labels=FILE --out=PREFIX [--num-shards=N]",
    "gunzip -c /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz > /tmp/ti\n"
    "gunzip -c /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz > /tmp/tl\n"
    "idx2shards --images=/tmp/ti --labels=/tmp/tl --num-shards=8 --out=fm/train",
    NULL,
    0,
    0};

int main(int argc, char **argv) {
  const char *images = NULL, *labels = NULL, *out = NULL;
  int nshards = 1;
  uint64_t seed = 0;
  int64_t limit = 0;
  ngt_opt table[] = {{"images", NGT_OPT_STRING, &images, "IDX3 image file (uncompressed)", 0},
                     {"labels", NGT_OPT_STRING, &labels, "IDX1 label file (uncompressed)", 0},
                     {"out", NGT_OPT_STRING, &out,
                      "output prefix: PREFIX-0001.h5 ... (or PREFIX.h5 with one shard)", 0},
                     {"num-shards", NGT_OPT_INT, &nshards,
                      "number of shards (images dealt round-robin after a seeded shuffle)", 0},
                     {"seed", NGT_OPT_UINT64, &seed, "shuffle seed", 0},
                     {"limit", NGT_OPT_INT64, &limit, "use only the first N images (0 = all)", 0},
                     {0, 0, 0, 0, 0}};
  char **pos = NULL;
  int npos = 0, code = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) return code;
  if (!images || !labels || !out)
    return ngt_fail("--images, --labels and --out are required (see --help)");
  ngt_err err = {0};
  if (nshards < 1) return ngt_fail("--num-shards=%d must be >= 1", nshards);
  FILE *fi = fopen(images, "rb"), *fl = fopen(labels, "rb");
  if (!fi || !fl) return ngt_fail("cannot open '%s': %s", !fi ? images : labels, strerror(errno));
  uint32_t mi, ni, rows, cols, ml, nl;
  if (read_u32be(fi, &mi) || read_u32be(fi, &ni) || read_u32be(fi, &rows) ||
      read_u32be(fi, &cols) || mi != 0x803) {
    return ngt_fail("'%s' is not an IDX3 image file (magic 0x%x; gunzip it first?)", images, mi);
  }
  if (read_u32be(fl, &ml) || read_u32be(fl, &nl) || ml != 0x801) {
    return ngt_fail("'%s' is not an IDX1 label file (magic 0x%x; gunzip it first?)", labels, ml);
  }
  if (ni != nl) return ngt_fail("'%s' holds %u images but '%s' %u labels", images, ni, labels, nl);
  int64_t N = ni;
  if (limit > 0 && limit < N) N = limit;
  const int D = (int)(rows * cols);
  unsigned char *px = malloc((size_t)N * (size_t)D), *lb = malloc((size_t)N);
  if (!px || !lb) ngt_die("out of memory");
  if (fread(px, 1, (size_t)N * (size_t)D, fi) != (size_t)N * (size_t)D ||
      fread(lb, 1, (size_t)N, fl) != (size_t)N) {
    return ngt_fail("'%s' or '%s' is truncated", images, labels);
  }
  fclose(fi);
  fclose(fl);
  int C = 0;
  for (int64_t i = 0; i < N; i++)
    if (lb[i] + 1 > C) C = lb[i] + 1;
  uint32_t *perm = malloc(sizeof(uint32_t) * (size_t)N);
  for (int64_t i = 0; i < N; i++) perm[i] = (uint32_t)i;
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_DATAGEN);
  ngt_rng_shuffle_u32(&r, perm, (size_t)N);
  int64_t per = (N + nshards - 1) / nshards;
  float *feats = malloc(sizeof(float) * (size_t)per * (size_t)D);
  int32_t *lab = malloc(sizeof(int32_t) * (size_t)per);
  int64_t *off = malloc(sizeof(int64_t) * (size_t)(per + 1));
  if (!perm || !feats || !lab || !off) ngt_die("out of memory");
  for (int s = 0; s < nshards; s++) {
    int64_t T = 0;
    for (int64_t i = s; i < N; i += nshards, T++) {
      uint32_t k = perm[i];
      for (int j = 0; j < D; j++) feats[T * D + j] = (float)px[(size_t)k * D + j];
      lab[T] = lb[k];
      off[T] = T;
    }
    off[T] = T;
    char path[4096];
    if (nshards == 1) snprintf(path, sizeof path, "%s.h5", out);
    else
      snprintf(path, sizeof path, "%s-%04d.h5", out, s + 1);
    ngt_shard_write_opts wo = {1, 4096};
    if (ngt_shard_write(path, feats, T, D, lab, off, T, NULL, C, &wo, &err)) {
      return ngt_fail("%s", err.msg);
    }
  }
  printf("idx2shards: %" PRId64 " images of %d pixels, %d classes -> %d shard(s) %s*\n", N, D, C,
         nshards, out);
  free(px);
  free(lb);
  free(perm);
  free(feats);
  free(lab);
  free(off);
  free(pos);
  return 0;
}

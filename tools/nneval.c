/* nneval — objective per frame and frame accuracy of a model on shards.
 *
 *   nneval exp/run1/final.h5 data/dev.h5
 *   nneval --max-frames=20000 exp/run1/final.h5 'shards/train-*.h5'
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ngtrain/batcher.h"
#include "ngtrain/engine.h"
#include "ngtrain/evaluate.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/opts.h"
#include "ngtrain/shard.h"

static const ngt_tool tool = {
    "nneval",
    "objective (average log-probability of the correct class per frame) and frame\n"
    "accuracy of a model on HDF5 shards. The model's splicing and input transform are applied.",
    "nneval [options] model.h5 shard.h5|'glob' [more shards]",
    "nneval exp/demo/final.h5 data/dev.h5\n"
    "nneval --max-frames=20000 exp/run1/final.h5 'shards/train-*.h5'",
    NULL,
    2,
    -1};

int main(int argc, char **argv) {
  int64_t max_frames = 0;
  int mb = 512;
  uint64_t seed = 0;
  const char *precision = "auto";
  ngt_opt table[] = {{"max-frames", NGT_OPT_INT64, &max_frames,
                      "evaluate a seeded random subset of this many frames (0 = all)", 0},
                     {"minibatch-size", NGT_OPT_INT, &mb, "frames per forward pass", 0},
                     {"seed", NGT_OPT_UINT64, &seed, "seed of the subset", 0},
                     {"precision", NGT_OPT_STRING, &precision,
                      "GEMM precision: auto, fp32 or bf16", 0},
                     {0, 0, 0, 0, 0}};
  char **pos = NULL;
  int npos = 0, code = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) return code;
  ngt_err err = {0};
  if (mb < 1) {
    return ngt_fail("--minibatch-size=%d must be >= 1", mb);
  }
  int prec = NGT_PREC_AUTO;
  if (ngt_precision_parse(precision, &prec, &err) || ngt_engine_setup(prec, 1, &err)) {
    fprintf(stderr, "nneval: %s\n", err.msg);
    return 1;
  }
  ngt_nnet *net = NULL;
  if (ngt_nnet_load(pos[0], &net, &err)) {
    return ngt_fail("%s", err.msg);
  }
  char **paths = NULL;
  int np = 0;
  for (int i = 1; i < npos; i++) {
    char **p = NULL;
    int n = 0;
    if (ngt_glob_paths(pos[i], &p, &n, &err)) {
      return ngt_fail("%s", err.msg);
    }
    char **grown = realloc(paths, sizeof(char *) * (size_t)(np + n));
    if (!grown) ngt_die("out of memory");
    paths = grown;
    for (int k = 0; k < n; k++) paths[np++] = p[k];
    free(p);
  }
  ngt_frameset *fs = NULL;
  if (ngt_frameset_load((const char *const *)paths, np, max_frames, seed, &fs, &err)) {
    return ngt_fail("%s", err.msg);
  }
  ngt_eval_result r;
  if (ngt_evaluate(net, fs, mb, NULL, &r, &err)) {
    return ngt_fail("%s: %s", pos[0], err.msg);
  }
  /* the majority-class baseline of these frames, for scale */
  int64_t *cnt = calloc((size_t)fs->num_classes, sizeof(int64_t)), maxc = 0;
  if (!cnt) ngt_die("out of memory");
  for (int64_t i = 0; i < fs->n_sel; i++) cnt[fs->labels[fs->frame[i]]]++;
  for (int k = 0; k < fs->num_classes; k++)
    if (cnt[k] > maxc) maxc = cnt[k];
  free(cnt);
  printf("nneval: %s on %d shard(s), %" PRId64 " frames: objective %.5f per frame, frame accuracy "
         "%.2f%% (majority-class baseline %.2f%%)\n",
         pos[0], np, r.frames, r.objective, 100.0 * r.accuracy,
         r.frames ? 100.0 * (double)maxc / (double)r.frames : 0.0);
  ngt_frameset_free(fs);
  ngt_paths_free(paths, np);
  ngt_nnet_free(net);
  free(pos);
  return 0;
}

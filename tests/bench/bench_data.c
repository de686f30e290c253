/* bench_data — frames/s of the data path alone (HDF5 read, shuffle, splice 40 x 11,
 * minibatches of 512, prefetch thread) against the frames/s one training step of the
 * speech-shaped network consumes (online NG, minibatch 512, one thread), measured in
 * the same run, and their ratio (goal: data path >= 10x training).
 * Usage: bench_data [frames]   (default 400000 frames of 40-dim features, in 4 shards)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ngtrain/batcher.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/nnet.h"
#include "ngtrain/optim.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

static const char *speech_cfg =
    "input dim=40 context=-5..5\nlayer type=relu-renorm dim=1024\nlayer type=relu-renorm "
    "dim=1024\n"
    "layer type=relu-renorm dim=1024\nlayer type=relu-renorm dim=1024\noutput dim=2000\n";

int main(int argc, char **argv) {
  int64_t total = argc > 1 ? atoll(argv[1]) : 400000;
  const int D = 40, C = 2000, NS = 4, N = 512;
  ngt_blas_set_threads(1);
  char dir[] = "/tmp/ngt-bench-data.XXXXXX";
  if (!mkdtemp(dir)) ngt_die("mkdtemp failed");
  ngt_rng r = ngt_rng_make(1, NGT_RNG_STREAM_TEST);
  int64_t per = total / NS;
  float *f = malloc(sizeof(float) * (size_t)per * D);
  int32_t *y = malloc(sizeof(int32_t) * (size_t)per);
  int64_t *off = malloc(sizeof(int64_t) * (size_t)(per / 100 + 2));
  char *paths[4];
  ngt_err err = {0};
  for (int s = 0; s < NS; s++) {
    for (int64_t i = 0; i < per * D; i++) f[i] = (float)ngt_rng_normal(&r);
    for (int64_t i = 0; i < per; i++) y[i] = (int32_t)ngt_rng_below(&r, C);
    int64_t U = 0;
    for (int64_t t = 0; t < per; t += 100) off[U++] = t;
    off[U] = per;
    paths[s] = malloc(4200);
    snprintf(paths[s], 4200, "%s/s%d.h5", dir, s);
    ngt_shard_write_opts wo = {0, 4096};
    if (ngt_shard_write(paths[s], f, per, D, y, off, U, NULL, C, &wo, &err))
      ngt_die("%s", err.msg);
  }
  free(f);
  free(y);
  free(off);

  ngt_batcher_opts bo = ngt_batcher_opts_default();
  bo.ctx_left = bo.ctx_right = 5;
  bo.shuffle_buffer = 100000;
  ngt_batcher *b = NULL;
  if (ngt_batcher_new((const char *const *)paths, NS, &bo, &b, &err)) ngt_die("%s", err.msg);
  ngt_mat X = ngt_mat_alloc(N, ngt_batcher_input_dim(b));
  int32_t *lab = malloc(sizeof(int32_t) * N);
  int64_t want = 2 * total;
  double t0 = ngt_now();
  int64_t got_total = 0;
  while (got_total < want) {
    int got = 0;
    if (ngt_batcher_next(b, N, X, lab, &got, &err)) ngt_die("%s", err.msg);
    got_total += got;
  }
  double data_fps = (double)got_total / (ngt_now() - t0);

  ngt_nnet *net = NULL;
  if (ngt_nnet_from_config(speech_cfg, "bench", &net, &err)) ngt_die("%s", err.msg);
  ngt_nnet_init_params(net, 1);
  ngt_optim_opts oo = ngt_optim_opts_default();
  ngt_optim *opt = NULL;
  if (ngt_optim_new(net, &oo, N, &opt, &err)) ngt_die("%s", err.msg);
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, N);
  int steps = 8;
  double t1 = 0;
  for (int k = -2; k < steps; k++) {
    int got = 0;
    if (ngt_batcher_next(b, N, X, lab, &got, &err)) ngt_die("%s", err.msg);
    double ts = ngt_now();
    ngt_nnet_forward(net, ws, X);
    ngt_nnet_backward(net, ws, lab);
    ngt_optim_step(opt, net, ws, 1e-4f, 1.0f);
    if (k >= 0) t1 += ngt_now() - ts;
  }
  double train_fps = steps * (double)N / t1;
  printf("bench_data: %" PRId64
         " frames in %d shards, 40-dim, spliced x11, shuffle buffer %" PRId64
         ", minibatch %d (OpenBLAS %s)\n",
         total, NS, bo.shuffle_buffer, N, ngt_blas_corename());
  printf("  data path      %10.0f frames/s\n", data_fps);
  printf("  training step  %10.0f frames/s (online NG, speech network, 1 thread)\n", train_fps);
  printf("  ratio data/training %.1f (goal >= 10)\n", data_fps / train_fps);
  ngt_batcher_free(b);
  ngt_mat_free(&X);
  free(lab);
  ngt_nnet_ws_free(ws);
  ngt_optim_free(opt);
  ngt_nnet_free(net);
  for (int s = 0; s < NS; s++) {
    unlink(paths[s]);
    free(paths[s]);
  }
  rmdir(dir);
  return 0;
}

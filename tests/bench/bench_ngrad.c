/* bench_ngrad — the online NG preconditioner alone, on the ten shapes of the speech network
 * (docs/algorithm.md §2.5): per affine layer an input-side call (R = 20, D = its input width)
 * and an output-side call (R = 80, D = its output width), at minibatch 256 and 512. Prints
 * per shape the best time of a call that updates the Fisher estimate and of one that does
 * not, then per minibatch the sums over the network, the amortised cost over the update
 * period (one updating call in four) and the rate of the two thin products every call makes
 * (H = X W^T and X^ = X - H W: 4 N R D flops), against the step's own GEMM flops
 * (32.96 MFLOP per frame, counted as bench_step counts them). It answers "how far is NG-SGD's
 * overhead from the floor set by those products". fp32 times ngt_ngrad_precondition on a copy
 * of the rows, as the fp32 optimiser calls it; bf16 the fused ngt_ngrad_precondition_bf16, as
 * the bf16 optimiser calls it (rows [x, 1] on the input side, the bias-gradient sum on the
 * output side). Times are this thread's CPU time, best of the repeats.
 * Usage: bench_ngrad [fp32|bf16|all] [repeats] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngtrain/engine.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/ngrad.h"
#include "ngtrain/rng.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  double update, other; /* best seconds */
} call_cost;

/* Best times of updating and other calls on N rows with rank R: rows of D values (fp32:
 * ngt_ngrad_precondition, on a copy of the data as the optimiser makes), or in bf16 the
 * fused call as the optimiser makes it (rows [x, 1] with x of D - 1 values on the input
 * side, `ones`; its bf16 copy made once, as forward/backward make it; the bias-gradient
 * sum on the output side). The data has a few strong directions, as activations do, so
 * the estimate is not trivial. */
static call_cost measure(int N, int D, int R, int bf16, int ones, int repeats) {
  ngt_ngrad_opts o = ngt_ngrad_opts_default();
  o.rank = R;
  ngt_ngrad p;
  ngt_err err;
  if (ngt_ngrad_init(&p, D, &o, &err) != 0) {
    ngt_die("%s", err.msg);
  }
  p.bf16 = bf16;
  const int Dx = bf16 && ones ? D - 1 : D;
  size_t n = (size_t)N * (size_t)D;
  float *X0 = malloc(sizeof(float) * n), *X = malloc(sizeof(float) * n);
  float *last = malloc(sizeof(float) * (size_t)N), *v = calloc((size_t)D, sizeof(float));
  uint16_t *Xb = malloc(sizeof(uint16_t) * n), *Y = malloc(sizeof(uint16_t) * n);
  ngt_rng r = ngt_rng_make(1, 0);
  for (size_t i = 0; i < n; i++)
    X0[i] = (float)ngt_rng_normal(&r) * ((int)(i % (size_t)D) < 20 ? 6.0f : 1.0f);
  for (int i = 0; i < N; i++) last[i] = 1.0f;
  if (bf16) ngt_bf16_from_f32(Xb, Dx, X0, Dx, N, Dx, 1.0f);
  ngt_ngrad_bf16_io io = {.X = ngt_mat_view(X0, N, Dx, Dx),
                          .Xb = Xb,
                          .ldxb = Dx,
                          .ones = ones,
                          .out = Y,
                          .ldo = Dx,
                          .last = ones ? last : NULL,
                          .c = ones ? NULL : last,
                          .v = ones ? NULL : v};
  call_cost c = {1e30, 1e30};
  int calls = 16 + 8 * repeats; /* past the 10 initial updates, then 1 update in 4 */
  for (int it = 0; it < calls; it++) {
    int updating = p.t <= 10 || (p.t - 10) % o.update_period == 0;
    float gamma;
    double t0 = cpu_now();
    if (bf16) {
      ngt_ngrad_precondition_bf16(&p, &io, &gamma);
    } else {
      memcpy(X, X0, sizeof(float) * n);
      ngt_ngrad_precondition(&p, ngt_mat_view(X, N, D, D), &gamma);
    }
    double t = cpu_now() - t0;
    if (it < 16) continue;
    if (updating && t < c.update) c.update = t;
    if (!updating && t < c.other) c.other = t;
  }
  free(X0);
  free(X);
  free(last);
  free(v);
  free(Xb);
  free(Y);
  ngt_ngrad_deinit(&p);
  return c;
}

int main(int argc, char **argv) {
  const char *prec = argc > 1 ? argv[1] : "all";
  int repeats = argc > 2 ? atoi(argv[2]) : 10;
  if (repeats < 1) repeats = 1;
  /* The speech network (data/nnet-speech.cfg): affine layers 440->1024, 3 x 1024->1024,
   * 1024->2000; Kaldi's ranks 20 (input side) and 80 (output side). */
  const int din[5] = {440, 1024, 1024, 1024, 1024}, dout[5] = {1024, 1024, 1024, 1024, 2000};
  /* the step's GEMM flops per frame, as bench_step counts them: forward, weight gradient and
   * input derivative (2 I O each) for every affine layer, no input derivative for the first */
  double step_flop_per_frame = 0;
  for (int l = 0; l < 5; l++) step_flop_per_frame += (l == 0 ? 4.0 : 6.0) * din[l] * dout[l];
  ngt_err se = {0};
  if (ngt_engine_setup(NGT_PREC_FP32, 1, &se)) ngt_die("%s", se.msg);
  printf("bench_ngrad: online NG preconditioner on the speech network's shapes, one thread, "
         "thread CPU time (best of %d); OpenBLAS %s kernels; ISA %s\n",
         repeats, ngt_blas_corename(), ngt_engine_isa());
  const char *why = ngt_engine_bf16_unavailable();
  for (int pr = 0; pr < 2; pr++) {
    int bf16 = pr == 1;
    if (strcmp(prec, "all") != 0 && strcmp(prec, bf16 ? "bf16" : "fp32") != 0) continue;
    if (bf16 && why) {
      printf("bf16: skipped (%s)\n", why);
      continue;
    }
    if (ngt_engine_setup(bf16 ? NGT_PREC_BF16 : NGT_PREC_FP32, 1, &se)) ngt_die("%s", se.msg);
    for (int N = 256; N <= 512; N *= 2) {
      double upd = 0, oth = 0, thin_flop = 0;
      printf("%s, minibatch %d:\n", bf16 ? "bf16" : "fp32", N);
      for (int l = 0; l < 5; l++)
        for (int side = 0; side < 2; side++) {
          int D = side == 0 ? din[l] + 1 : dout[l], R = side == 0 ? 20 : 80;
          call_cost c = measure(N, D, R, bf16, side == 0, repeats);
          upd += c.update;
          oth += c.other;
          thin_flop += 4.0 * N * R * D;
          if (l < 2 || l == 4)
            printf("  layer %d %-6s D=%4d R=%2d: updating call %.3f ms, other call %.3f ms\n",
                   l + 1, side == 0 ? "input" : "output", D, R, 1e3 * c.update, 1e3 * c.other);
        }
      double amort = (upd + 3.0 * oth) / 4.0, step_flop = step_flop_per_frame * N;
      printf("  network (10 calls): updating %.2f ms, other %.2f ms, amortised %.2f ms per step\n",
             1e3 * upd, 1e3 * oth, 1e3 * amort);
      printf("  H and X^ products: %.0f MFLOP = %.1f %% of the step's %.0f MFLOP; other calls "
             "run them (and the trace passes) at %.0f GFLOP/s\n",
             1e-6 * thin_flop, 100.0 * thin_flop / step_flop, 1e-6 * step_flop,
             1e-9 * thin_flop / oth);
    }
  }
  return 0;
}

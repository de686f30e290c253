/* bench_step — one training step (forward + backward + update) of the speech-shaped
 * network (input 40 x 11 spliced, 4 x relu-renorm 1024, output 2000) at minibatch 256
 * and 512 on one thread, against OpenBLAS's own SGEMM rate on the very GEMM shapes of
 * that step, measured in the same run. Prints:
 *   - plain-SGD step: GFLOP/s and its ratio to the SGEMM rate (goal >= 0.80)
 *   - online NG step / plain step time ratio (goal <= 1.10), simple NG ratio; the best
 *     repeat is a step that does not update the Fisher estimate (3 steps in 4 by default),
 *     so a second line gives the cost amortised over the update period,
 *     (best updating step + (period - 1) x best other step) / period, and its ratio
 *   - frames/s of each.
 * Times are this thread's CPU time (one BLAS thread), the best of the repeats for both
 * the SGEMM reference and the steps, so a busy shared machine disturbs them little.
 * Precisions (engine.h): fp32 (OpenBLAS) and, where the CPU and build have it, bf16
 * (oneDNN matmul); the GEMM reference of each is the same library on the same shapes
 * (the roofline). With --threads T > 1 the times are wall-clock (best repeat), since
 * thread CPU time no longer covers the work; with T = 1 they are thread CPU time.
 * Usage: bench_step [config] [repeats] [fp32|bf16|all] [threads]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#undef I

#include "ngtrain/engine.h"
#include "ngtrain/fileio.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/nnet.h"
#include "ngtrain/optim.h"
#include "ngtrain/rng.h"

static const char *speech_cfg = "input dim=40 context=-5..5\n"
                                "layer type=relu-renorm dim=1024\n"
                                "layer type=relu-renorm dim=1024\n"
                                "layer type=relu-renorm dim=1024\n"
                                "layer type=relu-renorm dim=1024\n"
                                "output dim=2000\n";

/* Seconds of CPU time of this thread: with one BLAS thread all work runs here, and time
 * the scheduler gives to other processes on a shared machine is not counted (wall-clock
 * timings there are noise). */
static int g_wall = 0;
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(g_wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The GEMM flops of one step: forward 2NIO, weight gradient 2NIO, input derivative 2NIO
 * for every affine layer but the first. */
static double step_flops(const ngt_nnet *net, int N) {
  double f = 0;
  int first = 1;
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    if (cp->type != NGT_COMP_AFFINE) continue;
    double g = 2.0 * N * cp->in_dim * cp->out_dim;
    f += first ? 2 * g : 3 * g;
    first = 0;
  }
  return f;
}

/* Time the same GEMMs with plain cblas_sgemm, or oneDNN bf16 matmul in the layouts the
 * bf16 step uses (best of `reps`). */
static double gemm_seconds(const ngt_nnet *net, int N, int reps, int bf16) {
  int maxd = net->input_dim;
  for (int c = 0; c < net->num_comps; c++)
    if (net->comps[c].out_dim > maxd) maxd = net->comps[c].out_dim;
  float *A = calloc((size_t)N * maxd, sizeof(float)),
        *B = calloc((size_t)maxd * maxd, sizeof(float));
  float *Cm = calloc((size_t)N * maxd > (size_t)maxd * maxd ? (size_t)N * maxd
                                                            : (size_t)maxd * maxd,
                     sizeof(float));
  for (size_t i = 0; i < (size_t)N * maxd; i++) A[i] = 0.01f * (float)(i % 97);
  for (size_t i = 0; i < (size_t)maxd * maxd; i++) B[i] = 0.01f * (float)(i % 89);
  double best = 1e30;
  uint16_t *Ab = NULL, *Bb = NULL;
  if (bf16) {
    Ab = calloc((size_t)N * maxd, sizeof(uint16_t));
    Bb = calloc((size_t)maxd * maxd, sizeof(uint16_t));
    ngt_bf16_from_f32(Ab, maxd, A, maxd, N, maxd, 1.0f);
    ngt_bf16_from_f32(Bb, maxd, B, maxd, maxd, maxd, 1.0f);
  }
  for (int r = 0; r < reps + 1; r++) { /* the first round creates the primitives */
    double t0 = cpu_now();
    int first = 1;
    if (bf16) {
      for (int c = 0; c < net->num_comps; c++) {
        const ngt_comp *cp = &net->comps[c];
        if (cp->type != NGT_COMP_AFFINE) continue;
        int I = cp->in_dim, O = cp->out_dim;
        ngt_gemm_bf16(0, 1, N, O, I, Ab, I, Bb, I, B, Cm, O);
        ngt_gemm_bf16(1, 0, O, I, N, Ab, O, Ab, I, NULL, Cm, I);
        if (!first) ngt_gemm_bf16(0, 0, N, I, O, Ab, O, Bb, I, NULL, Cm, I);
        first = 0;
      }
      double t = cpu_now() - t0;
      if (r > 0 && t < best) best = t;
      continue;
    }
    for (int c = 0; c < net->num_comps; c++) {
      const ngt_comp *cp = &net->comps[c];
      if (cp->type != NGT_COMP_AFFINE) continue;
      int I = cp->in_dim, O = cp->out_dim;
      /* forward: (N x I)(O x I)^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, A, I, B, I, 0.0f, Cm, O);
      /* weight gradient: (N x O)^T (N x I) */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, N, 1.0f, A, O, A, I, 0.0f, Cm, I);
      /* input derivative: (N x O)(O x I) */
      if (!first)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, I, O, 1.0f, A, O, B, I, 0.0f, Cm,
                    I);
      first = 0;
    }
    double t = cpu_now() - t0;
    if (r > 0 && t < best) best = t;
  }
  free(A);
  free(B);
  free(Cm);
  free(Ab);
  free(Bb);
  return best;
}

/* Best time of one training step with the given optimiser settings; with the online
 * preconditioner also the best step that updates the Fisher estimate (*upd) and the update
 * period (*period). */
static double step_seconds_ng(const char *cfg, int N, int use_ng, int pre, int reps, double *upd,
                              int *period) {
  ngt_nnet *net = NULL;
  ngt_err e = {0};
  if (ngt_nnet_from_config(cfg, "bench", &net, &e)) ngt_die("%s", e.msg);
  for (int c = 0; c < net->num_comps; c++)
    if (net->comps[c].type == NGT_COMP_AFFINE) net->comps[c].param_stddev = 0.02f;
  ngt_nnet_init_params(net, 1);
  ngt_optim_opts o = ngt_optim_opts_default();
  o.use_natural_gradient = use_ng;
  o.preconditioner = pre;
  ngt_optim *opt = NULL;
  if (ngt_optim_new(net, &o, N, &opt, &e)) ngt_die("%s", e.msg);
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, N);
  ngt_mat X = ngt_mat_alloc(N, net->input_dim);
  int32_t *y = malloc(sizeof(int32_t) * (size_t)N);
  ngt_rng r = ngt_rng_make(5, NGT_RNG_STREAM_TEST);
  for (int n = 0; n < N; n++) {
    y[n] = (int32_t)ngt_rng_below(&r, (uint32_t)net->num_classes);
    for (int j = 0; j < net->input_dim; j++) NGT_AT(X, n, j) = (float)ngt_rng_normal(&r);
  }
  double *t = malloc(sizeof(double) * (size_t)reps);
  double best_upd = 1e30;
  int P = o.update_period;
  /* 12 warm-up steps: NG init happens in the first, and Kaldi's preconditioner updates its
   * Fisher estimate on each of its first 11 calls, then every update-period (4) calls: the
   * timed steps are the steady state of a training run. */
  for (int k = -12; k < reps; k++) {
    double t0 = cpu_now();
    ngt_nnet_forward(net, ws, X);
    ngt_nnet_backward(net, ws, y);
    ngt_optim_step(opt, net, ws, 1e-4f, 1.0f);
    if (k >= 0) t[k] = cpu_now() - t0;
    /* the preconditioners' call counter was k + 12 (ngrad.c: calls 0-10, then every P-th) */
    if (k >= 0 && (k + 12 - 10) % P == 0) {
      if (t[k] < best_upd) best_upd = t[k];
      t[k] = 1e30; /* not a candidate for the best other step */
    }
  }
  /* median */
  for (int i = 1; i < reps; i++)
    for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
      double s = t[j];
      t[j] = t[j - 1];
      t[j - 1] = s;
    }
  double med = t[0]; /* the best repeat, as for the SGEMM reference */
  if (pre == NGT_PRECOND_ONLINE && use_ng && best_upd < 1e30) {
    if (upd) *upd = best_upd;
    if (period) *period = P;
  } else if (best_upd < med) {
    med = best_upd; /* no preconditioner: every step is alike */
  }
  free(t);
  free(y);
  ngt_mat_free(&X);
  ngt_nnet_ws_free(ws);
  ngt_optim_free(opt);
  ngt_nnet_free(net);
  return med;
}

static double step_seconds(const char *cfg, int N, int use_ng, int pre, int reps) {
  return step_seconds_ng(cfg, N, use_ng, pre, reps, NULL, NULL);
}

int main(int argc, char **argv) {
  int reps = argc > 2 && argv[2][0] ? atoi(argv[2]) : 12;
  const char *which = argc > 3 && argv[3][0] ? argv[3] : "all";
  int threads = argc > 4 ? atoi(argv[4]) : 1;
  if (threads < 1) threads = 1;
  g_wall = threads > 1;
  if (reps < 3) reps = 3;
  const char *cfg = speech_cfg;
  char *filecfg = NULL;
  if (argc > 1 && argv[1][0]) {
    ngt_err e = {0};
    if (ngt_read_text_file(argv[1], &filecfg, &e)) ngt_die("%s", e.msg);
    cfg = filecfg;
  }
  ngt_err se = {0};
  if (ngt_engine_setup(NGT_PREC_FP32, threads, &se)) ngt_die("%s", se.msg);
  printf("bench_step: OpenBLAS %s kernels, %d thread(s); OPENBLAS_CORETYPE=%s; ISA %s; "
         "times: %s\n",
         ngt_blas_corename(), ngt_blas_get_threads(),
         getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset: auto-detected)",
         ngt_engine_isa(), g_wall ? "wall clock, best repeat" : "thread CPU time, best repeat");
  const char *why = ngt_engine_bf16_unavailable();
  if (why && strcmp(which, "fp32")) printf("bf16: skipped (%s)\n", why);
  ngt_nnet *net = NULL;
  ngt_err e = {0};
  if (ngt_nnet_from_config(cfg, "bench", &net, &e)) ngt_die("%s", e.msg);
  printf("network: %zu parameters, input %d, %d components\n", net->num_params, net->input_dim,
         net->num_comps);
  const int sizes[2] = {256, 512};
  for (int pr = NGT_PREC_FP32; pr <= NGT_PREC_BF16; pr++) {
    if (strcmp(which, "all") && strcmp(which, ngt_precision_name(pr))) continue;
    if (pr == NGT_PREC_BF16 && why) continue;
    if (ngt_engine_setup(pr, threads, &se)) ngt_die("%s", se.msg);
    const char *pn = ngt_precision_name(pr);
    for (int s = 0; s < 2; s++) {
      int N = sizes[s];
      double fl = step_flops(net, N);
      double tg = gemm_seconds(net, N, reps, pr == NGT_PREC_BF16);
      double tp = step_seconds(cfg, N, 0, NGT_PRECOND_NONE, reps);
      double tu = 0;
      int P = 1;
      double tn = step_seconds_ng(cfg, N, 1, NGT_PRECOND_ONLINE, reps, &tu, &P);
      double ta = tu > 0 ? (tu + (P - 1) * tn) / P : tn;
      double ts = step_seconds(cfg, N, 1, NGT_PRECOND_SIMPLE, reps < 6 ? reps : 6);
      printf("%s minibatch %d: %s on the step's shapes %.1f GFLOP/s\n", pn, N,
             pr == NGT_PREC_BF16 ? "oneDNN bf16 matmul" : "SGEMM", fl / tg * 1e-9);
      printf("  plain step     %7.2f ms  %8.0f frames/s  %.1f GFLOP/s  ratio to GEMM %.2f\n",
             tp * 1e3, N / tp, fl / tp * 1e-9, tg / tp);
      printf("  online NG step %7.2f ms  %8.0f frames/s  NG/plain time ratio %.3f\n", tn * 1e3,
             N / tn, tn / tp);
      printf("  NG amortised   %7.2f ms  %8.0f frames/s  NG/plain time ratio %.3f  (Fisher-update "
             "step %.2f ms, 1 in %d)\n",
             ta * 1e3, N / ta, ta / tp, tu * 1e3, P);
      printf("  simple NG step %7.2f ms  %8.0f frames/s  simple/plain time ratio %.3f\n", ts * 1e3,
             N / ts, ts / tp);
    }
  }
  ngt_nnet_free(net);
  free(filecfg);
  return 0;
}

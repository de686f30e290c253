/* bench_step — one training step (forward + backward + update) of the speech-shaped
 * network (input 40 x 11 spliced, 4 x relu-renorm 1024, output 2000) at minibatch 256
 * and 512 on one thread, against OpenBLAS's own SGEMM rate on the very GEMM shapes of
 * that step, measured in the same run. Prints:
 *   - plain-SGD step: GFLOP/s and its ratio to the SGEMM rate (goal >= 0.80)
 *   - online NG: the best step that does not update the Fisher estimate (3 steps in 4 by
 *     default) against the best plain step; then the cost amortised over the update
 *     period: plain and NG steps run in alternation, in rounds of one period each (one
 *     Fisher update per round), and the NG/plain ratio is the median over the rounds of
 *     the round's NG time / plain time, with its quartiles (goal <= 1.10); its time and
 *     frames/s are the best plain step's times that ratio. Pairing the two in time is what makes the ratio stable on a shared VM,
 *     whose speed moves by 10-20 % between runs minutes apart.
 *   - the simple NG step and its ratio (timed on its own).
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

/* Time the same GEMMs with OpenBLAS SGEMM (through ngt_gemm, as the step), or oneDNN bf16
 * matmul in the layouts the bf16 step uses (best of `reps`). */
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
      /* through ngt_gemm, as the step calls it (with T threads: T blocks, mat.c) */
      /* forward: (N x I)(O x I)^T */
      ngt_gemm(0, 1, 1.0f, ngt_mat_view(A, N, I, I), ngt_mat_view(B, O, I, I), 0.0f,
               ngt_mat_view(Cm, N, O, O));
      /* weight gradient: (N x O)^T (N x I) */
      ngt_gemm(1, 0, 1.0f, ngt_mat_view(A, N, O, O), ngt_mat_view(A, N, I, I), 0.0f,
               ngt_mat_view(Cm, O, I, I));
      /* input derivative: (N x O)(O x I) */
      if (!first)
        ngt_gemm(0, 0, 1.0f, ngt_mat_view(A, N, O, O), ngt_mat_view(B, O, I, I), 0.0f,
                 ngt_mat_view(Cm, N, I, I));
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

/* One training state (network, optimiser, workspace, a fixed minibatch) that can be
 * stepped and timed; two of them (plain and NG) are stepped in alternation so that both see
 * the same moments of a shared machine. */
typedef struct runner {
  ngt_nnet *net;
  ngt_optim *opt;
  ngt_nnet_ws *ws;
  ngt_mat X;
  int32_t *y;
  int period; /* the preconditioner's update period */
  long steps; /* steps so far = the preconditioners' call counter */
} runner;

static void runner_init(runner *r, const char *cfg, int N, int use_ng, int pre) {
  ngt_err e = {0};
  memset(r, 0, sizeof *r);
  if (ngt_nnet_from_config(cfg, "bench", &r->net, &e)) ngt_die("%s", e.msg);
  for (int c = 0; c < r->net->num_comps; c++)
    if (r->net->comps[c].type == NGT_COMP_AFFINE) r->net->comps[c].param_stddev = 0.02f;
  ngt_nnet_init_params(r->net, 1);
  ngt_optim_opts o = ngt_optim_opts_default();
  o.use_natural_gradient = use_ng;
  o.preconditioner = pre;
  if (ngt_optim_new(r->net, &o, N, &r->opt, &e)) ngt_die("%s", e.msg);
  r->period = o.update_period;
  r->ws = ngt_nnet_ws_new(r->net, N);
  r->X = ngt_mat_alloc(N, r->net->input_dim);
  r->y = malloc(sizeof(int32_t) * (size_t)N);
  ngt_rng g = ngt_rng_make(5, NGT_RNG_STREAM_TEST);
  for (int n = 0; n < N; n++) {
    r->y[n] = (int32_t)ngt_rng_below(&g, (uint32_t)r->net->num_classes);
    for (int j = 0; j < r->net->input_dim; j++) NGT_AT(r->X, n, j) = (float)ngt_rng_normal(&g);
  }
}

/* Whether the next step updates the Fisher estimate (ngrad.c: calls 0-10, then every P-th). */
static int runner_updating(const runner *r) {
  return r->steps <= 10 || (r->steps - 10) % r->period == 0;
}

static double runner_step(runner *r) {
  double t0 = cpu_now();
  ngt_nnet_forward(r->net, r->ws, r->X);
  ngt_nnet_backward(r->net, r->ws, r->y);
  ngt_optim_step(r->opt, r->net, r->ws, 1e-4f, 1.0f);
  r->steps++;
  return cpu_now() - t0;
}

static void runner_free(runner *r) {
  free(r->y);
  ngt_mat_free(&r->X);
  ngt_nnet_ws_free(r->ws);
  ngt_optim_free(r->opt);
  ngt_nnet_free(r->net);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v[0..n) and puts its median, lower and upper quartile into q[0..2]. */
static void median_quartiles(double *v, int n, double q[3]) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  q[0] = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  q[1] = v[n / 4];
  q[2] = v[(3 * n) / 4 < n ? (3 * n) / 4 : n - 1];
}

/* Best time of one step of a single configuration (the simple method). */
static double step_seconds(const char *cfg, int N, int use_ng, int pre, int reps) {
  runner r;
  runner_init(&r, cfg, N, use_ng, pre);
  double best = 1e30;
  for (int k = -2; k < reps; k++) {
    double t = runner_step(&r);
    if (k >= 0 && t < best) best = t;
  }
  runner_free(&r);
  return best;
}

/* Plain and online-NG steps in alternation: after 12 warm-up steps each (NG init happens in
 * the first, and Kaldi's preconditioner updates its Fisher estimate on each of its first 11
 * calls, then every update period P = 4 calls), `rounds` rounds of P plain and P NG steps,
 * interleaved, so that a round holds exactly one Fisher update. Per round the NG and plain
 * means; the NG/plain ratio is the median of the rounds' ratios (paired, so a machine whose
 * speed drifts disturbs it little). */
typedef struct paired {
  double plain_best;         /* best single plain step */
  double ng_best_other;      /* best NG step that does not update the estimate */
  double ng_best_upd;        /* best NG step that does */
  double ratio_median;       /* median over rounds of NG round mean / plain round mean */
  double ratio_lo, ratio_hi; /* the rounds' quartiles of that ratio */
  int period, rounds;
} paired;

static paired step_paired(const char *cfg, int N, int rounds) {
  runner pl, ng;
  runner_init(&pl, cfg, N, 0, NGT_PRECOND_NONE);
  runner_init(&ng, cfg, N, 1, NGT_PRECOND_ONLINE);
  for (int k = 0; k < 12; k++) {
    runner_step(&pl);
    runner_step(&ng);
  }
  paired o = {1e30, 1e30, 1e30, 0, 0, 0, ng.period, rounds};
  double *ratio = malloc(sizeof(double) * (size_t)rounds);
  for (int q = 0; q < rounds; q++) {
    double tp = 0, tn = 0;
    for (int i = 0; i < ng.period; i++) {
      double a = runner_step(&pl);
      int upd = runner_updating(&ng);
      double b = runner_step(&ng);
      tp += a;
      tn += b;
      if (a < o.plain_best) o.plain_best = a;
      if (upd && b < o.ng_best_upd) o.ng_best_upd = b;
      if (!upd && b < o.ng_best_other) o.ng_best_other = b;
    }
    ratio[q] = tn / tp;
  }
  double q[3];
  median_quartiles(ratio, rounds, q);
  o.ratio_median = q[0];
  o.ratio_lo = q[1];
  o.ratio_hi = q[2];
  free(ratio);
  runner_free(&pl);
  runner_free(&ng);
  return o;
}

/* T threads against one, paired: the same plain and NG training states, in rounds of one
 * update period each at 1 thread and then at T threads (ngt_engine_setup switches the
 * precision's pool; oneDNN primitives are cached per thread count), wall clock. The
 * speed-up of a round is its 1-thread time / its T-thread time; medians over the rounds. */
static void threads_paired(const char *cfg, int N, int rounds, int pr, int T, double *plain,
                           double *ng) {
  runner r[2];
  runner_init(&r[0], cfg, N, 0, NGT_PRECOND_NONE);
  runner_init(&r[1], cfg, N, 1, NGT_PRECOND_ONLINE);
  double *sp = malloc(sizeof(double) * 2 * (size_t)rounds);
  ngt_err e = {0};
  for (int w = 0; w < 2; w++) /* warm-up: both thread counts, past the 11 initial updates */
    for (int k = 0; k < 6; k++)
      for (int t = 0; t < 2; t++) {
        if (ngt_engine_setup(pr, t ? T : 1, &e)) ngt_die("%s", e.msg);
        runner_step(&r[w]);
      }
  for (int q = 0; q < rounds; q++)
    for (int w = 0; w < 2; w++) {
      double tt[2] = {0, 0};
      for (int t = 0; t < 2; t++) {
        if (ngt_engine_setup(pr, t ? T : 1, &e)) ngt_die("%s", e.msg);
        for (int i = 0; i < r[w].period; i++) tt[t] += runner_step(&r[w]);
      }
      sp[w * rounds + q] = tt[0] / tt[1];
    }
  for (int w = 0; w < 2; w++) median_quartiles(sp + w * rounds, rounds, w ? ng : plain);
  if (ngt_engine_setup(pr, T, &e)) ngt_die("%s", e.msg);
  free(sp);
  runner_free(&r[0]);
  runner_free(&r[1]);
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
      paired pq = step_paired(cfg, N, reps);
      double ts = step_seconds(cfg, N, 1, NGT_PRECOND_SIMPLE, reps < 6 ? reps : 6);
      /* NG amortised = the best plain step x the paired median ratio: on the same "best
       * step" footing as the plain step, the GEMM reference and the peer's figure */
      double tp = pq.plain_best, tn = pq.ng_best_other, ta = tp * pq.ratio_median;
      printf("%s minibatch %d: %s on the step's shapes %.1f GFLOP/s\n", pn, N,
             pr == NGT_PREC_BF16 ? "oneDNN bf16 matmul" : "SGEMM", fl / tg * 1e-9);
      printf("  plain step     %7.2f ms  %8.0f frames/s  %.1f GFLOP/s  ratio to GEMM %.2f\n",
             tp * 1e3, N / tp, fl / tp * 1e-9, tg / tp);
      printf("  online NG step %7.2f ms  %8.0f frames/s  NG/plain time ratio %.3f\n", tn * 1e3,
             N / tn, tn / tp);
      printf("  NG amortised   %7.2f ms  %8.0f frames/s  NG/plain time ratio %.3f  (median of %d "
             "paired rounds, quartiles %.3f-%.3f; Fisher-update step %.2f ms, 1 in %d)\n",
             ta * 1e3, N / ta, pq.ratio_median, pq.rounds, pq.ratio_lo, pq.ratio_hi,
             pq.ng_best_upd * 1e3, pq.period);
      if (threads > 1) {
        int wall = g_wall;
        g_wall = 1;
        double sp[3], sn[3];
        threads_paired(cfg, N, reps, pr, threads, sp, sn);
        g_wall = wall;
        printf("  %d threads / 1 thread, paired (wall clock, median of %d rounds, quartiles): "
               "plain %.2f (%.2f-%.2f), NG %.2f (%.2f-%.2f)\n",
               threads, reps, sp[0], sp[1], sp[2], sn[0], sn[1], sn[2]);
      }
      printf("  simple NG step %7.2f ms  %8.0f frames/s  simple/plain time ratio %.3f\n", ts * 1e3,
             N / ts, ts / tp);
    }
  }
  ngt_nnet_free(net);
  free(filecfg);
  return 0;
}

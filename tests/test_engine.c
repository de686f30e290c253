/* test_engine.c — Check suite for src/engine.c and the bf16 paths of nnet.c / optim.c.
 *
 * bf16 tolerances (bf16 has an 8-bit significand: unit roundoff u = 2^-8 = 0.0039):
 *   - rounding: |bf16(x) - x| <= 2^-8 |x| (round to nearest even), NaN stays NaN;
 *   - GEMM: against a double reference on the bf16-rounded operands, the error is fp32
 *     accumulation only: <= 1e-5 * sum_k |a_ik b_kj|; against the unrounded fp32 operands
 *     <= 2.01 * 2^-8 * sum_k |a_ik b_kj| (both operands rounded);
 *   - network: bf16 and fp32 log-probabilities of a small relu-renorm net agree within
 *     0.05 absolute, and the bf16 step's parameter change has cosine >= 0.99 with fp32's.
 * Exact properties: the same bf16 step twice from the same state is bit-identical
 * (resume within a precision), and stepping creates no primitives after the first step.
 * A model trained in bf16 evaluates in fp32 (and vice versa) to within 0.02 per frame.
 * The NG preconditioner in bf16 mode (bf16 GEMMs on the calls that do not update the
 * Fisher estimate): its state stays identical to fp32's (updates are fp32 on the same
 * inputs), each X^ has cosine >= 0.999 with fp32's and differs from it by <= 2^-6 ||X||_F
 * (bf16 rounding of X, H and W, ~3u ||X||; relative to ||X^|| the error is larger where NG
 * cancels strong directions), gamma within 2%, and X^ . X > 0 (a descent direction, §6).
 * Where bf16 cannot run (no oneDNN in the build, or no avx512_bf16/amx on the CPU) the
 * bf16 tests print "SKIPPED: <why>" and pass; the fp32 checks still run.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/engine.h"
#include "ngtrain/ngrad.h"
#include "ngtrain/nnet.h"
#include "ngtrain/optim.h"
#include "ngtrain/rng.h"

static int bf16_or_skip(const char *test) {
  const char *why = ngt_engine_bf16_unavailable();
  if (why) {
    printf("%s: SKIPPED: %s\n", test, why);
    return 0;
  }
  return 1;
}

static void fill_normal(float *x, size_t n, uint64_t seed, double scale) {
  ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_TEST);
  for (size_t i = 0; i < n; i++) x[i] = (float)(scale * ngt_rng_normal(&r));
}

/* Rows with a few strong directions plus isotropic noise, what NG is for: noise of scale 0.3
 * (stream `seed`) plus nb rows of `basis` (X.cols wide) with N(0, 9) coefficients, row n's
 * from stream coef_seed + n. */
static void fill_structured(ngt_mat X, const float *basis, int nb, uint64_t seed,
                            uint64_t coef_seed) {
  float coef[16];
  NGT_ASSERT(nb <= 16 && X.stride == X.cols);
  fill_normal(X.data, (size_t)X.rows * X.cols, seed, 0.3);
  for (int n = 0; n < X.rows; n++) {
    fill_normal(coef, (size_t)nb, coef_seed + (uint64_t)n, 3.0);
    for (int k = 0; k < nb; k++)
      for (int j = 0; j < X.cols; j++) NGT_AT(X, n, j) += coef[k] * basis[k * X.cols + j];
  }
}

START_TEST(test_precision_parse_and_setup) {
  int p = -1;
  ngt_err e = {0};
  ck_assert_int_eq(ngt_precision_parse("auto", &p, &e), 0);
  ck_assert_int_eq(p, NGT_PREC_AUTO);
  ck_assert_int_eq(ngt_precision_parse("fp32", &p, &e), 0);
  ck_assert_int_eq(p, NGT_PREC_FP32);
  ck_assert_int_eq(ngt_precision_parse("bf16", &p, &e), 0);
  ck_assert_int_eq(p, NGT_PREC_BF16);
  ck_assert_int_ne(ngt_precision_parse("fp16", &p, &e), 0);
  ck_assert_ptr_nonnull(strstr(e.msg, "fp16"));
  ck_assert_int_ne(ngt_engine_setup(NGT_PREC_FP32, 0, &e), 0);
  ck_assert_int_eq(ngt_engine_setup(NGT_PREC_AUTO, 1, &e), 0);
  const char *why = ngt_engine_bf16_unavailable();
  ck_assert_int_eq(ngt_engine_precision(), why ? NGT_PREC_FP32 : NGT_PREC_BF16);
  memset(&e, 0, sizeof e);
  int rc = ngt_engine_setup(NGT_PREC_BF16, 1, &e);
  if (why) {
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_nonnull(strstr(e.msg, "bf16"));
  } else {
    ck_assert_int_eq(rc, 0);
  }
  char line[512];
  ck_assert_int_eq(ngt_engine_setup(NGT_PREC_FP32, 1, &e), 0);
  ngt_engine_describe(line, sizeof line);
  ck_assert_ptr_nonnull(strstr(line, "precision fp32"));
  ck_assert_ptr_nonnull(strstr(line, "ISA"));
  ck_assert_ptr_nonnull(strstr(line, "thread"));
}
END_TEST

START_TEST(test_bf16_rounding) {
  float x[1000];
  fill_normal(x, 1000, 3, 10.0);
  x[0] = 1.0f + 0x1.0p-8f;     /* halfway between 1 and 1+2^-7: even is 1 */
  x[1] = 1.0f + 3 * 0x1.0p-8f; /* halfway, rounds up to 1+2^-6 */
  x[2] = NAN;
  x[3] = INFINITY;
  uint16_t b[1000];
  float y[1000];
  ngt_bf16_from_f32(b, 1000, x, 1000, 1, 1000, 1.0f);
  ngt_bf16_to_f32(y, 1000, b, 1000, 1, 1000);
  ck_assert(y[0] == 1.0f);
  ck_assert(y[1] == 1.0f + 0x1.0p-6f);
  ck_assert(isnan(y[2]));
  ck_assert(isinf(y[3]) && y[3] > 0);
  for (int i = 4; i < 1000; i++) {
    ck_assert_msg(fabsf(y[i] - x[i]) <= 0x1.0p-8f * fabsf(x[i]), "x=%g y=%g", x[i], y[i]);
    ck_assert(y[i] == ngt_bf16_round(x[i]));
  }
}
END_TEST

/* Every transpose combination, strided operands, with and without bias. */
START_TEST(test_gemm_bf16_vs_reference) {
  if (!bf16_or_skip("test_gemm_bf16_vs_reference")) return;
  const int m = 37, n = 53, k = 300, pad = 5;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int wb = 0; wb < 2; wb++) {
        int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
        int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
        float *A = calloc((size_t)ar * lda, sizeof(float)),
              *B = calloc((size_t)br * ldb, sizeof(float));
        float *C = calloc((size_t)m * ldc, sizeof(float)), bias[53];
        uint16_t *Ab = calloc((size_t)ar * lda, 2), *Bb = calloc((size_t)br * ldb, 2);
        fill_normal(A, (size_t)ar * lda, 10 + ta, 1.0);
        fill_normal(B, (size_t)br * ldb, 20 + tb, 1.0);
        fill_normal(bias, 53, 30, 1.0);
        ngt_bf16_from_f32(Ab, lda, A, lda, ar, ac, 1.0f);
        ngt_bf16_from_f32(Bb, ldb, B, ldb, br, bc, 1.0f);
        ngt_gemm_bf16(ta, tb, m, n, k, Ab, lda, Bb, ldb, wb ? bias : NULL, C, ldc);
        for (int i = 0; i < m; i++)
          for (int j = 0; j < n; j++) {
            double exact = 0, rounded = 0, mag = 0;
            for (int q = 0; q < k; q++) {
              float a = ta ? A[(size_t)q * lda + i] : A[(size_t)i * lda + q];
              float b = tb ? B[(size_t)j * ldb + q] : B[(size_t)q * ldb + j];
              exact += (double)a * b;
              rounded += (double)ngt_bf16_round(a) * ngt_bf16_round(b);
              mag += fabs((double)a * b);
            }
            double bb = wb ? bias[j] : 0.0;
            double c = C[(size_t)i * ldc + j];
            ck_assert_msg(fabs(c - rounded - bb) <= 1e-5 * (mag + fabs(bb)),
                          "ta=%d tb=%d bias=%d (%d,%d): %g vs bf16-operand reference %g", ta, tb,
                          wb, i, j, c, rounded + bb);
            ck_assert_msg(fabs(c - exact - bb) <= 2.01 * 0x1.0p-8 * mag + 1e-5 * fabs(bb),
                          "ta=%d tb=%d (%d,%d): %g vs fp32 reference %g", ta, tb, i, j, c,
                          exact + bb);
          }
        free(A);
        free(B);
        free(C);
        free(Ab);
        free(Bb);
      }
}
END_TEST

static const char *cfg = "input dim=8 context=-1..1\n"
                         "layer type=relu-renorm dim=48\n"
                         "layer type=relu-renorm dim=40\n"
                         "output dim=12 param-stddev=0.1 bias-stddev=0.1\n";

typedef struct run {
  ngt_nnet *net;
  ngt_nnet_ws *ws;
  ngt_optim *opt;
} run;

static run run_new(int prec, int use_ng, int N) {
  ngt_err e = {0};
  ck_assert_int_eq(ngt_engine_setup(prec, 1, &e), 0);
  run r;
  ck_assert_int_eq(ngt_nnet_from_config(cfg, "t", &r.net, &e), 0);
  ngt_nnet_init_params(r.net, 7);
  ngt_optim_opts o = ngt_optim_opts_default();
  o.use_natural_gradient = use_ng;
  ck_assert_int_eq(ngt_optim_new(r.net, &o, N, &r.opt, &e), 0);
  r.ws = ngt_nnet_ws_new(r.net, N);
  ck_assert_int_eq(r.ws->precision, prec);
  return r;
}
static void run_free(run *r) {
  ngt_nnet_ws_free(r->ws);
  ngt_optim_free(r->opt);
  ngt_nnet_free(r->net);
}
static void batch(ngt_mat X, int32_t *y, int C, uint64_t seed) {
  fill_normal(X.data, (size_t)X.rows * X.cols, seed, 1.0);
  for (int n = 0; n < X.rows; n++) y[n] = (int32_t)((n * 7 + (int)seed) % C);
}
static double train_steps(run *r, int steps, uint64_t seed) {
  ngt_mat X = ngt_mat_alloc(r->ws->max_rows, r->net->input_dim);
  int32_t *y = malloc(sizeof(int32_t) * (size_t)X.rows);
  double obj = 0;
  for (int s = 0; s < steps; s++) {
    batch(X, y, r->net->num_classes, seed + (uint64_t)s);
    ngt_nnet_forward(r->net, r->ws, X);
    obj = ngt_nnet_objective(r->net, r->ws, y, NULL) / X.rows;
    ngt_nnet_backward(r->net, r->ws, y);
    ck_assert_int_eq(ngt_optim_step(r->opt, r->net, r->ws, 0.01f, 1.0f), 1);
  }
  free(y);
  ngt_mat_free(&X);
  return obj;
}

START_TEST(test_network_bf16_close_to_fp32) {
  if (!bf16_or_skip("test_network_bf16_close_to_fp32")) return;
  const int N = 64;
  for (int ng = 0; ng < 2; ng++) {
    run a = run_new(NGT_PREC_FP32, ng, N), b = run_new(NGT_PREC_BF16, ng, N);
    ngt_mat X = ngt_mat_alloc(N, a.net->input_dim);
    int32_t y[64];
    batch(X, y, a.net->num_classes, 99);
    ngt_nnet_forward(a.net, a.ws, X);
    ngt_nnet_forward(b.net, b.ws, X);
    ngt_mat la = a.ws->out[a.net->num_comps - 1], lb = b.ws->out[b.net->num_comps - 1];
    for (int i = 0; i < N; i++)
      for (int j = 0; j < la.cols; j++)
        ck_assert_msg(fabsf(NGT_AT(la, i, j) - NGT_AT(lb, i, j)) < 0.05f, "%g vs %g",
                      NGT_AT(la, i, j), NGT_AT(lb, i, j));
    size_t P = a.net->num_params;
    float *p0 = malloc(sizeof(float) * P);
    memcpy(p0, a.net->params, sizeof(float) * P);
    ngt_nnet_backward(a.net, a.ws, y);
    ngt_nnet_backward(b.net, b.ws, y);
    ck_assert_int_eq(ngt_optim_step(a.opt, a.net, a.ws, 0.01f, 1.0f), 1);
    ck_assert_int_eq(ngt_optim_step(b.opt, b.net, b.ws, 0.01f, 1.0f), 1);
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < P; i++) {
      double da = a.net->params[i] - p0[i], db = b.net->params[i] - p0[i];
      dot += da * db;
      na += da * da;
      nb += db * db;
    }
    double cosv = dot / sqrt(na * nb);
    ck_assert_msg(na > 0 && cosv >= 0.99, "NG=%d: cosine of bf16 and fp32 steps %g", ng, cosv);
    free(p0);
    ngt_mat_free(&X);
    run_free(&a);
    run_free(&b);
  }
}
END_TEST

/* Same state, same data, same precision: bit-identical (what resume relies on); no
 * primitive is created after the first step. */
START_TEST(test_bf16_deterministic_and_cached) {
  if (!bf16_or_skip("test_bf16_deterministic_and_cached")) return;
  run a = run_new(NGT_PREC_BF16, 1, 32), b = run_new(NGT_PREC_BF16, 1, 32);
  train_steps(&a, 1, 5);
  int np = ngt_engine_num_primitives();
  train_steps(&a, 9, 6);
  ck_assert_int_eq(ngt_engine_num_primitives(), np);
  train_steps(&b, 1, 5);
  train_steps(&b, 9, 6);
  ck_assert(memcmp(a.net->params, b.net->params, sizeof(float) * a.net->num_params) == 0);
  run_free(&a);
  run_free(&b);
}
END_TEST

/* --num-threads=2 (one OpenMP pool: the GEMMs split into blocks or run by oneDNN, and the
 * optimiser's layers' NG calls and gradient GEMMs one layer per thread; docs/design.md §4):
 * two runs are bit-identical, and they stay close to the one-thread run (a GEMM's summation
 * order may differ with the thread count). fp32 and (where it runs) bf16, plain and NG. */
START_TEST(test_threads) {
  ngt_err e = {0};
  for (int prec = NGT_PREC_FP32; prec <= NGT_PREC_BF16; prec++) {
    if (prec == NGT_PREC_BF16 && !bf16_or_skip("test_threads (bf16)")) continue;
    for (int ng = 0; ng < 2; ng++) {
      run a = run_new(prec, ng, 64), b = run_new(prec, ng, 64), c = run_new(prec, ng, 64);
      float *p0 = malloc(sizeof(float) * a.net->num_params);
      memcpy(p0, a.net->params, sizeof(float) * a.net->num_params);
      ck_assert_int_eq(ngt_engine_setup(prec, 2, &e), 0);
      ck_assert_int_eq(ngt_omp_threads(), 2);
      train_steps(&a, 16, 21);
      train_steps(&b, 16, 21);
      ck_assert_int_eq(ngt_engine_setup(prec, 1, &e), 0);
      train_steps(&c, 16, 21);
      ck_assert(memcmp(a.net->params, b.net->params, sizeof(float) * a.net->num_params) == 0);
      double dot = 0, na = 0, nc = 0;
      for (size_t i = 0; i < a.net->num_params; i++) {
        double da = (double)a.net->params[i] - p0[i], dc = (double)c.net->params[i] - p0[i];
        dot += da * dc;
        na += da * da;
        nc += dc * dc;
      }
      ck_assert_msg(na > 0 && dot / sqrt(na * nc) >= 0.99,
                    "%s NG=%d: cosine of the 2-thread and 1-thread changes %g",
                    ngt_precision_name(prec), ng, dot / sqrt(na * nc));
      free(p0);
      run_free(&a);
      run_free(&b);
      run_free(&c);
    }
  }
}
END_TEST

/* ngt_gemm split over T threads (blocks of rows, or of columns when C has few rows) against
 * the one-thread call, every transpose, odd shapes: each element is one single-threaded SGEMM
 * over the whole K, but OpenBLAS may order that sum differently for another block shape, so
 * the values agree to fp32 rounding (2e-5 relative, K <= 300 unit-normal terms) not bits. */
START_TEST(test_gemm_threads) {
  ngt_err e = {0};
  const int shapes[][3] = {{300, 170, 90}, {20, 700, 300}, {129, 129, 129}};
  for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int m = shapes[q][0], n = shapes[q][1], k = shapes[q][2];
        ngt_mat A = ta ? ngt_mat_alloc(k, m) : ngt_mat_alloc(m, k);
        ngt_mat B = tb ? ngt_mat_alloc(n, k) : ngt_mat_alloc(k, n);
        ngt_mat C1 = ngt_mat_alloc(m, n), C2 = ngt_mat_alloc(m, n);
        fill_normal(A.data, (size_t)A.rows * A.cols, 60 + q, 1.0);
        fill_normal(B.data, (size_t)B.rows * B.cols, 70 + q, 1.0);
        fill_normal(C1.data, (size_t)m * n, 80 + q, 1.0);
        ngt_mat_copy(C2, C1);
        ck_assert_int_eq(ngt_engine_setup(NGT_PREC_FP32, 1, &e), 0);
        ngt_gemm(ta, tb, 0.5f, A, B, 1.0f, C1);
        ck_assert_int_eq(ngt_engine_setup(NGT_PREC_FP32, 3, &e), 0);
        ngt_gemm(ta, tb, 0.5f, A, B, 1.0f, C2);
        for (size_t i = 0; i < (size_t)m * n; i++)
          ck_assert_msg(fabsf(C1.data[i] - C2.data[i]) <= 2e-5f * (1.0f + fabsf(C1.data[i])),
                        "shape %zu ta %d tb %d: %g vs %g", q, ta, tb, (double)C1.data[i],
                        (double)C2.data[i]);
        ngt_mat_free(&A), ngt_mat_free(&B), ngt_mat_free(&C1), ngt_mat_free(&C2);
      }
  ck_assert_int_eq(ngt_engine_setup(NGT_PREC_FP32, 1, &e), 0);
}
END_TEST

/* Train in one precision, evaluate in the other. */
static double eval_obj(const ngt_nnet *net, int prec) {
  ngt_err e = {0};
  ck_assert_int_eq(ngt_engine_setup(prec, 1, &e), 0);
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 128);
  ngt_mat X = ngt_mat_alloc(128, net->input_dim);
  int32_t y[128];
  batch(X, y, net->num_classes, 1234);
  ngt_nnet_forward(net, ws, X);
  double o = ngt_nnet_objective(net, ws, y, NULL) / 128;
  ngt_nnet_ws_free(ws);
  ngt_mat_free(&X);
  return o;
}

START_TEST(test_cross_precision_eval) {
  if (!bf16_or_skip("test_cross_precision_eval")) return;
  for (int p = NGT_PREC_FP32; p <= NGT_PREC_BF16; p++) {
    run r = run_new(p, 1, 64);
    double o0 = eval_obj(r.net, p);
    ngt_engine_setup(p, 1, &(ngt_err){0});
    train_steps(&r, 30, 77);
    double same = eval_obj(r.net, p);
    double other = eval_obj(r.net, p == NGT_PREC_FP32 ? NGT_PREC_BF16 : NGT_PREC_FP32);
    ck_assert_msg(same > o0, "training in %s did not improve: %g -> %g", ngt_precision_name(p), o0,
                  same);
    ck_assert_msg(fabs(same - other) < 0.02, "trained in %s: %g here, %g in the other precision",
                  ngt_precision_name(p), same, other);
    run_free(&r);
  }
}
END_TEST

/* The NG preconditioner's two bf16 kernels against a double reference on the same bf16
 * operands, on awkward shapes (rows not a multiple of 8 or 4, columns not of 32, odd rank),
 * in the AVX-512 BF16 code (where the CPU has it) and the scalar code: fp32 accumulation of
 * K products, so |error| <= 1e-5 * sum |terms| (+ the output's own bf16 rounding, 2^-8). */
START_TEST(test_bf16_lowrank_kernels) {
  const int shapes[][3] = {{13, 45, 7}, {16, 64, 20}, {37, 1000, 80}, {1, 5, 1}, {9, 33, 2}};
  for (int generic = 0; generic < 2; generic++) {
    if (!generic && !ngt_cpu_avx512bf16()) {
      printf("test_bf16_lowrank_kernels: AVX-512 BF16 code SKIPPED: CPU lacks avx512_bf16\n");
      continue;
    }
    ngt_bf16_set_generic(generic);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      const int N = shapes[s][0], D = shapes[s][1], R = shapes[s][2], Rp = R + (R & 1);
      const int ldx = D + 3, ldy = D + 1;
      float *X = malloc(sizeof(float) * (size_t)N * ldx), *W = malloc(sizeof(float) * R * D);
      float *H = malloc(sizeof(float) * (size_t)N * R), *c = malloc(sizeof(float) * N);
      float *v = calloc((size_t)D, sizeof(float)), *Hc = malloc(sizeof(float) * (size_t)N * R);
      float *bias = malloc(sizeof(float) * R);
      uint16_t *Hn = calloc((size_t)N * Rp, sizeof(uint16_t)), *Y = malloc(2 * (size_t)N * ldy);
      uint16_t *Wp = malloc(2 * 2 * (size_t)((R + 1) / 2) * (size_t)ngt_bf16_pack_cols(D));
      uint16_t *Xb = malloc(2 * (size_t)N * ldx), *Wb = malloc(2 * (size_t)R * D);
      fill_normal(X, (size_t)N * ldx, 7 + s, 1.0);
      fill_normal(W, (size_t)R * D, 8 + s, 0.3);
      fill_normal(H, (size_t)N * R, 9 + s, 1.0);
      fill_normal(c, (size_t)N, 10 + s, 1.0);
      fill_normal(bias, (size_t)R, 11 + s, 1.0);
      ngt_bf16_from_f32(Hn, Rp, H, R, N, R, -1.0f);
      ngt_bf16_pack_pairs(Wp, W, D, R, D);
      double ss = ngt_bf16_lowrank_update(N, D, X, ldx, Hn, Rp, R, Wp, Y, ldy, c, v);
      double ss_ref = 0.0, ss_mag = 0.0;
      double *col = calloc((size_t)D, sizeof(double)), *colmag = calloc((size_t)D, sizeof(double));
      for (int n = 0; n < N; n++)
        for (int j = 0; j < D; j++) {
          double a = X[(size_t)n * ldx + j], mag = fabs(a);
          for (int r = 0; r < R; r++) {
            double t = (double)ngt_bf16_round(-H[(size_t)n * R + r]) *
                       ngt_bf16_round(W[(size_t)r * D + j]);
            a += t;
            mag += fabs(t);
          }
          float y = ngt_bf16_value(Y[(size_t)n * ldy + j]);
          ck_assert_msg(fabs(y - a) <= 1e-5 * mag + 0x1.0p-8 * fabs(a) + 1e-30,
                        "generic %d shape %zu: Y[%d][%d] = %g, reference %g", generic, s, n, j,
                        (double)y, a);
          ss_ref += a * a;
          ss_mag += mag * mag;
          col[j] += c[n] * a;
          colmag[j] += fabs(c[n]) * mag;
        }
      ck_assert_msg(fabs(ss - ss_ref) <= 1e-5 * ss_mag, "generic %d shape %zu: %g vs %g", generic,
                    s, ss, ss_ref);
      for (int j = 0; j < D; j++)
        ck_assert_msg(fabs(v[j] - col[j]) <= 1e-5 * colmag[j] + 1e-30,
                      "generic %d shape %zu: v[%d] = %g, reference %g", generic, s, j,
                      (double)v[j], col[j]);
      /* H = X W^T + bias from the bf16 copies */
      ngt_bf16_from_f32(Xb, ldx, X, ldx, N, D, 1.0f);
      ngt_bf16_from_f32(Wb, D, W, D, R, D, 1.0f);
      ngt_bf16_gemm_thin(N, R, D, Xb, ldx, Wb, D, bias, Hc, R);
      for (int n = 0; n < N; n++)
        for (int r = 0; r < R; r++) {
          double a = bias[r], mag = fabs(bias[r]);
          for (int j = 0; j < D; j++) {
            double t = (double)ngt_bf16_round(X[(size_t)n * ldx + j]) *
                       ngt_bf16_round(W[(size_t)r * D + j]);
            a += t;
            mag += fabs(t);
          }
          ck_assert_msg(fabs(Hc[(size_t)n * R + r] - a) <= 1e-5 * mag,
                        "generic %d shape %zu: H[%d][%d] = %g, reference %g", generic, s, n, r,
                        (double)Hc[(size_t)n * R + r], a);
        }
      free(X), free(W), free(H), free(c), free(v), free(Hc), free(bias), free(Hn), free(Y);
      free(Wp), free(Xb), free(Wb), free(col), free(colmag);
    }
  }
  ngt_bf16_set_generic(0);
}
END_TEST

/* The optimiser's fused bf16 call (ngt_ngrad_precondition_bf16: rows [x, 1] read from X and
 * its bf16 copy, X not modified) against the fp32 preconditioner on a copy of [X, 1]: the
 * same tolerances as the bf16 mode above (estimates within 1 %, X^ within 2^-6 of ||X||,
 * γ within 2 %), and the bias-gradient sum c^T X^ of an output-side call against the fp32
 * X^. Odd rank and row counts exercise the kernels' tails; both code paths where possible. */
START_TEST(test_ngrad_fused_matches_fp32) {
  if (!bf16_or_skip("test_ngrad_fused_matches_fp32")) return;
  for (int generic = 0; generic < 2; generic++) {
    ngt_bf16_set_generic(generic);
    const int N = 61, Dx = 150, D = Dx + 1;
    ngt_ngrad_opts o = ngt_ngrad_opts_default();
    o.rank = 15;
    ngt_err e = {0};
    ngt_ngrad a, b, g;
    ck_assert_int_eq(ngt_ngrad_init(&a, D, &o, &e), 0);
    ck_assert_int_eq(ngt_ngrad_init(&b, D, &o, &e), 0);
    ck_assert_int_eq(ngt_ngrad_init(&g, Dx, &o, &e), 0);
    b.bf16 = g.bf16 = 1;
    ngt_mat X = ngt_mat_alloc(N, Dx), Xt = ngt_mat_alloc(N, D), X0 = ngt_mat_alloc(N, Dx);
    uint16_t *Xb = malloc(2 * (size_t)N * Dx), *Y = malloc(2 * (size_t)N * Dx);
    uint16_t *Yg = malloc(2 * (size_t)N * Dx);
    float *last = malloc(sizeof(float) * N), *v = malloc(sizeof(float) * Dx), ones[61];
    float *basis = malloc(sizeof(float) * 6 * Dx);
    fill_normal(basis, (size_t)6 * Dx, 43, 1.0);
    for (int n = 0; n < N; n++) ones[n] = 1.0f;
    double worst = 0;
    for (int t = 0; t < 30; t++) {
      fill_structured(X, basis, 6, 200 + (uint64_t)t, 2000 + (uint64_t)(t * N));
      for (int n = 0; n < N; n++) {
        memcpy(&NGT_AT(Xt, n, 0), &NGT_AT(X, n, 0), sizeof(float) * Dx);
        NGT_AT(Xt, n, Dx) = 1.0f;
      }
      ngt_mat_copy(X0, X);
      ngt_bf16_from_f32(Xb, Dx, X.data, X.stride, N, Dx, 1.0f);
      float ga = 0, gb = 0, gg = 0;
      ngt_ngrad_precondition(&a, Xt, &ga);
      ngt_ngrad_bf16_io io = {
          .X = X, .Xb = Xb, .ldxb = Dx, .ones = 1, .out = Y, .ldo = Dx, .last = last};
      ngt_ngrad_precondition_bf16(&b, &io, &gb);
      /* an output-side call on the same rows, summing c^T X^ with c = ones */
      memset(v, 0, sizeof(float) * Dx);
      ngt_ngrad_bf16_io og = {
          .X = X, .Xb = Xb, .ldxb = Dx, .out = Yg, .ldo = Dx, .c = ones, .v = v};
      ngt_ngrad_precondition_bf16(&g, &og, &gg);
      for (size_t i = 0; i < (size_t)N * Dx; i++) ck_assert(X.data[i] == X0.data[i]);
      ck_assert_msg(fabs(a.rho - b.rho) <= 0.01 * a.rho, "generic %d call %d: rho %g vs %g",
                    generic, t, a.rho, b.rho);
      double sda = 0, sdb = 0;
      for (int i = 0; i < a.R; i++) sda += a.d[i], sdb += b.d[i];
      ck_assert_msg(fabs(sda - sdb) <= 0.01 * sda, "call %d: sum d %g vs %g", t, sda, sdb);
      double dd = 0, xx = 0, yz = 0, yy = 0, zz = 0;
      for (int n = 0; n < N; n++)
        for (int j = 0; j <= Dx; j++) {
          double ya = NGT_AT(Xt, n, j), yb;
          yb = j < Dx ? ngt_bf16_value(Y[(size_t)n * Dx + j]) : last[n];
          double x = j < Dx ? NGT_AT(X, n, j) : 1.0;
          dd += (ya - yb) * (ya - yb);
          xx += x * x;
          yz += ya * yb, yy += ya * ya, zz += yb * yb;
        }
      ck_assert_msg(yz / sqrt(yy * zz) >= 0.999, "call %d: cosine %g", t, yz / sqrt(yy * zz));
      ck_assert_msg(sqrt(dd / xx) <= 0x1.0p-6, "call %d: difference %g of ||X||", t,
                    sqrt(dd / xx));
      ck_assert_msg(fabsf(ga - gb) <= 0.02f * ga, "call %d: gamma %g vs %g", t, ga, gb);
      if (sqrt(dd / xx) > worst) worst = sqrt(dd / xx);
      /* c^T X^ of the output-side call = the column sums of its own bf16-free X^: compare
       * with the sums of its rounded output (rounding 2^-8 per term, random signs) */
      for (int j = 0; j < Dx; j++) {
        double s = 0, mag = 0;
        for (int n = 0; n < N; n++) {
          float f = ngt_bf16_value(Yg[(size_t)n * Dx + j]);
          s += f;
          mag += fabs(f);
        }
        ck_assert_msg(fabs(v[j] - s) <= 0x1.0p-7 * mag + 1e-6, "call %d: v[%d] %g vs %g", t, j,
                      (double)v[j], s);
      }
    }
    ck_assert(a.stats.num_updates == b.stats.num_updates && b.stats.num_updates > 10);
    printf("ngrad fused bf16 (%s code) vs fp32: X^ within %.2g of ||X||\n",
           generic ? "scalar" : "AVX-512 BF16", worst);
    free(basis), free(Xb), free(Y), free(Yg), free(last), free(v);
    ngt_mat_free(&X), ngt_mat_free(&Xt), ngt_mat_free(&X0);
    ngt_ngrad_deinit(&a), ngt_ngrad_deinit(&b), ngt_ngrad_deinit(&g);
  }
  ngt_bf16_set_generic(0);
}
END_TEST

START_TEST(test_ngrad_bf16_matches_fp32) {
  if (!bf16_or_skip("test_ngrad_bf16_matches_fp32")) return;
  const int N = 128, D = 300;
  ngt_ngrad_opts o = ngt_ngrad_opts_default();
  o.rank = 20;
  ngt_err e = {0};
  ngt_ngrad a, b;
  ck_assert_int_eq(ngt_ngrad_init(&a, D, &o, &e), 0);
  ck_assert_int_eq(ngt_ngrad_init(&b, D, &o, &e), 0);
  b.bf16 = 1;
  ngt_mat X = ngt_mat_alloc(N, D), Y = ngt_mat_alloc(N, D), Z = ngt_mat_alloc(N, D);
  float *basis = malloc(sizeof(float) * 8 * D);
  fill_normal(basis, (size_t)8 * D, 41, 1.0);
  int compared = 0;
  double worst = 0;
  for (int t = 0; t < 40; t++) {
    fill_structured(X, basis, 8, 100 + (uint64_t)t, 1000 + (uint64_t)(t * N));
    ngt_mat_copy(Y, X);
    ngt_mat_copy(Z, X);
    float ga = 0, gb = 0;
    ngt_ngrad_precondition(&a, Y, &ga);
    ngt_ngrad_precondition(&b, Z, &gb);
    /* The estimates agree: bf16 H = X W^T feeds J, K, L in updating calls (§3.5), so they
     * drift apart by rounding only. W^T W = R^T E R is a function of (R, d, rho) alone. */
    ck_assert_msg(fabs(a.rho - b.rho) <= 0.01 * a.rho, "call %d: rho %g vs %g", t, a.rho, b.rho);
    double fa = 0, fd = 0, sda = 0, sdb = 0;
    for (int i = 0; i < a.R; i++) {
      sda += a.d[i];
      sdb += b.d[i];
    }
    for (int j = 0; j < D; j++)
      for (int k = 0; k <= j; k++) {
        double ma = 0, mb = 0;
        for (int i = 0; i < a.R; i++) {
          ma += (double)a.W[(size_t)i * D + j] * a.W[(size_t)i * D + k];
          mb += (double)b.W[(size_t)i * D + j] * b.W[(size_t)i * D + k];
        }
        fa += ma * ma;
        fd += (ma - mb) * (ma - mb);
      }
    ck_assert_msg(sqrt(fd / fa) <= 0.01, "call %d: |W_a^T W_a - W_b^T W_b| = %g of |W_a^T W_a|", t,
                  sqrt(fd / fa));
    ck_assert_msg(fabs(sda - sdb) <= 0.01 * sda, "call %d: sum d %g vs %g", t, sda, sdb);
    if (sqrt(fd / fa) > worst) worst = sqrt(fd / fa);
    double yz = 0, yy = 0, zz = 0, dd = 0, zx = 0, xx = 0;
    for (size_t i = 0; i < (size_t)N * D; i++) {
      yz += (double)Y.data[i] * Z.data[i];
      yy += (double)Y.data[i] * Y.data[i];
      zz += (double)Z.data[i] * Z.data[i];
      dd += ((double)Y.data[i] - Z.data[i]) * ((double)Y.data[i] - Z.data[i]);
      zx += (double)Z.data[i] * X.data[i];
      xx += (double)X.data[i] * X.data[i];
    }
    ck_assert_msg(yz / sqrt(yy * zz) >= 0.999, "call %d: cosine %g", t, yz / sqrt(yy * zz));
    ck_assert_msg(sqrt(dd / xx) <= 0x1.0p-6, "call %d: difference %g of ||X||", t, sqrt(dd / xx));
    ck_assert_msg(fabsf(ga - gb) <= 0.02f * ga, "call %d: gamma %g vs %g", t, ga, gb);
    ck_assert(zx > 0);
    compared += dd > 0; /* the bf16 path ran (non-update calls differ in rounding) */
  }
  ck_assert_int_gt(compared, 0);
  ck_assert(a.stats.num_updates == b.stats.num_updates && b.stats.num_updates > 10);
  printf("ngrad bf16 vs fp32, %lld updates: |W^T W| differs by <= %.2g (relative); "
         "re-orthogonalised %lld (bf16) / %lld (fp32) times\n",
         (long long)b.stats.num_updates, worst, (long long)b.stats.num_reorth,
         (long long)a.stats.num_reorth);
  free(basis);
  ngt_mat_free(&X);
  ngt_mat_free(&Y);
  ngt_mat_free(&Z);
  ngt_ngrad_deinit(&a);
  ngt_ngrad_deinit(&b);
}
END_TEST

int main(void) {
  Suite *s = suite_create("engine");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_precision_parse_and_setup);
  tcase_add_test(tc, test_bf16_rounding);
  tcase_add_test(tc, test_gemm_bf16_vs_reference);
  tcase_add_test(tc, test_network_bf16_close_to_fp32);
  tcase_add_test(tc, test_bf16_deterministic_and_cached);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_gemm_threads);
  tcase_add_test(tc, test_cross_precision_eval);
  tcase_add_test(tc, test_ngrad_bf16_matches_fp32);
  tcase_add_test(tc, test_bf16_lowrank_kernels);
  tcase_add_test(tc, test_ngrad_fused_matches_fp32);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
